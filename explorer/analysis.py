"""Panel-free numerics behind the Format Lab: test tensors, binning and fast error statistics.

This module owns everything the Format Lab computes, none of it drawn:

* :func:`make_tensor` draws the synthetic tensors (normal, laplace, log-uniform) in an
  NCHW activation-like shape, so MLS grouping and block formats see a realistic layout;
* :class:`DataSummary` bins one tensor by ``log2|x|`` once (the histogram, and each
  element's bin, reused by every format);
* :func:`analyze` quantizes the tensor with :func:`core.quantize` and reduces
  ``(x, Q(x))`` with the Numba kernels of :mod:`core.kernels.metrics` (parallel passes)
  to the metrics of :mod:`core.metrics` (same definitions: ARE over finite non-zero ``x``,
  norm-wise relative error, SQNR, saturation/overflow/underflow against :meth:`FormatSpec.range_for`;
  saturation = clipped to the top code, overflow = beyond the scale's headroom, docs/papers.md#mls-saturation)
  plus the mean relative error per ``log2|x|`` bin.  The sums are taken in float64 over
  fixed chunks, so the result does not depend on the thread count and matches
  :mod:`core.metrics` to rounding of the summation order (tested).

Only :mod:`core` is called; nothing here is compiled.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
import numpy as np
import torch

import core
from core.formats import FormatSpec
from core.kernels.metrics import error_metrics_from_sums, error_sums, log2_bins, range_fractions_sat

__all__ = [
    "DISTRIBUTIONS",
    "SIZES",
    "BINS_PER_BINADE",
    "METRIC_LABELS",
    "make_tensor",
    "DataSummary",
    "FormatResult",
    "analyze",
    "ResultCache",
    "shape_for",
]

#: synthetic distributions offered by the Format Lab
DISTRIBUTIONS: tuple[str, ...] = ("normal", "laplace", "log-uniform")
#: tensor sizes offered by the Format Lab (label -> number of elements)
SIZES: dict[str, int] = {"16K": 2**14, "64K": 2**16, "256K": 2**18, "1M": 2**20}
#: resolution of the ``log2|x|`` bins (bins per binade)
BINS_PER_BINADE = 4
#: metric key -> column label in tables
METRIC_LABELS: dict[str, str] = {
    "are": "ARE",
    "rel_error": "rel. error",
    "sqnr_db": "SQNR (dB)",
    "saturation": "saturation",
    "overflow": "overflow",
    "underflow": "underflow",
}

def shape_for(numel: int) -> tuple[int, ...]:
    """An NCHW activation-like shape with ``numel`` elements (powers of two from 2^10).

    ``N=16, C=64`` and a square spatial map, e.g. ``2^20 -> (16, 64, 32, 32)``; other sizes
    fall back to ``(numel,)``.
    """
    rest = numel // (16 * 64)
    side = int(round(math.sqrt(rest))) if rest > 0 else 0
    if side > 0 and 16 * 64 * side * side == numel:
        return (16, 64, side, side)
    return (numel,)


def make_tensor(
    distribution: str = "normal",
    scale: float = 1.0,
    numel: int = 2**20,
    seed: int = 0,
    binades: float = 16.0,
) -> torch.Tensor:
    """Draw a synthetic float32 test tensor.

    Args:
        distribution: ``normal`` (std = scale), ``laplace`` (b = scale, std = sqrt(2) scale) or
            ``log-uniform`` (``|x| = scale * 2^-u`` with ``u ~ U(0, binades)``, random sign).
        scale: the distribution's scale (> 0).
        numel: number of elements; the shape comes from :func:`shape_for`.
        seed: seed of a private ``torch.Generator`` (no global seeding).
        binades: width of the log-uniform range in binades.

    Returns:
        A float32 tensor of shape ``shape_for(numel)``.

    Raises:
        ValueError: unknown distribution, non-positive scale/numel/binades.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if numel <= 0:
        raise ValueError(f"numel must be positive, got {numel!r}")
    if not binades > 0:
        raise ValueError(f"binades must be positive, got {binades!r}")
    gen = torch.Generator().manual_seed(int(seed))
    shape = shape_for(int(numel))
    if distribution == "normal":
        x = torch.randn(shape, generator=gen) * scale
    elif distribution == "laplace":
        u = torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5
        x = (-scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())).float()
    else:
        u = torch.rand(shape, generator=gen, dtype=torch.float64) * binades
        sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
        x = (sign * scale * torch.exp2(-u)).float()
    return x.float()


# --------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class DataSummary:
    """A test tensor and its ``log2|x|`` binning (computed once, shared by all formats).

    Attributes:
        x: the float32 tensor (any shape).
        key: identifies the data in result caches.
        label: human-readable description.
        edges: ``log2|x|`` bin edges (``len(counts) + 1``).
        counts: elements per bin (zeros and non-finite values excluded).
        bins: bin of each element (int16; -1 for zero/non-finite).
        amax: largest finite ``|x|``.
        zeros: number of exact zeros.
    """

    x: torch.Tensor
    key: str
    label: str
    edges: np.ndarray
    counts: np.ndarray
    bins: np.ndarray
    amax: float
    zeros: int

    @property
    def numel(self) -> int:
        """Number of elements."""
        return int(self.x.numel())

    @property
    def flat(self) -> np.ndarray:
        """The elements as a flat float32 NumPy array (a view, no copy)."""
        return self.x.detach().reshape(-1).numpy()

    @classmethod
    def from_tensor(cls, x: torch.Tensor | np.ndarray, key: str, label: str = "") -> "DataSummary":
        """Bin ``x`` by ``log2|x|`` at :data:`BINS_PER_BINADE` bins per binade.

        The bin range spans the data (at most 80 binades, ending at ``log2 max|x|``).
        """
        t = torch.as_tensor(x).detach().to(torch.float32).contiguous()
        flat = t.reshape(-1).numpy()
        a = np.abs(flat)
        fin = a[np.isfinite(a)]
        nz = fin[fin > 0]
        if nz.size:
            top = math.floor(math.log2(float(nz.max()))) + 1
            bottom = math.floor(math.log2(float(nz.min())))
        else:
            top, bottom = 1, -1
        bottom = max(bottom, top - 80)
        nbins = (top - bottom) * BINS_PER_BINADE
        bins, counts = log2_bins(flat, float(bottom), float(top), nbins)
        edges = bottom + np.arange(nbins + 1, dtype=np.float64) / BINS_PER_BINADE
        return cls(
            x=t, key=key, label=label or key, edges=edges, counts=counts, bins=bins,
            amax=float(fin.max()) if fin.size else 0.0, zeros=int((fin == 0).sum()),
        )

    @classmethod
    def synthetic(
        cls, distribution: str = "normal", scale: float = 1.0, numel: int = 2**20,
        seed: int = 0, binades: float = 16.0,
    ) -> "DataSummary":
        """:func:`make_tensor` plus binning, keyed by its arguments."""
        x = make_tensor(distribution, scale, numel, seed, binades)
        key = f"syn:{distribution}:{scale!r}:{numel}:{seed}:{binades!r}"
        extra = f", {binades:g} binades" if distribution == "log-uniform" else ""
        label = f"{distribution}(scale={scale:g}{extra}), {numel:,} elements {tuple(x.shape)}"
        return cls.from_tensor(x, key, label)


@dataclass(frozen=True)
class FormatResult:
    """What the Format Lab shows for one format on one tensor.

    Attributes:
        spec: canonical spec string.
        bits: storage bits per element.
        scaled: whether the format carries data-dependent scales.
        metrics: ``are``, ``rel_error``, ``sqnr_db``, ``saturation``, ``overflow``, ``underflow`` (as in
            core.metrics).
        codebook: positive codebook values (element units for scaled formats); empty when the
            format has too many codes to enumerate (fp32, fp64).
        codes: positive code values in data units at the scale of the largest element.
        err_mean: mean relative error per ``log2|x|`` bin of the data (NaN where empty).
        seconds: time taken by quantization and reduction.
        error: message when the format could not be applied (metrics are NaN then).
    """

    spec: str
    bits: int
    scaled: bool
    metrics: dict[str, float]
    codebook: np.ndarray
    codes: np.ndarray
    err_mean: np.ndarray
    seconds: float
    error: str | None = None


def _nan_metrics() -> dict[str, float]:
    return {k: math.nan for k in METRIC_LABELS}


def analyze(data: DataSummary, fmt: FormatSpec | str, rounding: str = "nearest", seed: int = 0) -> FormatResult:
    """Quantize ``data.x`` into ``fmt`` and reduce it to a :class:`FormatResult`.

    Args:
        data: the binned tensor.
        fmt: spec or spec string.
        rounding: a rounding mode of :data:`core.ROUNDING_MODES`.
        seed: seed for stochastic rounding.

    Returns:
        The result; a rounding mode the format does not support gives ``error`` and NaN metrics
        instead of raising (the page shows the message).

    Raises:
        ValueError: ``fmt`` does not parse.
    """
    spec = core.parse_format(fmt)
    t0 = time.perf_counter()
    try:
        cb = core.codebook(spec).numpy()
        cb = cb[cb > 0]
    except ValueError:  # too many codes to enumerate (fp32, fp64): no codebook plot
        cb = np.zeros(0)
    nb = len(data.counts)
    try:
        y = core.quantize(data.x, spec, rounding=rounding, seed=seed)
    except ValueError as exc:
        return FormatResult(str(spec), spec.bits, spec.scaled, _nan_metrics(), cb, cb.copy(),
                            np.full(nb, np.nan), time.perf_counter() - t0, str(exc))
    xf = data.flat
    yf = y.detach().reshape(-1).numpy()
    if spec.scaled:
        big_t, small_t = spec.range_for(data.x)
        big = big_t.reshape(-1).numpy()
        small = small_t.reshape(-1).numpy()
    else:
        big = np.array([spec.max], dtype=np.float64)
        small = np.array([spec.smallest_subnormal], dtype=np.float64)
    sums, bsum, bcnt = error_sums(xf, yf, data.bins, nb, chunked=True)
    metrics = error_metrics_from_sums(sums)
    metrics["saturation"], metrics["overflow"], metrics["underflow"] = range_fractions_sat(
        xf, big, small, core.metrics.headroom(spec))
    with np.errstate(invalid="ignore", divide="ignore"):
        err_mean = np.where(bcnt > 0, bsum / np.maximum(bcnt, 1), np.nan)
    if spec.scaled and xf.size:
        i = int(np.argmax(np.where(np.isfinite(xf), np.abs(xf), -1.0)))
        s_top = float(big[i if big.size > 1 else 0]) / spec.max if spec.max else 1.0
    else:
        s_top = 1.0
    return FormatResult(str(spec), spec.bits, spec.scaled, metrics, cb, cb * s_top, err_mean,
                        time.perf_counter() - t0)


@dataclass
class ResultCache:
    """A small thread-safe LRU cache of :class:`FormatResult` by (data, spec, rounding, seed)."""

    size: int = 32
    _items: "OrderedDict[tuple, FormatResult]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, data: DataSummary, fmt: FormatSpec | str, rounding: str, seed: int) -> FormatResult:
        """The cached result, computing it with :func:`analyze` on a miss."""
        key = (data.key, str(core.parse_format(fmt)), rounding, seed)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        res = analyze(data, fmt, rounding, seed)
        with self._lock:
            self._items[key] = res
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return res
