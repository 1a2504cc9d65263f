"""MLS multi-level-scaling format (MLS paper, section 3, Alg. 1; docs/papers.md#mls-format).

``X = sign * St * Sg[group] * x``:

* ``St = max|X|`` (one fp32 scale per tensor);
* ``Sg`` in ``<Eg,Mg>``: the smallest member of
  ``G = {(1 + k/2^Mg) 2^e : e in [1-2^Eg, 0], k in 0..2^Mg-1} ∩ (0, 1]``
  that is ``>= groupmax/St`` (the paper's Ceil), so no element overflows
  (docs/papers.md#mls-group-scale);
* ``x = |X| / (St*Sg)`` rounded onto the unsigned ``<Ex,Mx>`` element grid
  (largest exponent -1, subnormals, no inf/NaN; ``Ex = 0`` is fixed point
  ``k/2^Mx``), saturating at the top code.  Rounding carries into the next
  binade (Alg. 1's mantissa clip is read as a bias of the pseudo-code, not
  of the format: docs/papers.md#mls-rounding).

Special values: NaN stays NaN; +-inf saturates to the largest code of its group (the group max
is over finite values); a group holding +-inf and no finite non-zero value takes ``Sg = 1``, so
+-inf -> +-St * max for every grouping and dtype (:meth:`MLSFormat.inf_only_groups`).

Grouping: ``none`` (one group), ``n`` (per index of dim 0), ``c`` (per index
of dim 1), ``nc`` (per (dim0, dim1) pair).  Weights: Cout/Cin; activations
and errors: N/C.  On a 2-d tensor (a Linear layer's W, A and E) ``nc`` makes
every element its own group: wherever the group scale reaches
(``|X|/St >= 2^(1-2^Eg)``: every float32 element with ``Eg = 8``, the default)
``|X|/(St*Sg)`` lies in ``(1/2, 1]``, the top binade of the element grid, so
every ``Ex >= 1`` gives the same codes and only ``Mx``, ``Eg`` and ``Mg``
matter (``Ex = 0``, fixed point, differs).  Arithmetic: ``St*Sg`` is formed in float64 (exact), the
division ``|X|/(St*Sg)`` is one correctly rounded float64 division, and the
dequantized value ``St*Sg*x'`` is rounded once to the output dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .base import check_input, check_rounding
from .dispatch import MODE_CODES, group_absmax
from .grid import ElementGrid, kernel_seed, resolve_seed
from .registry import check_choice, check_range, register_family
from .scaled import BlockView, ScaledFormat, group_view, ldexp1, pow2_floor_log2

__all__ = ["MLSFormat", "group_scale_ceil", "group_scale_set"]

GROUPINGS = ("none", "n", "c", "nc")


def group_scale_set(eg: int, mg: int) -> torch.Tensor:
    """All members of G (sorted float64): ``(1 + k/2^Mg) 2^e <= 1``."""
    vals = sorted(
        {
            math.ldexp(2**mg + k, e - mg)
            for e in range(1 - 2**eg, 1)
            for k in range(2**mg)
            if math.ldexp(2**mg + k, e - mg) <= 1.0
        }
    )
    return torch.tensor(vals, dtype=torch.float64)


def group_scale_ceil(sgf: torch.Tensor, eg: int, mg: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smallest member of G that is >= ``sgf`` (float64 >= 0), as (value, e, k).

    Values below the smallest member (including 0) take the smallest member;
    values above 1 (impossible for ratios group max / tensor max) take 1.
    """
    emin = 1 - 2**eg
    pos = sgf > 0
    safe = torch.where(pos, sgf, torch.ones_like(sgf))
    e = pow2_floor_log2(safe)
    frac = torch.ldexp(safe, (-e).to(torch.float64))  # in [1, 2)
    k = torch.ceil((frac - 1.0) * 2.0**mg).to(torch.int64)
    carry = k >= 2**mg
    e = torch.where(carry, e + 1, e)
    k = torch.where(carry, torch.zeros_like(k), k)
    small = (~pos) | (e < emin)
    e = torch.where(small, torch.full_like(e, emin), e)
    k = torch.where(small, torch.zeros_like(k), k)
    big = e >= 0
    e = torch.where(big, torch.zeros_like(e), e)
    k = torch.where(big, torch.zeros_like(k), k)
    value = (1.0 + k.to(torch.float64) / 2.0**mg) * ldexp1(e)
    return value, e, k


@lru_cache(maxsize=None)
def _element_grid(ex: int, mx: int) -> ElementGrid:
    """The unsigned ``<Ex,Mx>`` element grid (largest exponent -1; ``Ex = 0``: fixed point ``k/2^Mx``)."""
    if ex == 0:
        return ElementGrid(mx, 0, True, 1.0 - 2.0**-mx)
    return ElementGrid(mx, 1 - 2**ex, True, (2.0 - 2.0**-mx) * 0.5)


@lru_cache(maxsize=None)
def _kernels() -> Any:
    """The fused Numba kernels, imported on first use (``import core`` does not load Numba code)."""
    from ..kernels import mls_fused

    return mls_fused


#: outputs at least this large are NumPy allocations (huge pages for big buffers: fewer page faults
#: on first touch than torch's allocator); smaller ones come from torch (cheaper to create)
_NUMPY_OUTPUT_FROM = 1 << 16


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _output_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialized contiguous CPU tensor with ``x``'s shape and (float32/float64) dtype."""
    if x.numel() >= _NUMPY_OUTPUT_FROM:
        return torch.from_numpy(np.empty(tuple(x.shape), dtype=_NUMPY_DTYPES[x.dtype]))
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@lru_cache(maxsize=None)
def _one_element_kernels() -> Any:
    """The one-element-group kernels (``nc`` on 2-d tensors), imported on first use."""
    from ..kernels import mls_one_element

    return mls_one_element


@register_family
@dataclass(frozen=True)
class MLSFormat(ScaledFormat):
    """MLS tensor format ``<Ex,Mx>`` elements, ``<Eg,Mg>`` group scales, fp32 tensor scale.

    Args:
        ex: element exponent bits (0..5; 0 means fixed point ``k/2^Mx``).
        mx: element mantissa bits (0..10; at least 1 when ex = 0).
        eg: group-scale exponent bits (0..8).
        mg: group-scale mantissa bits (0..4; the paper uses 0 or 1).
        group: grouping dimension ``none`` | ``n`` | ``c`` | ``nc``.
    """

    family = "mls"
    element_code_kind = "minifloat"

    ex: int = field(default=2, metadata={"range": (0, 5), "doc": "element exponent bits Ex"})
    mx: int = field(default=1, metadata={"range": (0, 10), "doc": "element mantissa bits Mx"})
    eg: int = field(default=8, metadata={"range": (0, 8), "doc": "group scale exponent bits Eg"})
    mg: int = field(default=1, metadata={"range": (0, 4), "doc": "group scale mantissa bits Mg"})
    group: str = field(default="nc", metadata={"choices": GROUPINGS,
                                               "doc": "grouping dimension (nc on a 2-d tensor: one group per element, "
                                                      "so with Eg = 8 every Ex >= 1 quantizes alike)"})

    def __post_init__(self) -> None:
        for f in fields(self):  # the ranges and choices are declared once, in the field metadata
            if "range" in f.metadata:
                check_range("mls", f.name, getattr(self, f.name), *f.metadata["range"])
            elif "choices" in f.metadata:
                check_choice("mls", f.name, getattr(self, f.name), f.metadata["choices"])
        if self.ex == 0 and self.mx == 0:
            raise ValueError("mls: ex=0 needs mx >= 1 (fixed point k/2^Mx)")

    @property
    def bits(self) -> int:
        """Element storage bits ``1 + Ex + Mx``."""
        return 1 + self.ex + self.mx

    @property
    def element_grid(self) -> ElementGrid:
        return _element_grid(self.ex, self.mx)

    @property
    def group_bits(self) -> int:
        return self.eg + self.mg

    def view(self, x: torch.Tensor) -> BlockView:
        return group_view(x)

    def _reduce(self, g: torch.Tensor, how: str = "max") -> torch.Tensor:
        """A (d0, d1) per-cell tensor reduced over each cell's group and expanded back."""
        red = (lambda t, **kw: t.amax(**kw)) if how == "max" else (lambda t, **kw: t.any(**kw))
        if self.group == "n":
            return red(g, dim=1, keepdim=True).expand_as(g)
        if self.group == "c":
            return red(g, dim=0, keepdim=True).expand_as(g)
        if self.group == "none":
            return red(g.reshape(-1), dim=0, keepdim=True).reshape(1, 1).expand_as(g)
        return g

    def inf_only_groups(self, x3: torch.Tensor, gmax: torch.Tensor) -> torch.Tensor | None:
        """(d0, d1) mask of the cells whose group holds +-inf and no finite non-zero value (None if
        none).  Those groups take the largest group scale ``Sg = 1``, so +-inf saturates to
        ``+-St * max`` (the largest code of the tensor) for every grouping and dtype: the group
        max ignores inf, and ``Ceil_G(0)`` would give ``min(G)``, so +-inf became ``St min(G) max``,
        0 in float32 (``nc`` on 2-d tensors, ``c``)."""
        if gmax.numel() == 0:
            return None
        g = gmax.to(x3.device)
        cand = self._reduce(g) == 0
        if not bool(cand.any()):
            return None
        rows = cand.reshape(-1).nonzero().squeeze(1)
        flat = x3.reshape(g.numel(), -1)
        has = torch.zeros(g.numel(), dtype=torch.bool, device=x3.device)
        has[rows] = torch.isinf(flat[rows]).any(dim=-1) if flat.shape[1] else False
        mask = cand & self._reduce(has.reshape(g.shape), "any")
        return mask if bool(mask.any()) else None

    def _with_inf_groups(self, x3: torch.Tensor, gmax: torch.Tensor, s2: torch.Tensor, named: dict):
        mask = self.inf_only_groups(x3, gmax)
        if mask is None:
            return s2, named
        mask = mask.to(s2.device)
        st = gmax.to(device=s2.device, dtype=torch.float64).max()  # St = max|X| in float64 (named: float32)
        named = dict(named)
        named["group"] = torch.where(mask, torch.ones_like(named["group"]), named["group"])
        named["group_exp"] = torch.where(mask, torch.zeros_like(named["group_exp"]), named["group_exp"])
        named["group_mant"] = torch.where(mask, torch.zeros_like(named["group_mant"]), named["group_mant"])
        return torch.where(mask, st.expand_as(s2), s2), named

    def scales(self, x3: torch.Tensor, backend: str = "auto"):
        """(St*Sg per (dim0, dim1), {"tensor": St, "group": Sg, "group_exp", "group_mant"})."""
        if backend in ("auto", "numba") and x3.device.type == "cpu" and x3.shape[0] * x3.shape[1] > 0:
            gmax = group_absmax(x3, backend)
            return self._with_inf_groups(x3, gmax, *self._scales_numba(gmax))
        s2, named, gmax0 = self._scales_reference(x3, backend)
        return self._with_inf_groups(x3, gmax0, s2, named)

    def _scales_reference(self, x3: torch.Tensor, backend: str):
        gmax = group_absmax(x3, backend).to(x3.device)  # (d0, d1), float64, exact
        gmax0 = gmax
        if gmax.numel() and self.group == "n":
            gmax = gmax.amax(dim=1, keepdim=True).expand_as(gmax)
        elif gmax.numel() and self.group == "c":
            gmax = gmax.amax(dim=0, keepdim=True).expand_as(gmax)
        st = gmax.max() if gmax.numel() else torch.zeros((), dtype=torch.float64)
        if self.group == "none":
            gmax = st.expand_as(gmax)
        sgf = gmax / st if float(st) > 0 else torch.zeros_like(gmax)
        sg, e, k = group_scale_ceil(sgf, self.eg, self.mg)
        s2 = st * sg
        named = {
            "tensor": st.to(torch.float32),
            "group": sg,
            "group_exp": e,
            "group_mant": k,
        }
        return s2, named, gmax0

    def _scale_arrays(self, gmax: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """``(St*Sg, Sg, its exponent, its mantissa, St)`` of a (d0, d1) float64 group-max array,
        through the :func:`~core.kernels.mls_fused.mls_scales` kernel."""
        k = _kernels()
        g = np.ascontiguousarray(gmax, dtype=np.float64)
        s2 = np.empty(g.shape, dtype=np.float64)
        sg = np.empty_like(s2)
        ge = np.empty(g.shape, dtype=np.int64)
        gk = np.empty_like(ge)
        st = k.mls_scales(g, k.GROUP_CODES[self.group], self.eg, self.mg, s2, sg, ge, gk)
        return s2, sg, ge, gk, st

    def _scales_numba(self, gmax: torch.Tensor):
        """:meth:`scales` through the Numba kernels (same values as the torch reference)."""
        s2, sg, ge, gk, st = self._scale_arrays(gmax.numpy())
        named = {"tensor": torch.tensor(st, dtype=torch.float32), "group": torch.from_numpy(sg),
                 "group_exp": torch.from_numpy(ge), "group_mant": torch.from_numpy(gk)}
        return torch.from_numpy(s2), named

    def quantize(self, x, rounding="nearest", seed=None, backend="auto"):
        """Fake-quantize ``x`` (Alg. 1).  Float32/float64 CPU tensors take the fused Numba path
        (group max, scales and rounding in kernel calls, no torch temporaries);
        everything else the generic scaled-format path.  Both give the same bits (tested)."""
        check_input(x)
        check_rounding(self, rounding)
        g = self.element_grid
        if (
            backend in ("auto", "numba")
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.numel() > 0
            and g.emin - g.m >= -1000
        ):
            return self._fused_cpu(x, rounding, seed)
        return super().quantize(x, rounding, seed, backend)

    def quantizer(self, rounding: str = "nearest"):
        """``f(x, seed)`` == :meth:`quantize`; with ``nc`` grouping, float32 CPU tensors of at most two
        dimensions (every element its own group) go straight to the one-element kernel, the
        path and constants fixed here once (the training loop's W/A/E of Linear layers)."""
        check_rounding(self, rounding)
        if self.group != "nc" or rounding not in ("nearest", "stochastic") or self.element_grid.emin - \
                self.element_grid.m < -1000:
            return super().quantizer(rounding)
        k = _one_element_kernels()
        g = self.element_grid
        eg, mg, m, emin, sub, maxval, mode = self.eg, self.mg, g.m, g.emin, g.subnormals, g.maxval, MODE_CODES[rounding]
        pq = k.ratio_constants(m, emin, sub, maxval, mg, mode)
        small = k.SERIAL_BELOW if pq is not None else 0  # sizes for the one-call serial ratio kernel
        P, Q = pq if pq is not None else (0.0, 0.0)
        serial_at, general = k.ratio_serial_at, k.quantize_one_element_groups
        stochastic = rounding == "stochastic"
        spec = self

        def quantize_one_element(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
            if x.dtype is torch.float32 and x.dim() <= 2 and x.is_contiguous() and x.is_cpu:
                if not stochastic:
                    seed = 0
                elif type(seed) is not int or not 0 <= seed < 2**63:
                    seed = kernel_seed(resolve_seed(seed))
                n = x.numel()
                if n < small:  # by address: contiguous float32 CPU tensors, alive for the call
                    y = torch.empty_like(x, memory_format=torch.contiguous_format)
                    serial_at(x.data_ptr(), y.data_ptr(), n, eg, mg, m, emin, maxval, mode, seed, P, Q)
                    return y
                y = _output_like(x)
                general(x.detach().numpy().ravel(), y.numpy().ravel(), eg, mg, m, emin, sub, maxval, mode, seed)
                return y
            return spec.quantize(x, rounding, seed)

        return quantize_one_element

    def _fused_cpu(self, x: torch.Tensor, rounding: str, seed: int | None) -> torch.Tensor:
        xc = x.detach()
        if not xc.is_contiguous():
            xc = xc.contiguous()
        y = _output_like(xc)  # written by the kernels through its numpy view
        flat = xc.numpy().reshape(-1)
        out = y.numpy().reshape(-1)
        d0 = x.shape[0] if x.dim() >= 1 else 1
        d1 = x.shape[1] if x.dim() >= 2 else 1
        g = self.element_grid
        seed_ = kernel_seed(resolve_seed(seed)) if rounding == "stochastic" else 0
        if self.group == "nc" and flat.size == d0 * d1 and rounding != "truncate":
            _one_element_kernels().quantize_one_element_groups(flat, out, self.eg, self.mg, g.m, g.emin,
                                                               g.subnormals, g.maxval, MODE_CODES[rounding], seed_)
            return y
        k = _kernels()
        gmax = k.group_absmax_rows(flat, d0 * d1).reshape(d0, d1)
        s2, st = (lambda a: (a[0], a[4]))(self._scale_arrays(gmax))
        mask = self.inf_only_groups(torch.from_numpy(flat).reshape(d0, d1, -1), torch.from_numpy(gmax))
        if mask is not None:  # groups of only +-inf (and zeros, NaN): Sg = 1
            s2 = np.where(mask.numpy(), st, s2)
        k.round_rows_sat(flat, s2.reshape(-1), out, g.m, g.emin, g.subnormals, g.maxval, MODE_CODES[rounding], seed_)
        return y

    def storage_bits(self, q) -> int:
        groups = {"none": 1, "n": q.scales["group"].shape[0], "c": q.scales["group"].shape[1],
                  "nc": q.scales["group"].numel()}[self.group]
        return q.codes.numel() * self.bits + groups * self.group_bits + 32
