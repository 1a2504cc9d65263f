"""The seeds' cost model (core.cost; MLS paper, Table 1 and App. E): operation counts against hand counts
and a closed-form ResNet-20 count, the energy ratio of Eq. 9, the CLI, the option-A ResNet-20, and the
energy a run logs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.cost import PAPER_TABLE1, count_model, count_ops, layer_macs
from core.cost.__main__ import main
from core.cost.energy import EnergyTable, arithmetic_for, eq9_ratio, gemm_energy, iteration_energy, parse_overrides
from core.models import ModelConfig, build_model
from core.train import QuantConfig, TensorQuant, convert
from core.train.cost import attach_counter, cost_rows


class _Tiny(nn.Module):
    """conv3x3(2->3, pad 1) on 5x5 -> BN -> + conv1x1(2->3) -> flatten -> Linear(75, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.side = nn.Conv2d(2, 3, 1)
        self.fc = nn.Linear(75, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)) + self.side(x)
        return self.fc(F.relu(y).flatten(1))


def test_hand_counted_small_model():
    c = count_ops(_Tiny(), (2, 5, 5), batch=2)
    rows = {(r.name, r.kind): r for r in c.layers}
    # conv: 2 x 3 x 5 x 5 outputs, each 2 x 3 x 3 = 18 products
    assert rows[("conv", "conv")].fwd == 2 * 75 * 18 and rows[("conv", "conv")].bwd == 2 * 2 * 75 * 18
    assert rows[("conv", "conv")].partial_sums == 2 * 75 * 2 and rows[("conv", "conv")].window == 9
    assert rows[("side", "conv")].fwd == 2 * 75 * 2
    assert rows[("fc", "linear")].fwd == 2 * 4 * 75
    assert rows[("bn", "bn")].fwd == rows[("bn", "bn")].bwd == 2 * 75
    assert rows[("", "add")].fwd == rows[("", "add")].bwd == 2 * 75  # the add in the model's own forward
    assert c.conv_f == 2 * 75 * 18 + 2 * 75 * 2 + 2 * 4 * 75
    assert c.conv_b == 2 * c.conv_f
    assert c.update == 3 * 2 * 9 + (3 * 2 + 3) + (75 * 4 + 4)  # conv, side (w + b), fc (w + b)
    assert c.update_bn == 6
    assert [r.name for r in c.layers] == ["conv", "bn", "side", "fc", ""]  # in the order they finish


def _resnet20_oracle(shortcut: str) -> dict[str, int]:
    """Plain-Python count of the CIFAR ResNet-20 (He et al. 2016, section 4.2) at batch 1."""
    conv = 3 * 16 * 9 * 32 * 32  # stem
    bn = 16 * 32 * 32
    add = 0
    params = 3 * 16 * 9
    cin = 16
    for cout, hw, stride in ((16, 32, 1), (32, 16, 2), (64, 8, 2)):
        for i in range(3):
            a = cin if i == 0 else cout
            conv += cout * hw * hw * (a * 9 + cout * 9)
            params += cout * a * 9 + cout * cout * 9
            bn += 2 * cout * hw * hw
            add += cout * hw * hw
            if i == 0 and (stride != 1 or a != cout) and shortcut == "B":
                conv += cout * hw * hw * a
                params += cout * a
                bn += cout * hw * hw
        cin = cout
    conv += 64 * 10
    params += 64 * 10 + 10
    return {"conv_f": conv, "conv_b": 2 * conv, "bn_f": bn, "bn_b": bn, "ew_f": add, "ew_b": add, "update": params}


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_matches_the_closed_form_count(shortcut):
    assert count_model("resnet20", 1, shortcut=shortcut).table1() == _resnet20_oracle(shortcut)


def test_resnet20_option_a_agrees_with_table1():
    """Conv (F), Conv (B), BN and the weight update agree with Table 1 to its three digits (Conv (F) is
    4.0551E+07, which Table 1 prints as 4.05E+07: truncated; docs/papers.md#mls-table1); EW-Add does not."""
    t = count_model("resnet20", 1, shortcut="A").table1()
    assert t["conv_f"] == 40_551_040 and t["conv_b"] == 81_102_080
    for k in ("conv_f", "conv_b", "bn_f", "bn_b", "update"):
        mant = f"{t[k]:.6E}"
        assert float(mant[:4] + mant[8:]) == PAPER_TABLE1[k], (k, t[k])  # truncated to 3 significant digits
    assert t["ew_f"] == 86_016 != PAPER_TABLE1["ew_f"]  # 9 residual adds; Table 1 has 7.37E+04 (see docs)


def test_batch_scales_everything_but_the_update():
    one, eight = count_model("resnet20", 1, shortcut="A"), count_model("resnet20", 8, shortcut="A")
    for k in ("conv_f", "conv_b", "bn_f", "ew_f"):
        assert getattr(eight, k) == 8 * getattr(one, k)
    assert eight.update == one.update


def test_counting_leaves_the_model_alone():
    m = _Tiny()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_ops(m, (2, 5, 5), 3)
    assert all(torch.equal(before[k], v) and v.device.type == "cpu" for k, v in m.state_dict().items())
    assert not m._forward_hooks and not m.conv._forward_hooks


def test_layer_macs_is_the_one_count_of_the_bitops():
    from core.train import cost as train_cost

    assert train_cost.layer_macs is layer_macs
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    y = conv(torch.zeros(2, 4, 9, 9))
    assert layer_macs(conv, None, y) == 2 * 6 * 5 * 5 * 4 * 9


# --------------------------------------------------------------------- ResNet option A


def test_option_a_shortcut_is_a_zero_padded_subsample():
    m = build_model(ModelConfig(name="resnet20", shortcut="A"), (3, 32, 32), 10)
    block = m.layers[3]  # first block of stage 2: 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 32, 32)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 16, 16)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert not s[:, :8].any() and not s[:, 24:].any()
    assert not any(isinstance(x, nn.Conv2d) and x.kernel_size == (1, 1) for x in m.modules())
    assert sum(p.numel() for p in m.parameters()) == 269_722  # 268,346 conv/fc + 1,376 BN affine
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_b_stays_the_default():
    m = build_model("resnet20", (3, 32, 32), 10)
    assert sum(isinstance(x, nn.Conv2d) and x.kernel_size == (1, 1) for x in m.modules()) == 2
    with pytest.raises(ValueError, match="shortcut"):
        ModelConfig(name="resnet20", shortcut="C")


# --------------------------------------------------------------------- energy (App. E)


def test_eq9_for_one_3x3_conv_by_hand():
    """M = 9 P: full precision 4M + (M - P) + P = 5M; MLS 4/7 M + 1/20 ((M - P) + P) + P."""
    m, p = 9 * 1000, 1000
    assert gemm_energy(m, p, "fp32") == pytest.approx(5 * m)
    assert gemm_energy(m, p, "mls") == pytest.approx(4 / 7 * m + m / 20 + p)
    c = count_ops(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False)), (4, 6, 6), 1)
    assert eq9_ratio(c) == pytest.approx(5 / (4 / 7 + 1 / 20 + 1 / 9))


def test_eq9_ratio_of_resnet20_is_the_papers():
    r = eq9_ratio(count_model("resnet20", 1, shortcut="A"))
    assert abs(r - 6.8) / 6.8 < 0.10 and r == pytest.approx(6.826, abs=1e-3)


def test_energy_table_is_the_users():
    c = count_model("resnet20", 1, shortcut="A")
    cheap = parse_overrides("fp8_mul=0.25, int16_add=0.04")
    assert cheap.fp8_mul == 0.25 and cheap.fp32_mul == 4.0
    assert eq9_ratio(c, cheap) > eq9_ratio(c)
    with pytest.raises(ValueError, match="bad energy entry"):
        parse_overrides("fp9_mul=1")
    with pytest.raises(ValueError, match="needs a number"):
        parse_overrides("fp8_mul=x")
    with pytest.raises(ValueError):
        EnergyTable(fp32_add=-1)
    e = iteration_energy(c, "fp32")
    assert e["conv"] == pytest.approx(3 * 5 * c.conv_f)  # one FP32 mul (4C) + one add (C) per mul-add, F + B
    assert e["total"] == pytest.approx(e["conv"] + 5 * (c.bn_f + c.bn_b) + c.ew_f + c.ew_b + c.update + c.update_bn)


def test_arithmetic_of_formats():
    from core.train.qlayers import parse_spec

    mls, i8, f8, f16 = (parse_spec(s) for s in ("mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "int(bits=8,scale=tensor)",
                                                "fp8_e4m3", "fp16"))
    assert arithmetic_for(None, mls) == "fp32"
    assert arithmetic_for(mls, mls) == "mls"
    assert arithmetic_for(i8, i8) == "int8"
    assert arithmetic_for(f8, f8) == "lowfp"
    assert arithmetic_for(f16, f8) == "fp16"


def test_a_run_logs_its_energy():
    """A quantized Linear(6, 5) on 4 inputs: 120 MACs, windows of one product (P = M): MLS costs
    3 x (4/7 + 1/20 + 1) per MAC (F + B), FP32 3 x 5."""
    tq = TensorQuant("mls(ex=2,mx=4,eg=8,mg=1,group=nc)")
    model = convert(nn.Sequential(nn.Linear(6, 5)), QuantConfig(w=tq, a=tq))
    counter = attach_counter(model)
    model.train()
    model(torch.randn(4, 6))
    assert counter.energy == pytest.approx(3 * 120 * (4 / 7 + 1 / 20 + 1))
    assert counter.energy_fp32 == pytest.approx(3 * 120 * 5)

    class _Ctx:
        epoch = 0
        state: dict = {}

    rows = {r.name: r.value for r in cost_rows(model, _Ctx())}  # type: ignore[arg-type]
    assert rows["energy"] == pytest.approx(counter.energy)
    assert rows["energy_ratio"] == pytest.approx(5 / (4 / 7 + 1 / 20 + 1))


# --------------------------------------------------------------------- CLI


def test_cli_prints_table1(capsys):
    assert main(["resnet20", "--batch", "1", "--energy", "--layers"]) == 0
    out = capsys.readouterr().out
    for label in ("Conv (F)", "Conv (B)", "BN (F)", "BN (B)", "EW-Add (F)", "EW-Add (B)", "Weight Update (B)"):
        assert label in out
    assert "40,551,040" in out and "81,102,080" in out and "268,346" in out and "Table 1" in out
    assert "Eq. 9 ratio (FP32 / MLS convolution arithmetic): 6.83x" in out
    assert "layers.8.conv2" in out


@pytest.mark.parametrize("argv,msg", [
    (["alexnet"], "unknown model 'alexnet'"), (["resnet20", "--batch", "0"], "--batch must be >= 1"),
    (["resnet20", "--batch", "x"], "invalid int value"), (["resnet20", "--set", "x=1"], "bad energy entry"),
    (["resnet20", "--input", "3,a"], "--input must be integers"), (["lenet5", "--input", "40"], "needs image inputs"),
])
def test_cli_bad_input_is_one_line(argv, msg, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1


def test_cli_as_module():
    p = subprocess.run([sys.executable, "-m", "core.cost", "mlp", "--batch", "2"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "Conv (F)" in p.stdout and p.stderr == ""
