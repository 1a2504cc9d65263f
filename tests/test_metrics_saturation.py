"""Saturation (clipped to the top code) and overflow (beyond the range incl. the scale's headroom) are two
metrics (core.metrics, core.kernels.metrics, the training telemetry, the Format Lab; docs/papers.md#mls-saturation),
on hand-built tensors whose counts are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core
from core.kernels.metrics import range_fractions_rows_sat, range_fractions_sat
from core.train.telemetry import quant_metrics

MLS21 = "mls(ex=2,mx=1,eg=8,mg=1,group=none)"


def test_mls_clips_at_the_top_code_without_overflowing():
    """One group: St = max|x| = 4, Sg = 1, the top code of <2,1> is 1.5 * 2^-1 = 0.75, so the top value is 3:
    4, 3.5 and -3.2 saturate (3 of 8); nothing is beyond St * Sg * 1 = 4 (the scale's headroom is 1/0.75)."""
    x = torch.tensor([4.0, 3.5, 3.0, 2.0, 1.0, -3.2, 0.5, 0.0])
    y = core.quantize(x, MLS21)
    assert y.abs().max() == 3.0 and int((y.abs() == 3.0).sum()) == 4  # 3.0 itself is exact
    assert core.metrics.headroom(MLS21) == pytest.approx(4 / 3)
    assert core.metrics.saturation_fraction(x, MLS21) == 3 / 8
    assert core.metrics.overflow_fraction(x, MLS21) == 0.0
    s = core.metrics.summary(x, y, MLS21)
    assert (s["saturation"], s["overflow"]) == (3 / 8, 0.0)
    fast = quant_metrics(x, y, core.parse_format(MLS21))  # the telemetry's fused CPU path
    assert (fast["saturation"], fast["overflow"]) == (3 / 8, 0.0)


def test_unscaled_formats_saturate_where_they_overflow():
    x = torch.tensor([500.0, 448.0, 1.0, -1000.0])
    assert core.metrics.headroom("fp8_e4m3") == 1.0
    assert core.metrics.saturation_fraction(x, "fp8_e4m3") == core.metrics.overflow_fraction(x, "fp8_e4m3") == 0.5


def test_kernel_counts_by_hand():
    x = np.array([1.0, 2.0, 3.0, -5.0, np.inf, 0.25])
    # top value 2, headroom 2: saturated 3, -5 (2 of 5 finite); overflowed -5 (1 of 5); below 0.5: 0.25
    assert range_fractions_sat(x, 2.0, 0.5, 2.0) == (2 / 5, 1 / 5, 1 / 5)
    # two rows of three with scales 1 and 10 (top 2 * scale, headroom 2):
    # row 0 [1, 2, 3] saturates 3; row 1 [-5, inf, 0.25]: top 20, nothing; below 0.5 * 10: 0.25 (5 is not)
    assert range_fractions_rows_sat(x, np.array([1.0, 10.0]), 2.0, 0.5, 2.0) == (1 / 5, 0.0, 1 / 5)


def test_conv_weights_fast_path_equals_reference():
    fmt = core.parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)")
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    y = core.quantize(w, fmt)
    ref, fast = core.metrics.summary(w, y, fmt), quant_metrics(w, y, fmt)
    assert fast["saturation"] == pytest.approx(ref["saturation"]) and ref["saturation"] > 0.05
    assert fast["overflow"] == ref["overflow"] == 0.0
