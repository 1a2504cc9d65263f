"""Parser, public API contract, kernels vs reference, special values and bad input."""

from __future__ import annotations

from typing import Any

import math

import numpy as np
import pytest
import torch

import core
from core.formats import ALIASES, FAMILIES

ALL_SPECS = [
    "fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp8_143", "fp8_152", "fp6_e3m2", "fp6_e2m3",
    "fp4_e2m1", "float(e=5,m=3,bias=11,inf=false,nan=fn,subnormals=false,saturate=false)",
    "int(bits=8,scale=tensor)", "int(bits=3,scale=channel)", "fixed(bits=12,frac=6)",
    "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", "mls(ex=2,mx=4,eg=8,mg=1,group=n)",
    "mls(ex=0,mx=3,eg=4,mg=0,group=c)", "mls(ex=3,mx=2,eg=8,mg=1,group=none)",
    "mu8(mu=255,range=2)", "mulaw(bits=5,mu=50,range=4)", "niti(bits=8)",
    "mx(elem=fp8_e4m3,block=32,axis=-1)", "mx(elem=fp8_e5m2,block=16,axis=0,scale=rceil)",
    "mx(elem=fp6_e3m2)", "mx(elem=fp6_e2m3)", "mx(elem=fp4_e2m1,block=32,axis=1)", "mx(elem=int8)",
    "bfp(bits=8,block=16,axis=-1)",
]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_string_round_trips(spec):
    fmt = core.parse_format(spec)
    assert core.parse_format(str(fmt)) == fmt
    assert str(core.parse_format(str(fmt))) == str(fmt)
    with pytest.raises(Exception):
        fmt.m = 3  # frozen


def test_example_string_is_canonical():
    s = "mls(ex=2,mx=1,eg=8,mg=1,group=nc)"
    assert str(core.parse_format(s)) == s
    assert core.parse_format(" MLS( ex = 2 , mx=1 ) ") == core.parse_format(s)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("fp9", "unknown format 'fp9'"),
        ("mls(ex=2,foo=1)", "unknown key 'foo'"),
        ("mls(ex=9)", "ex=9 is out of range"),
        ("mls(group=hw)", "valid values: none, n, c, nc"),
        ("mls(ex=two)", "expected an integer"),
        ("float(e=4,m=3,inf=maybe)", "expected true or false"),
        ("mu8(mu=0)", "mu=0.0 is out of range"),
        ("mu8(mu=-3)", "out of range"),
        ("int(bits=1)", "bits=1 is out of range"),
        ("mx(elem=fp7)", "valid values: fp8_e4m3"),
        ("mls(ex=2,ex=3)", "given twice"),
        ("mls(ex)", "expected key=value"),
        ("__import__('os').system('true')", "unknown format '__import__'"),
        ("", "empty"),
        ("mls(ex=2", "cannot parse"),
    ],
)
def test_bad_specs_name_the_problem(text, needle):
    with pytest.raises(ValueError) as err:
        core.parse_format(text)
    assert needle in str(err.value)


def test_unknown_family_lists_valid_names():
    with pytest.raises(ValueError) as err:
        core.parse_format("posit(bits=8)")
    for name in ["mls", "fp8_e4m3", "mx", "mu8", "niti", "bfp"]:
        assert name in str(err.value)


def test_rounding_mode_errors():
    x = torch.randn(8)
    with pytest.raises(ValueError, match="unknown rounding mode 'sideways'; valid modes: nearest, stochastic"):
        core.quantize(x, "fp8_e4m3", rounding="sideways")
    with pytest.raises(ValueError, match="random bits must be 1..31"):
        core.quantize(x, "fp8_e4m3", rounding="stochastic_rbits32")
    with pytest.raises(ValueError, match="does not support rounding='up'"):
        core.quantize(x, "nf4", rounding="up")
    with pytest.raises(ValueError, match="does not support rounding='pseudo_stochastic'"):
        core.quantize(x, "fp8_e4m3", rounding="pseudo_stochastic")
    core.quantize(x, "niti", rounding="pseudo_stochastic")


def test_non_float_inputs_raise_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        core.quantize(torch.arange(4), "fp8_e4m3")
    with pytest.raises(TypeError, match="torch.Tensor"):
        core.quantize(np.zeros(3), "fp8_e4m3")


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_shapes_dtypes_empty_and_scalar(spec, dtype):
    fmt = core.parse_format(spec)
    for shape in [(), (0,), (3, 0, 2), (5,), (2, 3, 4, 5), (0, 4)]:
        x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
        if getattr(fmt, "axis", -1) not in (-1, 0) and 1 <= len(shape) <= fmt.axis:
            with pytest.raises(ValueError, match="out of range"):
                core.quantize(x, spec)
            continue
        y = core.quantize(x, spec)
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        if x.numel():
            assert torch.equal(core.decode(core.encode(x, spec)), y)


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
def test_numba_kernels_equal_reference_bit_for_bit(spec, rounding):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 7, 9, generator=g) * torch.logspace(-6, 6, 9)
    x[0, 0, 0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-40])
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        xd = x.to(dtype)
        a = core.quantize(xd, spec, rounding, seed=11, backend="numba")
        b = core.quantize(xd, spec, rounding, seed=11, backend="reference")
        assert torch.equal(a.isnan(), b.isnan()), (spec, rounding, dtype)
        assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)), (spec, rounding, dtype)
        assert torch.equal(torch.signbit(a), torch.signbit(b))


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if "axis=0" not in s and "axis=1" not in s])
def test_nan_stays_nan_and_inf_follows_the_family_rule(spec):
    fmt = core.parse_format(spec)
    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0, 0.5])
    y = core.quantize(x, fmt)
    assert math.isnan(y[1])
    for backend in ("numba", "reference"):
        assert torch.equal(core.quantize(x, fmt, backend=backend).isnan(), y.isnan())
    if fmt.family == "float":
        if fmt.has_inf:
            assert y[2] == math.inf and y[3] == -math.inf
        elif fmt.saturate:
            assert y[2] == fmt.max and y[3] == -fmt.max
        else:
            assert y[2:4].isnan().all()
        ieee = fmt.replace(saturate=False)
        big = torch.tensor([fmt.max * 4.0], dtype=torch.float64) if fmt.max < 1e300 else None
        if big is not None:
            yb = core.quantize(big, ieee)
            if fmt.has_inf:
                assert yb == math.inf
            elif fmt.has_nan:
                assert torch.isnan(yb).all()
            else:  # FP6/FP4: nothing to overflow into, always saturates
                assert yb == fmt.max
    elif fmt.family == "mx":
        # OCP MX v1.0 section 6.3 (microxcaling): a block holding inf/NaN has the NaN scale, all NaN
        assert y.isnan().all()
        x2 = torch.tensor([[1.0, float("inf"), -2.0, 0.5], [1.0, 3.0, -2.0, 0.5]]).reshape(2, 1, 4)
        y2 = core.quantize(x2, fmt)
        assert y2[0].isnan().all() and not y2[1].isnan().any()
    else:
        # other scaled and companded formats: +-inf saturates to the largest code of its
        # group (its scale comes from the group's finite values)
        assert torch.isfinite(y[2]) and y[2] == -y[3] and not torch.signbit(y[2])
        x2 = torch.tensor([[1.0, float("inf"), -2.0, 0.5]] * 2).reshape(2, 1, 4)
        y2 = core.quantize(x2, fmt)
        assert y2[0, 0, 1] > 0 and y2[0, 0, 1] == y2[0, 0].abs().max()


def test_nan_cannot_be_encoded_without_a_nan_code():
    with pytest.raises(ValueError, match="no NaN encoding"):
        core.encode(torch.tensor([float("nan")]), "fp4_e2m1")
    assert torch.isnan(core.decode(core.encode(torch.tensor([float("nan")]), "fp8_e4m3"))).all()


def test_metrics_against_hand_computation():
    x = torch.tensor([1.0, -2.0, 0.0, 4.0])
    y = torch.tensor([1.5, -2.0, 0.0, 3.0])
    assert core.metrics.are(x, y) == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert core.metrics.rel_error(x, y) == pytest.approx(math.sqrt(0.25 + 1) / math.sqrt(21))
    assert core.metrics.sqnr_db(x, y) == pytest.approx(10 * math.log10(21 / 1.25))
    z = torch.tensor([500.0, 1e-4, 0.0, 1.0, float("nan")])
    assert core.metrics.overflow_fraction(z, "fp8_e4m3") == pytest.approx(1 / 4)
    assert core.metrics.underflow_fraction(z, "fp8_e4m3") == pytest.approx(1 / 4)
    assert core.metrics.overflow_fraction(torch.tensor([3.0, 1.0, -2.5]), "mu8") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        core.metrics.are(x, y[:2])


def test_code_step_matches_codebook_spacing():
    book = core.codebook("fp8_e4m3")
    x = book[1:-1].float()
    step = core.code_step(x, "fp8_e4m3")
    assert torch.equal(step, (book[2:] - book[1:-1]))


def test_registry_lists_every_family():
    assert {"float", "int", "fixed", "mls", "mulaw", "mu8", "niti", "mx", "bfp"} <= set(FAMILIES)
    assert {"fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp8_143", "fp8_152"} <= set(ALIASES)


def test_niti_pseudo_stochastic_matches_alg3_oracle():
    from naive import niti_pseudo_stochastic
    from core.formats import pseudo_stochastic_round

    rng = np.random.default_rng(0)
    v = rng.integers(-2**20, 2**20, 5000)
    for bp in range(0, 12):
        got = pseudo_stochastic_round(torch.from_numpy(v), bp).tolist()
        assert got == [niti_pseudo_stochastic(int(a), bp) for a in v], bp
    # hand-worked: 0b1011_0110 >> 4: fraction 0110 -> upper 01 > lower 10? no -> 0b1011
    assert pseudo_stochastic_round(torch.tensor([0b10110110]), 4).item() == 0b1011
    # fraction 1001: upper 10 > lower 01 -> round up
    assert pseudo_stochastic_round(torch.tensor([0b10111001]), 4).item() == 0b1100
    # odd bp=5: 0b1_10010 -> drop lowest bit -> 1001 -> up; sign restored
    assert pseudo_stochastic_round(torch.tensor([-0b110010]), 5).item() == -2


@pytest.mark.parametrize("spec", ["mx(elem=fp8_e4m3)", "mx(elem=fp4_e2m1,scale=rceil)", "mx(elem=int8,block=8)",
                                  "mx(elem=fp6_e2m3,block=16)", "bfp(bits=8,block=16)", "bfp(bits=3,block=4)"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "truncate"])
def test_fused_block_kernel_equals_reference(spec, rounding):
    """Contiguous last-axis blocks take the one-pass Numba kernel; it must equal
    the reference (amax, exponent clamping, zero blocks, NaN/inf included)."""
    x = torch.randn(64, 96, dtype=torch.float64) * torch.logspace(-40, 40, 96, dtype=torch.float64)
    x[0, :3] = torch.tensor([float("nan"), float("inf"), 0.0])
    x[1, :32] = 0
    x[2, :32] = float("-inf")  # a block of infinities only: amax over finite values is 0
    x[3, 32:64] = float("nan")
    x[4, :4] = torch.tensor([-0.0, -float("inf"), 5e-324, -1e-310])  # subnormals and a negative zero
    for xd in (x, x.float()):
        a = core.quantize(xd, spec, rounding, seed=3)
        b = core.quantize(xd, spec, rounding, seed=3, backend="reference")
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)), (spec, rounding, xd.dtype)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(1e-3, 1e6), rng=st.floats(1e-3, 1e3), bits=st.integers(2, 10))
def test_mulaw_kernel_equals_reference_for_any_mu_and_range(mu, rng, bits):
    """The bucketed branch-free threshold search (two steps for <= 8 bits) must
    agree with searchsorted for every mu/range, including exact thresholds."""
    fmt = core.parse_format(f"mulaw(bits={bits},mu={mu!r},range={rng!r})")
    from core.formats.mulaw import _tables

    _, thr = _tables(fmt.bits, fmt.mu, fmt.range)
    x = torch.cat([torch.linspace(-1.2 * rng, 1.2 * rng, 4001, dtype=torch.float64),
                   torch.from_numpy(thr), torch.from_numpy(np.nextafter(thr, np.inf)),
                   torch.from_numpy(np.nextafter(thr, -np.inf))])
    a = core.quantize(x, fmt, backend="numba")
    b = core.quantize(x, fmt, backend="reference")
    assert torch.equal(a, b)


def _mulaw_edge_values(fmt: Any, rng: np.random.Generator, n: int) -> np.ndarray:
    """Values at every code and threshold and their float64 neighbours (y at or next to an integer
    or a rounding threshold), the clamp, specials, tiny and subnormal values, and a random sweep."""
    from core.formats.mulaw import _tables

    codes, thr = _tables(fmt.bits, fmt.mu, fmt.range)
    pts = np.concatenate([codes, thr, [fmt.range, 0.0, -0.0, 5e-324, 1e-300, np.inf, -np.inf, np.nan, 3 * fmt.range]])
    near = [pts, np.nextafter(pts, np.inf), np.nextafter(pts, -np.inf)]
    sweep = rng.uniform(-1.2, 1.2, n) * fmt.range
    return np.concatenate(near + [sweep, -pts])


@settings(max_examples=30, deadline=None)
@given(mu=st.floats(1e-6, 1e9), rng=st.floats(1e-30, 1e30), bits=st.integers(2, 16),
       seed=st.integers(0, 2**64 - 1), n=st.sampled_from([100, 70_000]))
def test_mulaw_stochastic_fast_path_equals_the_exact_kernel(mu, rng, bits, seed, n):
    """``mulaw_stochastic`` (bounded-error log1p, libm only for uncertain decisions) gives the bits
    of the libm kernel ``mulaw_quantize(mode=1)`` for every mu, range and width, float32 and
    float64, serial and parallel sizes, including values whose y lies within ulps of its rounding
    threshold; the format's numba backend equals the reference."""
    from core.formats.grid import kernel_seed
    from core.formats.mulaw import _padded, _starts, _tables
    from core.kernels.mulaw import mulaw_quantize, mulaw_stochastic

    fmt = core.parse_format(f"mulaw(bits={bits},mu={mu!r},range={rng!r})")
    codes, _ = _tables(fmt.bits, fmt.mu, fmt.range)
    x64 = _mulaw_edge_values(fmt, np.random.default_rng(bits), n)
    # elements whose companded y lies within a few ulps of their own stochastic threshold
    # floor(y) + 1 - r 2^-32 (r: the element's random word): only an exact decision gets them right
    from core.formats.grid import random_bits

    m = min(300, x64.size)
    r = random_bits(seed, m).astype(np.float64)
    g = np.random.default_rng(seed % 2**32)
    t = g.integers(0, fmt.K, m) + 1.0 - r / 2.0**32
    target = fmt.range * np.expm1(t * math.log1p(fmt.mu) / fmt.K) / fmt.mu
    for _ in range(int(g.integers(0, 4))):
        target = np.nextafter(target, np.inf if g.random() < 0.5 else -np.inf)
    x64[:m] = np.where(g.random(m) < 0.5, -target, target)
    with np.errstate(over="ignore"):
        x32 = x64.astype(np.float32)  # beyond float32: +-inf (clamped like any value above the range)
    for x in (x64, x32):
        fast, exact = np.empty_like(x), np.empty_like(x)
        mulaw_stochastic(x, fast, codes, fmt.K, fmt.mu, fmt.range, kernel_seed(seed))
        mulaw_quantize(x, exact, codes, _padded(fmt.bits, fmt.mu, fmt.range), _starts(fmt.bits, fmt.mu, fmt.range),
                       fmt.K, fmt.mu, fmt.range, 1, kernel_seed(seed))
        assert np.array_equal(fast, exact, equal_nan=True) and np.array_equal(np.signbit(fast), np.signbit(exact))
    # the reference's torch.log1p and libm's may differ in the last ulp, which flips decisions only
    # for y within ulps of its threshold (probability ~1e-16 per element): compare the rest
    t = torch.from_numpy(x64[m:m + 4000])
    assert torch.equal(core.quantize(t, fmt, "stochastic", seed=seed, backend="numba").nan_to_num(7.0),
                       core.quantize(t, fmt, "stochastic", seed=seed, backend="reference").nan_to_num(7.0))


def test_log1p_bounded_error_bound():
    """The vectorizable log1p stays within its documented bound, 2^-40 (1 + log1p(u)), of libm's
    over [0, 1e9] (dense near 0, 1 and the sqrt(2) mantissa split)."""
    import math

    from core.kernels.mulaw import log1p_bounded

    r = np.random.default_rng(0)
    u = np.concatenate([[0.0, 5e-324, 1e-300, 2.0**-53, 1.0, math.sqrt(2) - 1, math.sqrt(2), 1e9],
                        np.geomspace(1e-300, 1e9, 20000), r.uniform(0, 2, 20000), r.uniform(0, 300, 20000)])
    for v in u:
        want = math.log1p(v)
        assert abs(log1p_bounded(v) - want) <= 2.0**-40 * (1 + want), v


@pytest.mark.parametrize("spec", ["mu8", "mu8(mu=10,range=0.3)", "mulaw(bits=5,mu=50,range=4)",
                                  "mulaw(bits=8,mu=1000000,range=1e-20)", "mulaw(bits=3,mu=0.01,range=7.7)"])
def test_mulaw_float32_nearest_path_equals_reference(spec):
    """The integer-compare float32 path (thresholds as float32 bit patterns) against the float64
    searchsorted reference: every code, every threshold rounded to float32 and 3 float32 ulps
    either side, the range edge, specials, and a random sweep."""
    from core.formats.mulaw import _tables

    fmt = core.parse_format(spec)
    codes, thr = _tables(fmt.bits, fmt.mu, fmt.range)
    pts = np.concatenate([codes, thr, [fmt.range, 0.0, 1e-45, 1e-38, 3e38]]).astype(np.float32)
    near = [pts]
    for _ in range(3):
        near.append(np.nextafter(near[-1], np.float32(np.inf)))
    lo = [pts]
    for _ in range(3):
        lo.append(np.nextafter(lo[-1], np.float32(0)))
    rnd = np.random.default_rng(0).uniform(-1.3, 1.3, 20000).astype(np.float32) * np.float32(fmt.range)
    v = np.concatenate(near + lo + [rnd])
    x = torch.from_numpy(np.concatenate([v, -v, np.array([np.nan, np.inf, -np.inf], dtype=np.float32)]))
    a = core.quantize(x, fmt, backend="numba")
    b = core.quantize(x, fmt, backend="reference")
    assert a.dtype == torch.float32
    assert torch.equal(a.isnan(), b.isnan())
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)) and torch.equal(a.signbit(), b.signbit())


@settings(max_examples=40, deadline=None)
@given(mu=st.floats(1e-6, 1e9), rng=st.floats(1e-30, 1e30), bits=st.integers(2, 8), seed=st.integers(0, 2**32 - 1),
       n=st.sampled_from([1000, 70_000]))
def test_mulaw_float32_bucket_table_equals_reference_for_any_codebook(mu, rng, bits, seed, n):
    """The one-entry-per-bucket float32 nearest path (``f32_threshold_tables``: at most one
    threshold per 2^15 bit patterns) for every mu, range and width: each threshold rounded to
    float32 and 2 ulps either side, the bucket edges around them, random bit patterns below
    1.2 range and anywhere (NaN, inf, subnormals), serial and parallel sizes."""
    from core.formats.mulaw import _f32_tables, _tables

    fmt = core.parse_format(f"mulaw(bits={bits},mu={mu!r},range={rng!r})")
    codes, thr = _tables(fmt.bits, fmt.mu, fmt.range)
    if thr[0] < 2.0**-126 or _f32_tables(fmt.bits, fmt.mu, fmt.range) is None:
        return  # the float64 kernel runs (tested above)
    g = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        pts = np.concatenate([codes, thr, [fmt.range]]).astype(np.float32)
    pb = pts.view(np.uint32).astype(np.int64)
    edges = (pb >> 15) << 15
    near = np.concatenate([pb + d for d in (-2, -1, 0, 1, 2)] + [edges + d for d in (-1, 0, 1)])
    rand_in = (g.uniform(0, 1.2, n) * fmt.range).astype(np.float32).view(np.uint32).astype(np.int64)
    rand_any = g.integers(0, 2**32, n // 10)
    u = np.concatenate([np.clip(near, 0, 2**31 - 1), rand_in, rand_any]).astype(np.uint32)
    u[: u.size // 2] |= np.uint32(0x80000000) * (g.random(u.size // 2) < 0.5)
    x = torch.from_numpy(u.view(np.float32).copy())
    a = core.quantize(x, fmt, backend="numba")
    b = core.quantize(x, fmt, backend="reference")
    assert a.dtype == torch.float32
    assert torch.equal(a.isnan(), b.isnan())
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)) and torch.equal(a.signbit(), b.signbit())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [8, 5, 16])
def test_niti_pseudo_stochastic_kernel_equals_reference(dtype, bits):
    """The Numba Alg. 3 kernel against the torch reference: random scales, specials, exact ties."""
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(4, 33, generator=g, dtype=torch.float64)
    x = (x * 10.0 ** torch.randint(-3, 4, (4, 33), generator=g)).to(dtype)
    x[0, :5] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0], dtype=dtype)
    x[1, :8] = torch.tensor([0.5, 1.5, 2.5, -2.5, 3.0, 1.0 + 2**-8, 1.0 + 2**-9, -7.75], dtype=dtype) * 2.0**10
    spec = f"niti(bits={bits})"
    a = core.quantize(x, spec, "pseudo_stochastic", backend="numba")
    b = core.quantize(x, spec, "pseudo_stochastic", backend="reference")
    assert a.dtype == dtype and torch.equal(a.isnan(), b.isnan())
    assert torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)) and torch.equal(a.signbit(), b.signbit())


def test_every_public_core_name_resolves():
    """``core.__all__`` names resolve through the lazy loader, including the delayed-scaling entries."""
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    x = torch.tensor([1.0, -3.0, 0.3])
    assert torch.equal(core.quantize_with_scale(x, "fp8_e4m3", 0.5),
                       0.5 * core.quantize(x / 0.5, "fp8_e4m3"))
