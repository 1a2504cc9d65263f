"""Training step time: MLS-quantized vs float32, and the cost of telemetry.

Cases: the digits MLP (64-128-10, real digits batch) and ResNet-20 on CIFAR-shaped random batches,
both at batch 128, CPU; MLS `<2,1>` nc on W/A/E in both rounding modes, and on the MLP the usual
OCP FP8 recipe (fp8_e4m3 W/A, fp8_e5m2 E) for comparison. Each case interleaves the fp32 step and
the quantized steps (so all see the same machine load) and reports the median of the per-pair
ratios plus the ratio of the fastest steps.
Telemetry overhead: the extra time of a telemetry step (capture + ``Telemetry.collect``) divided by
``every`` steps of the same scheme, at the default ``TelemetryConfig()`` (``every = 25``), as a fraction of
the step time: first the median of plain snapshots (no raw samples, no ``acc_bits``), then the mean over one
cadence cycle (steps 0, 25, ..., 475: every 4th snapshot also stores raw samples, every 10th measures
``acc_bits``), which is what a run pays on average.

    python benchmarks/bench_train.py                # both models
    python benchmarks/bench_train.py --quick        # fewer steps
    python benchmarks/bench_train.py --threads 2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import load_dataset  # noqa: E402
from core.models import ModelConfig, build_model  # noqa: E402
from core.train import OptimConfig, TelemetryConfig, get_scheme, quantized_layers  # noqa: E402
from core.train.run import _set_threads  # noqa: E402
from core.train.schemes import default_optimizer  # noqa: E402
from core.train.telemetry import Telemetry  # noqa: E402

MLS = dict(ex=2, mx=1, eg=8, mg=1, group="nc")


class Stepper:
    """One model + optimizer + scheme, stepping like the engine's standard step."""

    def __init__(self, model_cfg: ModelConfig, shape: tuple[int, ...], scheme, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = scheme.prepare(build_model(model_cfg, shape, 10), seed)
        self.opt = default_optimizer(self.model.parameters(), OptimConfig(lr=0.01))
        self.scheme = scheme
        self.n = 0
        self.layers = [layer for _, layer in quantized_layers(self.model)]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        t0 = time.perf_counter()
        for layer in self.layers:  # as the engine does each step (rounding seeds follow the step)
            layer.step = self.n
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        self.n += 1
        return time.perf_counter() - t0

    def telemetry_step(self, x: torch.Tensor, y: torch.Tensor, tel: Telemetry) -> float:
        t0 = time.perf_counter()
        tel.arm(self.model)
        before = tel.snapshot_weights(self.model)
        self.step(x, y)
        tel.collect(self.model, self.n - 1, before)
        return time.perf_counter() - t0


def bench_case(name: str, model_cfg: ModelConfig, x: torch.Tensor, y: torch.Tensor, schemes: dict, steps: int,
               warmup: int, quick: bool = False) -> list[str]:
    shape = tuple(x.shape[1:])
    ref = Stepper(model_cfg, shape, get_scheme("fp32"))
    others = {k: Stepper(model_cfg, shape, s) for k, s in schemes.items()}
    for _ in range(warmup):
        ref.step(x, y)
        for o in others.values():
            o.step(x, y)
    t_ref: list[float] = []
    t_o: dict[str, list[float]] = {k: [] for k in others}
    for _ in range(steps):
        t_ref.append(ref.step(x, y))
        for k, o in others.items():
            t_o[k].append(o.step(x, y))
    lines = [f"{name:<28} {'fp32':<26} {statistics.median(t_ref) * 1e3:9.2f} ms   1.00x"]
    for k, ts in t_o.items():
        ratios = [a / b for a, b in zip(ts, t_ref)]
        lines.append(f"{'':<28} {k:<26} {statistics.median(ts) * 1e3:9.2f} ms   "
                     f"{statistics.median(ratios):.2f}x (fastest-step ratio {min(ts) / min(t_ref):.2f}x)")
    tcfg = TelemetryConfig()
    # one cadence cycle: the snapshot steps 0, every, 2 every, ... up to the least common multiple of every,
    # sample_every and acc_bits_every (defaults 25, 100, 250: 20 snapshots, 5 with raw samples, 2 with acc_bits)
    cycle = math.lcm(tcfg.every, tcfg.sample_every or 1, tcfg.acc_bits_every if tcfg.acc_bits else 1)
    cycle_steps = list(range(0, cycle, tcfg.every))
    for k, o in [("fp32", ref)] + list(others.items()):
        tel = Telemetry(tcfg)
        o.n = 0
        o.telemetry_step(x, y, tel)  # warm-up, at step 0: raw samples and acc_bits too (their first calls)
        o.telemetry_step(x, y, tel)
        extra = []
        for _ in range(max(2, steps // 4)):
            base = o.step(x, y)
            if (tcfg.sample_every and o.n % tcfg.sample_every == 0) or o.n % tcfg.acc_bits_every == 0:
                o.n += 1  # a plain snapshot (no raw samples, no acc_bits): the cycle below has those
            extra.append(o.telemetry_step(x, y, tel) - base)
        cyc = []
        for _ in range(1 if quick else 2):
            for s in cycle_steps:
                base = o.step(x, y)
                o.n = s  # telemetry_step snapshots step o.n
                cyc.append(o.telemetry_step(x, y, tel) - base)
        step_med = statistics.median(t_o[k] if k in t_o else t_ref)
        frac = statistics.median(extra) / (tcfg.every * step_med)
        lines.append(f"{'':<28} telemetry {k:<16} +{statistics.median(extra) * 1e3:8.1f} ms per snapshot = "
                     f"{100 * frac:5.1f}% at every={tcfg.every}")
        mean = statistics.fmean(cyc)
        lines.append(f"{'':<28}   over the cadence       +{mean * 1e3:8.1f} ms per snapshot = "
                     f"{100 * mean / (tcfg.every * step_med):5.1f}% (mean of steps 0..{cycle - tcfg.every}: "
                     f"samples every {tcfg.sample_every}, acc_bits every {tcfg.acc_bits_every})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch and Numba threads (default 1)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--models", default="mlp,resnet20")
    a = p.parse_args(argv)
    _set_threads(a.threads)
    out = [f"torch {torch.__version__}, threads={a.threads}, batch 128, CPU"]
    models = a.models.split(",")
    if "mlp" in models:
        data = load_dataset("digits")
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(data.train), generator=g)[:128]
        x, y = data.train.batch(idx)
        schemes = {"mls <2,1> all, stochastic": get_scheme("mls", first_last=True, **MLS),
                   "mls <2,1> all, nearest": get_scheme("mls", first_last=True, rounding="nearest", **MLS),
                   # the usual OCP FP8 recipe for comparison: E4M3 forward, E5M2 errors
                   "fp8 e4m3 W/A, e5m2 E": get_scheme("custom", w="fp8_e4m3", a="fp8_e4m3", e="fp8_e5m2")}
        out += bench_case("digits MLP 64-128-10", ModelConfig(name="mlp", hidden=(128,)), x, y, schemes,
                          steps=40 if a.quick else 200, warmup=10, quick=a.quick)
    if "resnet20" in models:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(128, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (128,), generator=g)
        schemes = {"mls <2,1> stochastic": get_scheme("mls", **MLS),
                   "mls <2,1> nearest": get_scheme("mls", rounding="nearest", **MLS)}
        out += bench_case("ResNet-20 CIFAR-shaped", ModelConfig(name="resnet20"), x, y, schemes,
                          steps=3 if a.quick else 8, warmup=1, quick=a.quick)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
