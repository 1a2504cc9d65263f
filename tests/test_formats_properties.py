"""Property tests (hypothesis) for every family, plus the labelled edge-value table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core.formats import group_scale_set

SPECS = [
    "fp8_e4m3", "fp8_e5m2", "fp8_143", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "bf16", "fp16",
    "float(e=3,m=4,bias=3,inf=true,subnormals=false)",
    "int(bits=8,scale=tensor)", "int(bits=4,scale=channel)", "fixed(bits=8,frac=4)",
    "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=0,mx=3,eg=8,mg=1,group=c)",
    "mls(ex=3,mx=2,eg=3,mg=0,group=n)", "mls(ex=2,mx=4,eg=8,mg=2,group=none)",
    "mu8(mu=255,range=2)", "mulaw(bits=6,mu=20,range=1)", "niti(bits=8)",
    "mx(elem=fp8_e4m3,block=8)", "mx(elem=fp4_e2m1,block=4,scale=rceil)", "mx(elem=int8,block=8)",
    "bfp(bits=6,block=4)",
]

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
tensors = st.lists(finite, min_size=1, max_size=48).map(
    lambda v: torch.tensor(v, dtype=torch.float32).reshape(-1, 2, 1) if len(v) % 2 == 0
    else torch.tensor(v, dtype=torch.float32))


def element_view(fmt, x):
    """(|x|/s, element values |r|, codebook) for any family."""
    book = core.codebook(fmt).to(torch.float64)
    q = core.encode(x, fmt)
    y = core.decode(q).to(torch.float64)
    if fmt.family in ("mulaw", "mu8"):
        return x.to(torch.float64).abs(), book[q.codes.to(torch.int64).abs()], book
    if fmt.scaled:
        view = fmt.view(x)
        s3 = q.scales["_s2"].unsqueeze(-1).expand(view.to_x3(x).shape)
        s = view.from_x3(s3).to(torch.float64)
        s = torch.where(s == 0, torch.ones_like(s), s)
        r = view.from_x3(fmt.element_values(view.to_x3(q.codes))).abs()
        return x.to(torch.float64).abs() / s, r, book
    return x.to(torch.float64).abs(), y.abs(), book


@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=40, deadline=None)
@given(x=tensors)
def test_outputs_lie_in_codebook_and_nearest_is_nearest(spec, x):
    fmt = core.parse_format(spec)
    if fmt.bits > 8 and not fmt.scaled and fmt.family == "float":
        # 16-bit formats: the rounding error is within half a code step
        y = core.quantize(x, fmt).double()
        step = core.code_step(x, fmt)
        assert torch.all((y - x.double()).abs() <= step / 2)
        return
    a, r, book = element_view(fmt, x)
    # every element value is a code
    idx = torch.searchsorted(book, r).clamp(max=len(book) - 1)
    assert torch.all(book[idx] == r), spec
    # nearest: no code is closer to |x|/s (mu-law rounds in the companded domain instead)
    if fmt.family in ("mulaw", "mu8"):
        y = fmt.quantize(x).double()
        assert torch.all(y.abs() <= fmt.max)
        return
    a_c = a.clamp(max=float(book[-1]))
    j = torch.searchsorted(book, a_c).clamp(1, len(book) - 1)
    best = torch.minimum((a_c - book[j - 1]).abs(), (book[j] - a_c).abs())
    assert torch.all((r - a_c).abs() <= best * (1 + 1e-12) + 1e-300), spec


@pytest.mark.parametrize("spec", [s for s in SPECS if s not in ("bf16", "fp16")])
def test_stochastic_rounding_is_unbiased(spec):
    """Invariant: E[Q(x)] = x.  N copies of one value between two codes; the
    sample mean must be within 5 standard errors (gap * sqrt(p(1-p)/N))."""
    fmt = core.parse_format(spec)
    n = 20000
    rng = np.random.default_rng(7)
    for trial in range(2):
        base = float(rng.uniform(0.05, 0.9))
        x = torch.full((n, 8), base, dtype=torch.float64)
        x[:, 0] = 1.0  # fixes the scale of every row/block
        if fmt.family == "fixed":
            x *= 4
        ys_all = core.quantize(x, fmt, "stochastic", seed=trial).double()
        for col in (1, 5):
            ys = ys_all[:, col]
            vals = torch.unique(ys)
            assert len(vals) <= 2, (spec, vals)
            if fmt.family in ("mulaw", "mu8"):
                # unbiased in the companded domain (Eq. 15)
                comp = lambda v: torch.log1p(fmt.mu * v / fmt.range) / math.log1p(fmt.mu) * fmt.K  # noqa: E731
                target, mean = comp(x[0, col]), comp(ys).mean()
                gap = float(comp(vals.max()) - comp(vals.min()))
            else:
                target, mean = x[0, col], ys.mean()
                gap = float(vals.max() - vals.min())
            if len(vals) == 1:
                assert float(vals[0]) == float(core.quantize(x[:1], fmt, "nearest")[0, col])
                continue
            p = float((ys == vals.max()).double().mean())
            se = gap * math.sqrt(p * (1 - p) / n)
            assert abs(float(mean - target)) <= 5 * se + 1e-12, (spec, float(mean), float(target), se)


def test_stochastic_is_reproducible_and_seed_dependent():
    x = torch.randn(10000)
    a = core.quantize(x, "fp8_e4m3", "stochastic", seed=1)
    b = core.quantize(x, "fp8_e4m3", "stochastic", seed=1)
    c = core.quantize(x, "fp8_e4m3", "stochastic", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    d = core.quantize(x, "fp8_e4m3", "stochastic")
    torch.manual_seed(0)
    assert torch.equal(d, core.quantize(x, "fp8_e4m3", "stochastic"))


@settings(max_examples=60, deadline=None)
@given(
    eg=st.integers(0, 8), mg=st.integers(0, 3), group=st.sampled_from(["none", "n", "c", "nc"]),
    data=st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=12, max_size=12),
)
def test_mls_group_scale_is_smallest_member_at_least_ratio(eg, mg, group, data):
    fmt = core.parse_format(f"mls(ex=2,mx=1,eg={eg},mg={mg},group={group})")
    x = torch.tensor(data).reshape(2, 3, 2)
    q = core.encode(x, fmt)
    st_ = float(q.scales["tensor"])
    sg = q.scales["group"]
    G = group_scale_set(eg, mg)
    gmax = x.abs().double().amax(dim=2)
    if group == "n":
        gmax = gmax.amax(dim=1, keepdim=True).expand_as(gmax)
    elif group == "c":
        gmax = gmax.amax(dim=0, keepdim=True).expand_as(gmax)
    elif group == "none":
        gmax = gmax.max().expand_as(gmax)
    assert st_ == float(x.abs().max())
    for g, s in zip(gmax.reshape(-1).tolist(), sg.reshape(-1).tolist()):
        ratio = g / st_ if st_ > 0 else 0.0
        members = [v for v in G.tolist() if v >= ratio]
        want = min(members) if members else float(G.max())
        assert s == want
        assert s in G.tolist()


# Labelled edge values (torchao fp_format_spec style): (spec, property, value, label)
EDGE_VALUES = [
    ("fp8_e4m3", "max", 448.0, "OCP E4M3 max 1.75 * 2^8"),
    ("fp8_e4m3", "tiny", 2.0**-6, "smallest normal"),
    ("fp8_e4m3", "smallest_subnormal", 2.0**-9, "smallest subnormal"),
    ("fp8_e5m2", "max", 57344.0, "OCP E5M2 max 1.75 * 2^15"),
    ("fp8_e5m2", "smallest_subnormal", 2.0**-16, "2^-16 = 1.5e-5"),
    ("fp8_143", "max", 240.0, "IEEE-like 1-4-3 max 1.875 * 2^7"),
    ("fp8_143", "smallest_subnormal", 2.0**-9, "2^-9 = 1.95e-3"),
    ("fp8_152", "max", 57344.0, "IEEE-like 1-5-2"),
    ("fp8_152", "smallest_subnormal", 2.0**-16, "2^-16"),
    ("fp6_e2m3", "max", 7.5, "OCP FP6 E2M3"),
    ("fp6_e3m2", "max", 28.0, "OCP FP6 E3M2"),
    ("fp4_e2m1", "max", 6.0, "OCP FP4 E2M1"),
    ("fp4_e2m1", "smallest_subnormal", 0.5, "FP4 0.5"),
    ("fp16", "max", 65504.0, "binary16"),
    ("bf16", "max", float(torch.finfo(torch.bfloat16).max), "bfloat16"),
    ("bf16", "tiny", float(torch.finfo(torch.bfloat16).tiny), "bfloat16 tiny"),
    ("mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "max", (2 - 2**-4) / 2, "<2,4> top code"),
    ("mls(ex=2,mx=4,eg=8,mg=1,group=nc)", "smallest_subnormal", 2.0**-7, "2^(1-2^2-4)"),
    ("mls(ex=0,mx=3,eg=8,mg=1,group=nc)", "max", 7 / 8, "<0,3> fixed point"),
    ("mu8(mu=255,range=2)", "max", 2.0, "MU8 range"),
    ("mx(elem=int8)", "max", 127 / 64, "MX INT8 1.6 fixed point"),
]


@pytest.mark.parametrize("spec,prop,value,label", EDGE_VALUES, ids=[f"{e[0]}-{e[1]}" for e in EDGE_VALUES])
def test_edge_values(spec, prop, value, label):
    fmt = core.parse_format(spec)
    assert getattr(fmt, prop) == value, label
    if fmt.bits <= 8:
        book = core.codebook(fmt)
        if prop == "max":
            assert float(book[-1]) == pytest.approx(value, rel=1e-15)
        if prop == "smallest_subnormal":
            assert float(book[1]) == value


def test_fp4_codebook_is_the_ocp_table():
    assert core.codebook("fp4_e2m1").tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


@settings(max_examples=80, deadline=None)
@given(
    ex=st.integers(0, 5), mx=st.integers(0, 6), eg=st.integers(0, 8), mg=st.integers(0, 3),
    group=st.sampled_from(["none", "n", "c", "nc"]),
    rounding=st.sampled_from(["nearest", "stochastic", "truncate"]),
    shape=st.sampled_from([(7,), (3, 5), (4, 3, 6), (2, 3, 2, 5), (1, 1), (6, 1, 1)]),
    log2_scale=st.integers(-40, 40), specials=st.booleans(), seed=st.integers(0, 2**31),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_mls_fused_cpu_kernel_equals_reference(ex, mx, eg, mg, group, rounding, shape, log2_scale,
                                               specials, seed, dtype):
    """The fused Numba MLS path (group max, scales, rounding in kernels) gives the reference's bits."""
    if ex == 0 and mx == 0:
        mx = 1
    fmt = core.parse_format(f"mls(ex={ex},mx={mx},eg={eg},mg={mg},group={group})")
    g = torch.Generator().manual_seed(seed % 1000)
    x = (torch.randn(shape, generator=g, dtype=torch.float64)
         * torch.exp2(torch.randint(-12, 12, shape, generator=g).double()) * 2.0**log2_scale).to(dtype)
    if specials:
        flat = x.view(-1)
        flat[0] = float("inf")
        flat[-1] = -0.0
        if flat.numel() > 2:
            flat[1] = float("nan")
    a = core.quantize(x, fmt, rounding, seed=seed, backend="numba")
    b = core.quantize(x, fmt, rounding, seed=seed, backend="reference")
    assert torch.equal(a.isnan(), b.isnan())
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    assert torch.equal(torch.signbit(a), torch.signbit(b))


@pytest.mark.parametrize("eg", range(0, 9))
@pytest.mark.parametrize("mg", range(0, 5))
def test_group_scale_kernel_equals_torch_reference_at_every_member_and_neighbour(eg, mg):
    """The bit-pattern Ceil of the fused MLS kernel against the float64 torch reference
    at every member of G, one float64 ulp either side, 0, subnormals and random ratios."""
    from core.formats.mls import group_scale_ceil
    from core.kernels.mls_fused import group_scale_ceil_value

    G = group_scale_set(eg, mg).numpy()
    rnd = np.random.default_rng(eg * 10 + mg).uniform(0, 1, 200) ** 8
    pts = np.concatenate([G, np.nextafter(G, 0), np.nextafter(G, 2), rnd,
                          [0.0, 5e-324, 1e-310, 2.0**-300, 1.0]])
    ref_v, ref_e, ref_k = group_scale_ceil(torch.from_numpy(pts), eg, mg)
    for p, v, e, k in zip(pts, ref_v.tolist(), ref_e.tolist(), ref_k.tolist()):
        assert group_scale_ceil_value(p, eg, mg) == (v, e, k), (p, eg, mg)


@pytest.mark.parametrize("group", ["none", "n", "c", "nc"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (6, 2, 3, 3), (1, 1)])
def test_mls_scales_kernel_equals_torch_reference(group, shape):
    """MLSFormat.scales through the Numba kernel (metrics, telemetry) == the torch reference."""
    fmt = core.parse_format(f"mls(ex=2,mx=3,eg=4,mg=1,group={group})")
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g) * torch.exp2(torch.randint(-30, 5, shape, generator=g).float())
    x3 = fmt.view(x).to_x3(x)
    a2, a = fmt.scales(x3, "numba")
    b2, b = fmt.scales(x3, "reference")
    assert torch.equal(a2, b2) and a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
@pytest.mark.parametrize("shape", [(1, 2, 40001), (3, 1, 16384), (2, 70000)])
def test_mls_fused_long_rows_equal_reference(rounding, shape):
    """Rows longer than a kernel chunk (tasks split inside a row) give the reference's bits."""
    fmt = core.parse_format("mls(ex=2,mx=3,eg=8,mg=1,group=nc)")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    a = core.quantize(x, fmt, rounding, seed=4, backend="numba")
    b = core.quantize(x, fmt, rounding, seed=4, backend="reference")
    assert torch.equal(a, b)
    n = core.quantize(x, "niti", rounding, seed=4, backend="numba")
    assert torch.equal(n, core.quantize(x, "niti", rounding, seed=4, backend="reference"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, R", [(7, 1), (5, 13), (3, 40000), (1, 16384), (4, 0)])
def test_group_absmax_rows_equals_numpy(dtype, rows, R):
    """The integer (bit-pattern) max of |x| per row == NumPy's nanmax over finite values."""
    from core.kernels.grid_round import group_absmax_rows

    rng = np.random.default_rng(rows * 1000 + R)
    x = (rng.standard_normal((rows, R)) * np.exp2(rng.integers(-140, 100, (rows, R)))).astype(dtype)
    if x.size > 4:
        x.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
        x.flat[-1] = np.finfo(dtype).smallest_subnormal
    finite = np.where(np.isfinite(x), np.abs(x), 0).astype(np.float64)
    want = finite.max(axis=1) if R else np.zeros(rows)
    got = group_absmax_rows(np.ascontiguousarray(x).reshape(-1), rows)
    assert got.dtype == np.float64 and np.array_equal(got, want)


def _adversarial_nc_tensor(kind: int, n: int, rng: np.random.Generator) -> torch.Tensor:
    """float32 data aimed at the one-element-group lanes' edges (core.kernels.mls_one_element)."""
    if kind == 0:  # wide dynamic range
        x = rng.standard_normal(n) * np.exp(rng.uniform(-60, 60, n))
    elif kind == 1:  # few-bit values: exact members of G times St, exact grid midpoints
        x = rng.choice([0.5, 0.75, 1, 1.5, 2, 3, 0.375, -0.25, 0.625, 0.875, 1.25, 0, 1.125, 0.5625], n)
        x = x * 2.0 ** float(rng.integers(-20, 20))
    elif kind == 2:  # one float32 ulp around a few values (St and its neighbours)
        x = float(rng.standard_normal()) * (1 + rng.integers(-4, 5, n) * 2.0**-23)
    elif kind == 3:  # float32 subnormals and values near 2^-120
        x = rng.integers(-(1 << 23), 1 << 23, n) * 2.0 ** float(rng.integers(-149, -100))
    else:  # ReLU-like: half zeros, NaN and inf sprinkled in
        x = np.maximum(rng.standard_normal(n), 0)
        x[rng.integers(0, n, 3)] = np.inf
        x[rng.integers(0, n, 2)] = np.nan
        x[rng.integers(0, n, 2)] = -np.inf
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("kind", range(5))
@pytest.mark.parametrize("n", [1, 3, 1000, 70_001])
def test_mls_one_element_groups_equal_reference(kind, n):
    """MLS nc on 2-d float32 tensors (every element its own group: the float32 mantissa-ratio lanes
    and the general path) gives the float64 reference's bits, nearest and stochastic, over element
    grids Ex 0..5 / Mx 0..10 and group scales Eg 0..8 / Mg 0..4; sizes run serial and parallel."""
    rng = np.random.default_rng(kind * 100 + n % 97)
    x = _adversarial_nc_tensor(kind, n, rng).reshape(-1, 1 if n % 2 else 2 if n > 1 else 1)
    for _ in range(6 if n < 10_000 else 2):
        ex, eg, mg = int(rng.integers(0, 6)), int(rng.integers(0, 9)), int(rng.integers(0, 5))
        mx = int(rng.integers(0 if ex else 1, 11))
        fmt = core.parse_format(f"mls(ex={ex},mx={mx},eg={eg},mg={mg},group=nc)")
        for rounding in ("nearest", "stochastic"):
            seed = int(rng.integers(0, 2**63))
            a = core.quantize(x, fmt, rounding, seed=seed, backend="numba")
            b = core.quantize(x, fmt, rounding, seed=seed, backend="reference")
            assert torch.equal(a.isnan(), b.isnan()), (fmt, rounding)
            assert torch.equal(a.nan_to_num(0.0).view(torch.int32), b.nan_to_num(0.0).view(torch.int32)), \
                (fmt, rounding)


def test_mls_one_element_lanes_cover_the_paper_formats_without_the_general_path():
    """The lanes (not the general path) quantize ordinary data for Mg <= 2: no element is flagged."""
    from core.kernels import mls_one_element as k

    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    st = float(np.abs(x).max())
    assert not k._needs_general_path(x.view(np.uint32), 0, x.size, k._tiny_bits(st, 8))
    x[5] = np.inf
    assert k._needs_general_path(x.view(np.uint32), 0, x.size, k._tiny_bits(st, 8))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_spec_quantizer_callables_equal_the_reference_on_edge_tensors(rounding):
    """``spec.quantizer(rounding)(x, seed)`` (the training loop's entry: MLS nc 2-d float32 CPU
    tensors go straight to the one-element kernel) == the float64 reference on the shapes,
    dtypes, layouts and values that leave that fast path or stress it."""
    tensors = [torch.randn(5, 3, requires_grad=True), torch.randn(7), torch.tensor(2.5), torch.zeros(0, 4),
               torch.randn(6, 4).t(), torch.randn(4, 4, dtype=torch.float64), torch.full((3, 3), float("nan")),
               torch.tensor([[float("inf"), 1.0], [0.0, -2.0]]), torch.randn(300, 300),
               torch.randn(10, 4)[2:5]]  # contiguous view at a storage offset (the kernel takes its address)
    for fmt in ("mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=3,mx=2,eg=4,mg=3,group=nc)",
                "mls(ex=2,mx=3,eg=8,mg=2,group=nc)", "mls(ex=1,mx=2,eg=5,mg=0,group=nc)",
                "mls(ex=2,mx=1,eg=8,mg=1,group=n)",  # Mg 0-2: short and long select chains
                "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "bf16", "fp16",  # float32 fast path or not (coarse grids)
                "float(e=5,m=2,inf=false,nan=none,saturate=false)"):
        spec = core.parse_format(fmt)
        q = spec.quantizer(rounding)
        for x in tensors:
            a = q(x, 123)
            b = core.quantize(x.detach(), spec, rounding, seed=123, backend="reference")
            assert a.shape == x.shape and a.dtype == x.dtype, (fmt, tuple(x.shape))
            assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)), (fmt, tuple(x.shape), x.dtype)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=2,mx=4,eg=8,mg=1,group=c)",
                                 "mx(elem=fp8_e4m3)", "mu8", "int(bits=8,scale=channel)"])
def test_seeds_above_2_63_give_the_reference_words(fmt):
    """Seeds in [2^63, 2^64) reach the kernels as the int64 with the same bits (Numba's dispatcher
    takes a slow path for larger Python ints): the numba backend and the quantizer callables
    still round like the reference, and unlike the seed with the top bit cleared."""
    from core.formats.grid import kernel_seed

    assert kernel_seed(2**64 - 1) == -1 and kernel_seed(2**63) == -(2**63) and kernel_seed(5) == 5
    spec = core.parse_format(fmt)
    x = torch.randn(64, 48, generator=torch.Generator().manual_seed(1))
    for seed in (2**63, 2**64 - 3, 2**63 + 12345):
        want = core.quantize(x, spec, "stochastic", seed=seed, backend="reference")
        assert torch.equal(core.quantize(x, spec, "stochastic", seed=seed, backend="numba"), want), seed
        assert torch.equal(spec.quantizer("stochastic")(x, seed), want), seed
        assert not torch.equal(core.quantize(x, spec, "stochastic", seed=seed - 2**63, backend="numba"), want)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "bf16", "fp6_e2m3",
                                 "float(e=5,m=2,inf=false,nan=none,saturate=false)", "float(e=4,m=3,subnormals=false)",
                                 "float(e=8,m=22)", "float(e=3,m=0)"])
@pytest.mark.parametrize("n", [1000, 70_000])
def test_f32_bit_pattern_kernel_equals_the_generic_kernel(fmt, n):
    """``quantize_f32_flat`` (branch-free: bit-pattern rounding for the target's normals, a fixed
    quantum below them) against the generic per-value kernel ``quantize_grid_3d`` on random bit
    patterns (every class: NaN payloads, inf, subnormals), ReLU-like zeros and tiny values, in
    every rounding mode, serial and parallel sizes."""
    from core.kernels.grid_round import quantize_f32_flat, quantize_grid_3d

    spec = core.parse_format(fmt)
    g, ovf, infv = spec.grid, spec.overflow_value, spec.inf_value
    r = np.random.default_rng(n)
    words = r.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    small = np.maximum(r.standard_normal(n), 0) * np.exp(r.uniform(-30, 5, n))
    x = np.concatenate([words, small.astype(np.float32).view(np.uint32),
                        np.arange(0, 3000, dtype=np.uint32), np.arange(0x80000000, 0x80000000 + 3000, dtype=np.uint32)])
    for mode in (0, 1, 2):
        fast = np.empty_like(x)
        quantize_f32_flat(x, fast, g.m, g.emin, g.subnormals, g.maxval, ovf, infv, mode, 2**63 - 5)
        generic = np.empty((1, 1, x.size), dtype=np.float32)
        quantize_grid_3d(x.view(np.float32).reshape(1, 1, -1), np.ones((1, 1)), generic, g.m, g.emin, g.subnormals,
                         g.maxval, ovf, infv, mode, 2**63 - 5)
        nan = np.isnan(fast.view(np.float32))
        assert np.array_equal(nan, np.isnan(generic.reshape(-1))), (fmt, mode)
        assert np.array_equal(fast[~nan], generic.reshape(-1).view(np.uint32)[~nan]), (fmt, mode)
