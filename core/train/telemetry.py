"""Per-layer, per-tensor numerics of a live run (the MLS paper's Fig. 3, live; docs/papers.md#mls-are).

Owns the measurements taken at the telemetry cadence from the tensors the quantized layers capture
(:attr:`~core.train.qlayers.QLayer.capture`): statistics of the float tensor, a histogram of
``log2|x|`` on fixed bins, the quantization metrics of the live format and of every shadow format
(``core.metrics.summary``: ARE, relative error, SQNR, saturation, overflow, underflow), the weight-update
stagnation rate, the accumulator width the MLS arithmetic needs (``acc_bits``, MLS layers only), the rows a
layer's QuantConfig adds through its ``telemetry_rows(layer, name, tensor, x)`` (the training recipes of
core.schemes.recipes: scale exponents, scale saturation, delayed-scaling state, a shadow recipe) and raw
tensor samples for the Format Lab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import core
from core.arith import accumulator_bits
from core.formats import Encoded
from core.formats.base import FormatSpec
from core.formats.dispatch import group_absmax
from core.formats.mls import MLSFormat
from core.formats.scaled import BlockView, ScaledFormat

from .config import TelemetryConfig
from .context import MetricRow
from .qlayers import TensorQuant, quantized_layers, tensor_seed
from core.kernels.metrics import (error_metrics, range_fractions_rows_sat, range_fractions_sat,
                                  stagnant_fraction_rows, stats_hist)

__all__ = ["Histogram", "Telemetry", "tensor_stats", "log2_histogram", "stats_and_histogram", "quant_metrics",
           "stagnation_rate", "structured_sample", "mls_acc_bits",
           "STAT_NAMES"]

STAT_NAMES = ("min", "max", "mean", "std", "amax", "amin_nz", "dynamic_range", "zero_fraction", "numel")


@dataclass(frozen=True)
class Histogram:
    """Counts of ``log2|x|`` in ``bins`` equal bins on ``[lo, hi)`` (outside values in the end bins)."""

    layer: str
    tensor: str
    kind: str
    lo: float
    hi: float
    bins: int
    zeros: int
    nonfinite: int
    counts: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "tensor": self.tensor, "kind": self.kind, "lo": self.lo, "hi": self.hi,
                "bins": self.bins, "zeros": self.zeros, "nonfinite": self.nonfinite, "counts": list(self.counts)}


def tensor_stats(x: torch.Tensor) -> dict[str, float]:
    """min, max, mean, std, amax, smallest non-zero |x|, dynamic range (log2(amax/amin_nz), binades),
    zero fraction and element count of the finite values of ``x``."""
    v = x.detach().reshape(-1)
    v = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
    fin = torch.isfinite(v)
    if not bool(fin.all()):
        v = v[fin]
    n = v.numel()
    if n == 0:
        return {k: math.nan for k in STAT_NAMES} | {"numel": 0.0}
    a = v.abs()
    amax = float(a.max())
    nz = a[a > 0]
    amin_nz = float(nz.min()) if nz.numel() else 0.0
    return {
        "min": float(v.min()),
        "max": float(v.max()),
        "mean": float(v.mean(dtype=torch.float64)),
        "std": float(v.double().std()) if n > 1 else 0.0,
        "amax": amax,
        "amin_nz": amin_nz,
        "dynamic_range": math.log2(amax / amin_nz) if amin_nz > 0 else 0.0,
        "zero_fraction": 1.0 - nz.numel() / n,
        "numel": float(n),
    }


def log2_histogram(x: torch.Tensor, lo: float, hi: float, bins: int) -> tuple[list[int], int, int]:
    """``(counts, zeros, nonfinite)`` of ``log2|x|`` on ``bins`` equal bins over ``[lo, hi)``."""
    v = x.detach().reshape(-1)
    fin = torch.isfinite(v)
    nonfinite = int(v.numel() - int(fin.sum()))
    a = v[fin].abs() if nonfinite else v.abs()
    nz = a[a > 0]
    zeros = int(a.numel() - nz.numel())
    l2 = torch.log2(nz.double())
    idx = torch.floor((l2 - lo) * (bins / (hi - lo))).clamp_(0, bins - 1).long()
    counts = torch.bincount(idx, minlength=bins)
    return counts.tolist(), zeros, nonfinite


def stats_and_histogram(x: torch.Tensor, lo: float, hi: float, bins: int,
                        hist: bool = True) -> tuple[dict[str, float], tuple[list[int], int, int] | None]:
    """:func:`tensor_stats` and :func:`log2_histogram` together: one Numba pass for CPU tensors, the
    PyTorch reference otherwise."""
    if x.device.type != "cpu":
        return tensor_stats(x), (log2_histogram(x, lo, hi, bins) if hist else None)
    v = x.detach()
    v = v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
    r = stats_hist(v.reshape(-1).numpy(), lo, hi, bins)
    if r.n == 0:
        stats = {k: math.nan for k in STAT_NAMES} | {"numel": 0.0}
    else:
        stats = {"min": r.min, "max": r.max, "mean": r.mean, "std": r.std, "amax": r.amax, "amin_nz": r.amin_nz,
                 "dynamic_range": math.log2(r.amax / r.amin_nz) if r.amin_nz > 0 else 0.0,
                 "zero_fraction": r.zeros / r.n, "numel": float(r.n)}
    h = (r.counts.tolist(), r.zeros, r.nonfinite) if hist else None
    return stats, h


def _numpy_float(t: torch.Tensor) -> np.ndarray:
    """C-contiguous float32/float64 NumPy view (a copy only when needed; half types go to float32)."""
    t = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    return t.contiguous().numpy()


_ONE = np.ones(1, dtype=np.float64)


def _row_scales(spec: ScaledFormat, xd: torch.Tensor, finite: bool,
                s2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, BlockView] | None:
    """``spec.blocked_scales(xd)`` as NumPy arrays: the (A, B, R) view of ``xd``, the float64 scale of each
    (A, B) row and the view; None when the view pads (padding would count as elements).

    ``finite``: the caller knows that ``xd`` holds no inf/NaN; an MLS tensor then skips ``MLSFormat.scales``'
    pass over the groups that hold only +-inf (there are none: the same scales without its torch
    temporaries). ``s2``: these scales, already computed by the caller for the same values."""
    if type(spec).blocked_scales is not ScaledFormat.blocked_scales:
        x3, s2t, view = spec.blocked_scales(xd)
        return None if view.pad else (_numpy_float(x3), s2t.to(torch.float64).numpy(), view)
    view = spec.view(xd)
    if view.pad:
        return None
    x3 = view.to_x3(xd)
    if s2 is None and (finite and isinstance(spec, MLSFormat) and type(spec).scales is MLSFormat.scales
            and type(spec)._with_inf_groups is MLSFormat._with_inf_groups
            and x3.device.type == "cpu" and x3.shape[0] * x3.shape[1] > 0):
        s2 = spec._scale_arrays(group_absmax(x3, "auto").numpy())[0]
    elif s2 is None:
        s2 = spec.scales(x3, "auto")[0].to(torch.float64).numpy()
    return _numpy_float(x3), s2, view


def quant_metrics(x: torch.Tensor, y: torch.Tensor, spec: Any, finite: bool | None = None) -> dict[str, float]:
    """``core.metrics.summary(x, y, spec)`` computed in one fused pass on CPU (same definitions: ARE,
    relative error, SQNR, saturation, overflow and underflow against ``spec.range_for(x)``); ``core.metrics``
    itself on other devices or when the spec has no ``range_for``. ``finite``: whether ``x`` is known to
    hold only finite values (None: not known; a hint that saves work, never changes a value)."""
    return _quant_metrics(x, y, spec, bool(finite))[0]


def _quant_metrics(x: torch.Tensor, y: torch.Tensor, spec: Any,
                   finite: bool) -> tuple[dict[str, float], np.ndarray | None]:
    """:func:`quant_metrics` and the per-row scales of a scaled ``spec`` it computed (None otherwise), so
    that the weight's stagnation rate reuses them."""
    range_for = getattr(spec, "range_for", None)
    if x.device.type != "cpu" or range_for is None or x.shape != y.shape:
        return core.metrics.summary(x, y, spec), None
    xd, yd = x.detach(), y.detach()
    xn = _numpy_float(xd).reshape(-1)
    out = error_metrics(xn, _numpy_float(yd).reshape(-1))
    if isinstance(spec, ScaledFormat) and type(spec).range_for is ScaledFormat.range_for:
        rs = _row_scales(spec, xd, finite)
        if rs is not None:
            g = spec.element_grid
            out["saturation"], out["overflow"], out["underflow"] = range_fractions_rows_sat(
                rs[0], rs[1], g.maxval, g.smallest, core.metrics.headroom(spec))
            return out, rs[1]
    elif type(spec).range_for is FormatSpec.range_for:  # constant limits (float64 of max, smallest subnormal)
        out["saturation"], out["overflow"], out["underflow"] = range_fractions_rows_sat(
            xn, _ONE, float(spec.max), float(spec.smallest_subnormal), core.metrics.headroom(spec))
        return out, None
    big, small = range_for(xd)
    big = torch.as_tensor(big, dtype=torch.float64).expand(xd.shape).reshape(-1).numpy()
    small = torch.as_tensor(small, dtype=torch.float64).expand(xd.shape).reshape(-1).numpy()
    out["saturation"], out["overflow"], out["underflow"] = range_fractions_sat(xn, big, small,
                                                                              core.metrics.headroom(spec))
    return out, None


def stagnation_rate(before: torch.Tensor, after: torch.Tensor, fmt: Any, scales: np.ndarray | None = None) -> float:
    """Fraction of elements whose update ``|after - before|`` is below half the code step of ``fmt`` at
    ``before`` (the update would be rounded away if the weight were stored in ``fmt``). ``scales``: the
    float64 per-row scales of ``fmt`` for ``before`` when the caller has them (``ScaledFormat.blocked_scales``;
    they must be those of ``before``'s values), else computed here."""
    spec = core.parse_format(fmt)
    if (isinstance(spec, ScaledFormat) and type(spec).code_step is ScaledFormat.code_step
            and before.device.type == "cpu" and before.dtype in (torch.float32, torch.float64) and before.numel()):
        rs = _row_scales(spec, before.detach(), False, scales)
        if rs is not None:  # one Numba pass over the (A, B, R) view, no per-element step tensor
            a3 = rs[2].to_x3(after.detach().to(before.dtype))
            g = spec.element_grid
            return stagnant_fraction_rows(rs[0], _numpy_float(a3), rs[1], g.m, g.emin, g.subnormals)
    step = core.code_step(before, spec)
    delta = (after.double() - before.double()).abs()
    return float((delta < step / 2).double().mean())


def _head_with_tensor_max(a: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` inputs of ``a`` plus one input holding only ``a``'s largest-magnitude element: its MLS
    encoding has the whole batch's tensor scale and, for the first ``k`` inputs, the same group scales, element
    positions (so the same stochastic-rounding draws) and codes as the encoding of all of ``a``, at the cost of
    ``k + 1`` inputs (MLS paper, Alg. 1: ``St = max|X|``, group scales per (dim0, dim1) group)."""
    if k >= a.shape[0]:
        return a
    extra = torch.zeros_like(a[:1])
    flat = a.reshape(-1)
    extra.view(-1)[0] = flat[flat.abs().argmax()]
    return torch.cat([a[:k], extra])


def mls_acc_bits(layer: Any, cap: dict[str, torch.Tensor], q: Any, step: int, inputs: int) -> int | None:
    """The signed accumulator width the MLS intra-group partial sums of this layer's last forward need
    (``core.arith.accumulator_bits``; MLS paper, section 4.2, Eq. 6-7; docs/papers.md#mls-acc-bits), on the
    first ``inputs`` inputs of the captured batch: W and A encoded as the layer quantized them (same format,
    rounding and seed, scales from the whole batch). None unless W and A are both MLS and captured on CPU
    (and for grouped or dilated convolutions)."""
    w, a, tw, ta = cap.get("w"), cap.get("a"), q.w, q.a
    if w is None or a is None or tw is None or ta is None or w.device.type != "cpu":
        return None
    if getattr(tw.spec, "family", "") != "mls" or getattr(ta.spec, "family", "") != "mls":
        return None
    stride = padding = 0
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or tuple(layer.dilation) != (1, 1) or len(set(layer.stride)) != 1 \
                or not isinstance(layer.padding, tuple) or len(set(layer.padding)) != 1 or a.dim() != 4:
            return None
        stride, padding = int(layer.stride[0]), int(layer.padding[0])
    elif a.dim() != 2:
        return None

    def enc(x: torch.Tensor, tq: TensorQuant, t: str) -> Any:
        seed = tensor_seed(layer.seed, step, layer.layer_index, t) if tq.rounding == "stochastic" else None
        return core.encode(x.float(), tq.spec, tq.rounding, seed)

    k = max(1, min(int(inputs), a.shape[0]))
    eq_w, eq_a = enc(w, tw, "w"), enc(_head_with_tensor_max(a, k), ta, "a")
    eq_a = Encoded(eq_a.spec, eq_a.codes[:k], {"tensor": eq_a.scales["tensor"], "group": eq_a.scales["group"][:k]},
                   eq_a.dtype)
    return accumulator_bits(eq_w, eq_a, stride, padding) if isinstance(layer, nn.Conv2d) else \
        accumulator_bits(eq_w, eq_a)


class Telemetry:
    """Collects telemetry rows from a converted model at the configured cadence.

    Args:
        cfg: what to measure.
        seed: run seed (for the tensor samples' random subsets).
    """

    def __init__(self, cfg: TelemetryConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed
        self._shadow = tuple(TensorQuant(s) for s in cfg.shadow)

    def due(self, step: int) -> bool:
        """Whether ``step`` is a telemetry step."""
        return self.cfg.every > 0 and step % self.cfg.every == 0

    def sample_due(self, step: int) -> bool:
        """Whether raw tensor samples are stored at ``step`` (a telemetry step)."""
        return self.cfg.sample_every > 0 and step % self.cfg.sample_every == 0

    def arm(self, model: nn.Module) -> None:
        """Ask every quantizable layer to capture its tensors in the next forward/backward."""
        for _, layer in quantized_layers(model):
            layer.capture = {}

    def disarm(self, model: nn.Module) -> None:
        for _, layer in quantized_layers(model):
            layer.capture = None

    def snapshot_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Copies of every layer's weight (before the optimizer step), for the stagnation rate."""
        return {name: layer.weight.detach().clone() for name, layer in quantized_layers(model)}

    # ------------------------------------------------------------------ collection
    def collect(self, model: nn.Module, step: int,
                before: dict[str, torch.Tensor] | None = None) -> tuple[list[MetricRow], list[Histogram],
                                                                        list[tuple[str, str, torch.Tensor, list[int]]]]:
        """Measure the captured tensors; clear the captures.

        Returns:
            metric rows, histograms, and ``(layer, tensor, sample, shape)`` raw samples (if due).
        """
        rows: list[MetricRow] = []
        hists: list[Histogram] = []
        samples: list[tuple[str, str, torch.Tensor, list[int]]] = []
        sample = self.sample_due(step)
        for name, layer in quantized_layers(model):
            cap = layer.capture or {}
            layer.capture = None
            q = layer.quant
            live_scales: dict[str, np.ndarray] = {}  # tensor -> per-row scales of its live scaled format
            for t in self.cfg.tensors:
                x = cap.get(t)
                if x is None and t == "g" and layer.weight.grad is not None and (q is None or q.g is None):
                    x = layer.weight.grad.detach()
                if x is None:
                    continue
                tq: TensorQuant | None = getattr(q, t) if q is not None else None
                xq = cap.get(t + "q") if tq is not None else None
                rows += self._measure(name, t, x, xq, tq, hists, step, layer.layer_index, layer.seed, live_scales)
                extra = getattr(q, "telemetry_rows", None)  # a recipe's scale and shadow-recipe rows
                if extra is not None:
                    rows += extra(layer, name, t, x)
                if sample:
                    part = self._sample(x, step, layer.layer_index, t)
                    samples.append((name, t, part.reshape(-1), list(part.shape)))
            if self.cfg.acc_bits and q is not None and step % self.cfg.acc_bits_every == 0:
                bits = mls_acc_bits(layer, cap, q, step, self.cfg.acc_bits)
                if bits is not None:
                    rows.append(MetricRow(name, "a", q.a.fmt, "live", "acc_bits", float(bits)))
            if self.cfg.stagnation and before is not None and name in before:
                w_fmt = q.w.fmt if (q is not None and q.w is not None) else "fp32"
                b, a = before[name], layer.weight.detach()
                # the live W's scales when the captured W is the weight before the step (the standard step)
                cw, s2 = cap.get("w"), live_scales.get("w")
                if s2 is not None and not (cw is not None and cw.dtype == b.dtype and cw.shape == b.shape
                                           and torch.equal(cw, b)):
                    s2 = None
                w_spec = q.w.spec if (q is not None and q.w is not None) else w_fmt
                rows.append(MetricRow(name, "w", w_fmt, "live", "stagnation", stagnation_rate(b, a, w_spec, s2)))
                for s in self._shadow:
                    rows.append(MetricRow(name, "w", s.fmt, "shadow", "stagnation", stagnation_rate(b, a, s.spec)))
        return rows, hists, samples

    def _measure(self, layer: str, t: str, x: torch.Tensor, xq: torch.Tensor | None, tq: TensorQuant | None,
                 hists: list[Histogram], step: int, index: int, seed: int,
                 live_scales: dict[str, np.ndarray] | None = None) -> list[MetricRow]:
        """The rows (and histograms, appended to ``hists``) of one captured tensor ``x``: statistics, the live
        format's metrics against ``xq`` and every shadow format's; ``live_scales[t]``: the live scaled
        format's per-row scales of ``x``, when computed."""
        cfg = self.cfg
        rows: list[MetricRow] = []
        finite = False  # x known to hold only finite values (saves the MLS inf-group pass; no value changes)
        if cfg.stats or cfg.hist:
            stats, h = stats_and_histogram(x, cfg.hist_lo, cfg.hist_hi, cfg.hist_bins, cfg.hist)
            finite = stats["numel"] == x.numel()
            if cfg.stats:
                rows += [MetricRow(layer, t, "", "stat", k, v) for k, v in stats.items()]
            if h is not None:
                hists.append(Histogram(layer, t, "x", cfg.hist_lo, cfg.hist_hi, cfg.hist_bins, h[1], h[2], tuple(h[0])))
        if tq is not None:
            if xq is None:  # not captured (custom step): re-quantize with the same seed
                seed_ = tensor_seed(seed, step, index, t) if tq.rounding == "stochastic" else None
                xq = tq(x, seed_)
            live, s2 = _quant_metrics(x, xq, tq.spec, finite)
            if s2 is not None and live_scales is not None:
                live_scales[t] = s2
            rows += [MetricRow(layer, t, tq.fmt, "live", k, v) for k, v in live.items()]
            if cfg.hist:
                hists.append(self._hist(layer, t, "q", xq))
        for s in self._shadow:
            ys = s(x)
            shadow = _quant_metrics(x, ys, s.spec, finite)[0]
            rows += [MetricRow(layer, t, s.fmt, "shadow", k, v) for k, v in shadow.items()]
        return rows

    def _hist(self, layer: str, t: str, kind: str, x: torch.Tensor) -> Histogram:
        c = self.cfg
        _, h = stats_and_histogram(x, c.hist_lo, c.hist_hi, c.hist_bins)
        assert h is not None
        return Histogram(layer, t, kind, c.hist_lo, c.hist_hi, c.hist_bins, h[1], h[2], tuple(h[0]))

    def _sample(self, x: torch.Tensor, step: int, index: int, t: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(tensor_seed(self.seed, step, index, t))
        return structured_sample(x.detach().float(), self.cfg.sample_size, g)


def structured_sample(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """A random sub-tensor of at most ``k`` elements that keeps the grouping structure.

    Grouped formats see a tensor as (dim0, dim1, rest) groups (MLS ``n``/``c``/``nc``, per-channel
    scales): a flat random subset would make every element its own dim-0 group. So the sample takes
    whole ``rest`` blocks of a random subset of dim-0 and dim-1 indices (sorted, ``k0 x k1`` chosen
    near the tensor's aspect ratio); when one block alone exceeds ``k``, one random (dim0, dim1) group
    and a random subset of its elements (shape ``(1, 1, k)``). Tensors of at most ``k`` elements
    come back whole; 1-D tensors as a random subset of elements.
    """
    if x.numel() <= k:
        return x.clone()
    if x.dim() == 1:
        return x[torch.randperm(x.numel(), generator=generator)[:k].sort().values].clone()
    d0, d1 = x.shape[0], x.shape[1]
    rest = x.numel() // (d0 * d1)
    if rest > k:
        i = int(torch.randint(d0, (1,), generator=generator))
        j = int(torch.randint(d1, (1,), generator=generator))
        block = x[i, j].reshape(-1)
        pick = torch.randperm(block.numel(), generator=generator)[:k].sort().values
        return block[pick].reshape(1, 1, k).clone()
    groups = k // rest
    k0 = min(d0, max(1, round(math.sqrt(groups * d0 / d1))))
    k1 = min(d1, max(1, groups // k0))
    k0 = min(d0, max(1, groups // k1))
    i0 = torch.randperm(d0, generator=generator)[:k0].sort().values
    i1 = torch.randperm(d1, generator=generator)[:k1].sort().values
    return x.index_select(0, i0).index_select(1, i1).clone()
