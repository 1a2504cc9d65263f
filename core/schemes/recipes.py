"""Low-precision training recipes as schemes: ``fp8`` (TransformerEngine-style FP8 with delayed or
current scaling), ``mxfp8`` (OCP MX 32-element E8M0 blocks) and ``nvfp4`` (NVIDIA's NVFP4 recipe).

Sources (docs/schemes.md#training-recipes):

* ``fp8``: TransformerEngine ``DelayedScaling`` / ``Float8CurrentScaling`` recipes: ``fp8_format``
  HYBRID (E4M3 for W and A, E5M2 for the gradient E) or E4M3 everywhere; delayed scaling takes the scale
  from the amax history of previous steps of the same (layer, tensor), ``amax_compute_algo`` ``max`` (of
  the history) or ``most_recent``, ``scale = fp8_max / amax / 2**margin`` (here its inverse
  ``s = amax 2**margin / fp8_max``, the convention of :func:`core.formats.scaled_tensor.scale_from_amax`),
  then the step's amax is recorded; values beyond ``fp8_max * s`` saturate (and are counted).
* ``mxfp8``: OCP Microscaling spec v1.0, section 5 (32-element blocks, E8M0 scale), NVIDIA's MXFP8
  recipe (TransformerEngine ``MXFP8BlockScaling``: E4M3 for the forward and the backward by default;
  ``format=hybrid`` takes E5M2 for the gradients) with 1-D blocks along each GEMM's reduction axis (a
  conv's weight on its GEMM view, its activations and gradients along the channels).
* ``nvfp4``: "Pretraining LLMs with NVFP4" (arXiv 2509.25149), section 4: 16x16 2-D block scales for
  weights, 1x16 blocks for activations and gradients (FP32 tensor scale + UE4M3 block scale), stochastic
  rounding of gradients, a 16-point random Hadamard transform on both operands of the weight-gradient
  GEMM, first/last layers in high precision.

Hooks used (core/train): a TensorQuant with ``bind(layer, kind)`` keeps state on the layer (the delayed
amax history, as registered buffers: saved in the model's ``state_dict``, so a checkpoint resumes it);
a QuantConfig's ``wgrad_transform`` builds the operands of ``G = E^T A``; its ``telemetry_rows`` adds the
scale telemetry and the shadow recipe's errors at telemetry steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from core.formats.hadamard import RandomHadamard
from core.formats.mx import MXFormat
from core.formats.scaled_tensor import (NVFP4Format, ScaledTensorFormat, quantize_with_scale, scale_from_amax,
                                        tile_layout, tile_scale_reference)
from core.train import MetricRow, QuantConfig, Scheme, TensorQuant, get_scheme, register_scheme
from core.train.schemes import field_doc
from core.train.qlayers import TENSORS, tensor_seed
from core.train.telemetry import quant_metrics

__all__ = ["FP8Scheme", "MXFP8Scheme", "NVFP4Scheme", "RecipeConfig", "DelayedScaleQuant", "NVFP4Weight2D",
           "ReductionAxisQuant", "gemm_operand_fn", "WgradOperands", "group_amax", "scale_report", "along_dim0",
           "RECIPES"]

#: recipe scheme names (the choices of every recipe's ``shadow_recipe``)
RECIPES = ("fp8", "mxfp8", "nvfp4")
_SHADOW_CHOICES = ("none",) + RECIPES
_FORMATS = ("hybrid", "e4m3")
_E4M3_TINY = 2.0**-6  # UE4M3 scale clamp (torchao E4M3_EPS), see core/formats/scaled_tensor.py
_E4M3_MAX = 448.0


def _elems(fmt: str) -> tuple[str, str]:
    """(element of W and A, element of E) for an FP8 ``format`` (TE ``Format.HYBRID`` / ``E4M3``)."""
    return ("fp8_e4m3", "fp8_e5m2") if fmt == "hybrid" else ("fp8_e4m3", "fp8_e4m3")


def _finite_amax(x: torch.Tensor) -> torch.Tensor:
    """max |x| over the finite values (float64 scalar; 0 when there is none)."""
    a = x.detach().abs().to(torch.float64)
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    return a.max() if a.numel() else torch.zeros((), dtype=torch.float64)


def along_dim0(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` applied with dim 0 as the last axis (blocks of a last-axis format or transform then run
    along dim 0: the batch, the reduction axis of the weight-gradient GEMM)."""
    return fn(x.movedim(0, -1).contiguous()).movedim(-1, 0).contiguous()


# --------------------------------------------------------------------------- delayed scaling
@dataclass(frozen=True)
class DelayedScaleQuant(TensorQuant):
    """Per-tensor FP8 with a scale from the amax history (TransformerEngine ``DelayedScaling``).

    ``fmt`` is the per-tensor ``scaled(elem=...,block=tensor,scale=fp32)`` spec; called unbound (no layer:
    a shadow recipe, a re-quantization) it is that spec, i.e. current scaling. Bound to a layer
    (:meth:`bind`), each call uses ``amax_used = max(history)`` (``max``) or ``history[0]``
    (``most_recent``) of the previous training steps, or the tensor's own amax when the history is empty,
    scales with ``s = scale_from_amax(amax_used * 2**margin)``, saturates ``|x| > fp8_max * s`` (counted) and
    quantizes with :func:`quantize_with_scale`; in training mode it then records the step's amax (history
    newest first, ``history_len`` long). Eval forwards use the history without recording.
    """

    history_len: int = 1024
    algo: str = "max"
    margin: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = self.spec
        if not isinstance(spec, ScaledTensorFormat) or spec.block != "tensor":
            raise ValueError(f"delayed scaling needs a per-tensor scaled spec, got {spec}")
        if isinstance(self.history_len, bool) or not isinstance(self.history_len, int) or self.history_len < 1:
            raise ValueError(f"amax_history_len must be an int >= 1, got {self.history_len!r}")
        if self.algo not in ("max", "most_recent"):
            raise ValueError(f"amax_compute_algo must be 'max' or 'most_recent', got {self.algo!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, int):
            raise ValueError(f"margin must be an int, got {self.margin!r}")

    @property
    def elem(self) -> str:
        return str(self.spec.elem)

    @staticmethod
    def buffer_names(kind: str) -> tuple[str, str, str]:
        """(history, count, last) buffer names of tensor ``kind`` on a layer."""
        return f"fp8_history_{kind}", f"fp8_count_{kind}", f"fp8_last_{kind}"

    def bind(self, layer: nn.Module, kind: str) -> Callable[..., torch.Tensor]:
        """Make sure ``layer`` holds this kind's state buffers (resizing the history to ``history_len``,
        newest entries kept) and return the stateful quantizer ``fn(x, seed=None)``."""
        hname, cname, lname = self.buffer_names(kind)
        dev = next(layer.parameters()).device
        old = getattr(layer, hname, None)
        if not isinstance(old, torch.Tensor):
            layer.register_buffer(hname, torch.zeros(self.history_len, dtype=torch.float64, device=dev))
            layer.register_buffer(cname, torch.zeros((), dtype=torch.int64, device=dev))
            # [amax used, scale, this step's amax, saturated elements, elements] of the last training call
            layer.register_buffer(lname, torch.full((5,), math.nan, dtype=torch.float64, device=dev))
        elif old.numel() != self.history_len:
            new = torch.zeros(self.history_len, dtype=torch.float64, device=old.device)
            k = min(old.numel(), self.history_len)
            new[:k] = old[:k]
            setattr(layer, hname, new)
        return functools.partial(self.delayed, layer, kind)

    def amax_used(self, history: torch.Tensor, count: int, amax_now: torch.Tensor) -> torch.Tensor:
        """The amax the scale is taken from (a scalar)."""
        n = min(int(count), history.numel())
        if n == 0:
            return amax_now
        return history[:n].max() if self.algo == "max" else history[0]

    def delayed(self, layer: nn.Module, kind: str, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Quantize ``x`` as tensor ``kind`` of ``layer`` with the delayed scale (class docstring).

        As TransformerEngine's ``_default_sf_compute`` (``sf = where(amax > 0, sf, scale)``,
        ``sf = where(isfinite(amax), sf, scale)``), an amax used of 0 or a non-finite one keeps the previous
        training call's scale (``fp8_last_<kind>[1]``; 1 before the first, TE's initial scale), and a step
        whose own amax is not finite (``x`` holds inf or NaN) is not recorded in the history. Finite values
        beyond ``fp8_max * s`` saturate; +-inf and NaN follow the element format's own rule
        (:func:`quantize_with_scale`: E5M2 keeps +-inf, the saturating E4M3 maps +-inf to +-448 s)."""
        hname, cname, lname = self.buffer_names(kind)
        hist: torch.Tensor = getattr(layer, hname)
        count: torch.Tensor = getattr(layer, cname)
        last: torch.Tensor = getattr(layer, lname)
        # max |x| is exact in x's own dtype (no float64 copy); inf/NaN make it non-finite
        amax_now = x.detach().abs().max().to(torch.float64) if x.numel() else torch.zeros((), dtype=torch.float64)
        now = float(amax_now)
        used = float(self.amax_used(hist, int(count), amax_now))  # a number: history[0] changes below
        if used > 0 and math.isfinite(used):
            sv = float(scale_from_amax(used * 2.0**self.margin, self.elem, "fp32"))
        else:  # keep the last scale (TE), 1.0 before any
            prev = float(last[1])
            sv = prev if math.isfinite(prev) and prev > 0 else 1.0
        y = quantize_with_scale(x, self.elem, sv, self.rounding, seed)
        if layer.training:
            with torch.no_grad():
                if math.isfinite(now):
                    hist.copy_(torch.roll(hist, 1))
                    hist[0] = now
                    count.add_(1)
                vals = torch.tensor([used, sv, now, 0.0, x.numel()], dtype=torch.float64, device=last.device)
                vals[3] = (x.detach().abs() > self.spec.max * sv).sum()  # saturated (inf included), no sync
                last.copy_(vals)
        return y


# --------------------------------------------------------------------------- blocks along the GEMM reduction axis
@dataclass(frozen=True)
class ReductionAxisQuant(TensorQuant):
    """A 1-D-block format (``mx(...,block=32)``, ``nvfp4``) whose blocks run along the GEMM reduction axis
    of the layer it is bound to (OCP MX v1.0, section 5: blocks along the dot products' reduction
    dimension; NVFP4 paper, section 4: 1x16 blocks along the GEMM's inner dimension; TransformerEngine's
    MXFP8 quantizes rowwise along K). Called unbound it is the spec itself (blocks along the last axis:
    right for Linear operands and for :func:`along_dim0`). Bound (:meth:`bind`) to a Conv2d it quantizes
    the weight on its GEMM view ``W.reshape(Cout, -1)`` (blocks along ``Cin*kh*kw``) and the activation A
    and gradient E (NCHW) with blocks along the channel axis (NHWC, the implicit-GEMM reduction axis of
    the forward and the input-gradient GEMM)."""

    def bind(self, layer: nn.Module, kind: str) -> Callable[..., torch.Tensor]:
        """The quantizer ``fn(x, seed=None)`` of tensor ``kind`` of ``layer``."""
        return gemm_operand_fn(self, layer, kind)


def gemm_operand_fn(tq: Callable[..., torch.Tensor], layer: nn.Module, kind: str) -> Callable[..., torch.Tensor]:
    """``tq`` (blocks along the last axis) applied to the GEMM-reduction view of tensor ``kind`` of
    ``layer`` (:class:`ReductionAxisQuant`); ``tq`` itself for a Linear layer."""
    if not isinstance(layer, nn.Conv2d):
        return tq

    def fn(x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return _from_gemm_view(tq(_to_gemm_view(x, kind), seed), kind, x.shape)
    return fn


def _to_gemm_view(x: torch.Tensor, kind: str) -> torch.Tensor:
    """A Conv2d tensor with its GEMM reduction axis last: W as ``(Cout, Cin*kh*kw)``, A/E NCHW -> NHWC."""
    if kind == "w":
        return _gemm_view(x)
    return x.permute(0, 2, 3, 1).contiguous() if x.dim() == 4 else x


def _from_gemm_view(y: torch.Tensor, kind: str, shape: torch.Size) -> torch.Tensor:
    if kind == "w":
        return y.reshape(shape)
    return y.permute(0, 3, 1, 2).contiguous() if len(shape) == 4 else y


# --------------------------------------------------------------------------- NVFP4 2-D weights
@dataclass(frozen=True)
class NVFP4Weight2D(TensorQuant):
    """NVFP4 weights with 16x16 block scales (NVFP4 paper, section 4.2: "2D block scaling" so W and W^T
    quantize alike): FP4 E2M1 elements, one UE4M3 scale per 16x16 tile of the GEMM view
    ``W.reshape(out, -1)`` and the FP32 tensor scale ``St = amax / (448 * 6)``: the rules of
    :class:`~core.formats.scaled_tensor.NVFP4Format` (``tile_scale_reference``, ``_tensor_scale``) on 2-D
    tiles, elements by :func:`quantize_with_scale`. ``fmt`` (the single-level
    ``scaled(elem=fp4_e2m1,block=16x16,scale=e4m3)``) names it in telemetry."""

    fmt: str = "scaled(elem=fp4_e2m1,block=16x16,scale=e4m3)"

    def scales(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(per-element scale of the 2-D view, float64 with NaN for tiles holding inf/NaN; St)."""
        w2 = _gemm_view(x)
        amax = group_amax(w2, "16x16")
        st = NVFP4Format(tensor_scale=True)._tensor_scale(float(_finite_amax(w2)))
        s = tile_scale_reference(amax, "e4m3", 6.0, st)[0]
        se = s.repeat_interleave(16, 0).repeat_interleave(16, 1)[:w2.shape[0], :w2.shape[1]]
        return se, st

    def __call__(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        w2 = _gemm_view(x)
        se, _ = self.scales(x)
        bad = torch.isnan(se)
        y = quantize_with_scale(w2, "fp4_e2m1", torch.where(bad, torch.ones_like(se), se), self.rounding, seed)
        return torch.where(bad, torch.full_like(y, math.nan), y).reshape(x.shape)


def _gemm_view(x: torch.Tensor) -> torch.Tensor:
    """A weight as its GEMM matrix: (out, in) for Linear, (Cout, Cin*kh*kw) for Conv2d."""
    return x.reshape(x.shape[0], -1) if x.dim() != 1 else x.reshape(1, -1)


# --------------------------------------------------------------------------- scale telemetry
def group_amax(x: torch.Tensor, block: str, axis: int = -1) -> torch.Tensor:
    """max |x| of every group of granularity ``block`` (the grouping of
    :func:`core.formats.scaled_tensor.tile_layout`), float64 ``(P, ceil(H/tr), ceil(W/tc))``; a group
    holding inf/NaN has amax ``inf``."""
    P, H, W, tr, tc = tile_layout(tuple(x.shape), block, axis)
    v = x.detach().to(torch.float64).abs().reshape(P, H, W)
    v = torch.where(torch.isfinite(v), v, torch.full_like(v, math.inf))
    nh, nw = -(-H // tr), -(-W // tc)
    v = torch.nn.functional.pad(v, (0, nw * tc - W, 0, nh * tr - H))
    return v.reshape(P, nh, tr, nw, tc).amax(dim=(2, 4))


def _pow2_report(amax: torch.Tensor, e: torch.Tensor, lo: int, hi: int) -> dict[str, float]:
    ok = torch.isfinite(amax) & (amax > 0)
    return _report(torch.ldexp(torch.ones_like(amax), e.clamp(lo, hi).to(torch.float64)), ok,
                   ok & (e > hi), ok & (e < lo))


def _report(s: torch.Tensor, ok: torch.Tensor, sat: torch.Tensor, under: torch.Tensor) -> dict[str, float]:
    """Rows from the group scales ``s``: log2 min/median/max over the groups ``ok`` (finite, non-zero
    amax), and the fractions of all groups whose scale saturates / underflows."""
    n = s.numel()
    l2 = torch.log2(s[ok]) if bool(ok.any()) else torch.full((1,), math.nan, dtype=torch.float64)
    return {"scale_log2_min": float(l2.min()), "scale_log2_median": float(l2.median()),
            "scale_log2_max": float(l2.max()), "scale_sat_fraction": float(sat.sum()) / max(n, 1),
            "scale_underflow_fraction": float(under.sum()) / max(n, 1), "scale_blocks": float(n)}


def scale_report(x: torch.Tensor, tq: TensorQuant) -> dict[str, float] | None:
    """Scale telemetry of ``x`` quantized by ``tq`` (None for a format without data-dependent scales).

    A group's scale saturates when the scale its amax asks for exceeds the scale format's largest, so the
    format clamps it (UE4M3 block scales: ``fp32(fp32(amax / M) / St) > 448``, in units of the tensor scale
    ``St``; an E8M0 exponent above 127), underflows when it is below the smallest (``2^-6`` for UE4M3, an
    exponent below -127); all-zero and non-finite groups count in the denominator only. The log2 scale
    statistics are over the groups with a finite non-zero amax."""
    if isinstance(tq, NVFP4Weight2D):
        w2 = _gemm_view(x)
        amax = group_amax(w2, "16x16").reshape(-1)
        st = NVFP4Format(tensor_scale=True)._tensor_scale(float(_finite_amax(w2)))
        return _e4m3_report(amax, 6.0, st)
    spec = tq.spec
    if isinstance(spec, NVFP4Format):
        amax = group_amax(x, "16").reshape(-1)
        st = spec._tensor_scale(float(_finite_amax(x))) if spec.tensor_scale else 1.0
        return _e4m3_report(amax, 6.0, st)
    if isinstance(spec, ScaledTensorFormat):
        amax = group_amax(x, spec.block, spec.axis).reshape(-1)
        m = spec.max
        ok = torch.isfinite(amax) & (amax > 0)
        if spec.scale == "e4m3":
            return _e4m3_report(amax, m, 1.0)
        if spec.scale in ("e8m0", "pow2"):
            lo, hi = (-127, 127) if spec.scale == "e8m0" else (-1022, 1023)
            e = torch.ceil(torch.log2(torch.where(ok, amax, torch.ones_like(amax)) / m)).to(torch.int64)
            return _pow2_report(amax, e, lo, hi)
        v = torch.where(ok, amax, torch.full_like(amax, m)) / m
        return _report(v, ok, ok & (v > 3.4028234663852886e38), ok & (v < 2.0**-149))
    if isinstance(spec, MXFormat):
        amax = group_amax(x, str(spec.block), spec.axis).reshape(-1)
        ok = torch.isfinite(amax) & (amax > 0)
        safe = torch.where(ok, amax, torch.ones_like(amax))
        if spec.scale == "floor":  # OCP MX v1.0, section 6.3: E = floor(log2 amax) - emax_elem
            e = torch.floor(torch.log2(safe)).to(torch.int64) - spec.emax_elem
        else:
            e = torch.ceil(torch.log2(safe / spec.element_grid.maxval)).to(torch.int64)
        return _pow2_report(amax, e, -127, 127)
    return None


def _e4m3_report(amax: torch.Tensor, m: float, st: float) -> dict[str, float]:
    ok = torch.isfinite(amax) & (amax > 0)
    # the UE4M3 code's argument before its clamp, fp32-rounded as the format computes it
    r = (torch.where(ok, amax, torch.zeros_like(amax)) / m).to(torch.float32).to(torch.float64) / st
    r = r.to(torch.float32).to(torch.float64)
    s = tile_scale_reference(amax, "e4m3", m, st)
    return _report(torch.where(torch.isnan(s), torch.ones_like(s), s), ok, ok & (r > _E4M3_MAX),
                   ok & (r < _E4M3_TINY))


# --------------------------------------------------------------------------- weight-gradient operands
@dataclass(frozen=True)
class WgradOperands:
    """The operands of the weight-gradient GEMM ``G = E^T A`` (the ``wgrad_transform`` hook of
    :class:`~core.train.qlayers.QLayer`): from the float E and A, optionally a random Hadamard transform
    of ``rht`` points along the reduction axis (dim 0, the batch; zero-padded to a multiple of ``rht``)
    of both (``H^T H = I``, so ``G`` is unchanged in exact arithmetic; NVFP4 paper, section 4.3), then
    each quantized by ``e`` / ``a`` with blocks along that axis (None keeps it float). The signs are
    seeded per (run seed, step, layer) (:func:`tensor_seed`, tensor code ``g``); SR of ``e`` uses the
    layer's ``ew`` seed."""

    e: TensorQuant | None = None
    a: TensorQuant | None = None
    rht: int = 0

    def __post_init__(self) -> None:
        if self.rht:
            RandomHadamard(self.rht)  # validates the block size

    def hadamard(self, layer: Any) -> RandomHadamard:
        """The transform of ``layer`` at its current step."""
        return RandomHadamard(self.rht, tensor_seed(layer.seed, layer.step, layer.layer_index, "g"))

    def __call__(self, layer: Any, e: torch.Tensor, a: torch.Tensor, eqw: torch.Tensor,
                 xq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(layer, nn.Linear):
            e, a = e.reshape(-1, e.shape[-1]), a.reshape(-1, a.shape[-1])
        if self.rht:
            pad = -e.shape[0] % self.rht
            if pad:
                e = torch.cat([e, e.new_zeros((pad, *e.shape[1:]))])
                a = torch.cat([a, a.new_zeros((pad, *a.shape[1:]))])
            h = self.hadamard(layer)
            e, a = along_dim0(h.forward, e), along_dim0(h.forward, a)
        seeds = layer._seeds_now()
        if self.e is not None:
            sd = seeds[TENSORS["ew"]] if self.e.rounding.startswith("stochastic") else None
            tq_e = self.e
            e = along_dim0(lambda v: tq_e(v, sd), e)
        if self.a is not None:
            sd = seeds[TENSORS["a"]] if self.a.rounding.startswith("stochastic") else None
            tq_a = self.a
            a = along_dim0(lambda v: tq_a(v, sd), a)
        return e, a

    def to_dict(self) -> dict[str, Any]:
        return {"e": dataclasses.asdict(self.e) if self.e else None,
                "a": dataclasses.asdict(self.a) if self.a else None, "rht": self.rht}


# --------------------------------------------------------------------------- the per-layer config
@dataclass(frozen=True)
class RecipeConfig(QuantConfig):
    """A :class:`QuantConfig` with a recipe's extras: ``wgrad_transform`` (read by the layers'
    backward), ``shadow`` (the QuantConfig of a second recipe measured on the same live tensors) and the
    ``telemetry_rows`` hook the telemetry calls."""

    wgrad_transform: WgradOperands | None = None
    shadow: QuantConfig | None = None
    recipe: str = ""
    shadow_name: str = ""

    def __post_init__(self) -> None:
        for k in TENSORS:
            object.__setattr__(self, k, TensorQuant.coerce(getattr(self, k)))

    @functools.cached_property
    def is_float(self) -> bool:
        return self.wgrad_transform is None and all(getattr(self, k) is None for k in TENSORS)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: (dataclasses.asdict(v) if (v := getattr(self, k)) is not None else None)
                             for k in TENSORS}
        d["wgrad_transform"] = self.wgrad_transform.to_dict() if self.wgrad_transform else None
        d["shadow"] = self.shadow.to_dict() if self.shadow else None
        d["recipe"], d["shadow_name"] = self.recipe, self.shadow_name
        return d

    def telemetry_rows(self, layer: Any, name: str, t: str, x: torch.Tensor) -> list[MetricRow]:
        """Role ``scale`` rows of tensor ``t`` (:func:`scale_report`; for delayed scaling the state of
        the last training step: ``delayed_scale``, ``delayed_amax`` (the amax used), ``amax`` (the
        step's own), ``saturated_fraction``) and role ``shadow`` rows of the shadow recipe (ARE, SQNR,
        ... of :func:`core.train.telemetry.quant_metrics`, ``fmt`` = ``<recipe>:<spec>``)."""
        rows: list[MetricRow] = []
        tq = getattr(self, t, None)
        if isinstance(tq, DelayedScaleQuant):
            last = getattr(layer, tq.buffer_names(t)[2], None)
            if isinstance(last, torch.Tensor) and not math.isnan(float(last[1])):
                used, s, amax, sat, n = (float(v) for v in last)
                vals = {"delayed_scale": s, "delayed_amax": used, "amax": amax,
                        "saturated_fraction": sat / max(n, 1.0), "scale_log2_median": math.log2(s)}
                rows += [MetricRow(name, t, tq.fmt, "scale", k, v) for k, v in vals.items()]
        elif tq is not None:
            rep = scale_report(_telemetry_view(tq, layer, t, x), tq)
            if rep is not None:
                rows += [MetricRow(name, t, tq.fmt, "scale", k, v) for k, v in rep.items()]
        sq = getattr(self.shadow, t, None) if self.shadow is not None else None
        if sq is not None:
            sd = tensor_seed(layer.seed, layer.step, layer.layer_index, t) if sq.rounding.startswith("stochastic") \
                else None
            xs = _gemm_view(x) if isinstance(sq, NVFP4Weight2D) else _telemetry_view(sq, layer, t, x)
            ys = sq(xs, sd).reshape(xs.shape)
            fmt = f"{self.shadow_name}:{sq.fmt}"
            rows += [MetricRow(name, t, fmt, "shadow", k, v) for k, v in quant_metrics(xs, ys, sq.spec).items()]
        return rows


def _telemetry_view(tq: TensorQuant, layer: Any, t: str, x: torch.Tensor) -> torch.Tensor:
    """The view of ``x`` whose last axis ``tq`` blocks along on ``layer`` (:class:`ReductionAxisQuant`
    on a Conv2d: the GEMM view), so the scale telemetry and shadow errors see the recipe's blocks."""
    if isinstance(tq, ReductionAxisQuant) and isinstance(layer, nn.Conv2d):
        return _to_gemm_view(x, t)
    return x


# --------------------------------------------------------------------------- the schemes
def _shadow_field() -> Any:
    return field(default="none", metadata=field_doc(
        "a second recipe measured on the same live tensors (telemetry role 'shadow'; fp8 as current scaling)",
        _SHADOW_CHOICES))


@dataclass(frozen=True)
class _Recipe(Scheme):
    """Shared: the ``shadow_recipe`` switch and the :class:`RecipeConfig` assembly."""

    shadow_recipe: str = "none"

    def _tensors(self) -> tuple[TensorQuant, TensorQuant, TensorQuant, WgradOperands | None]:
        raise NotImplementedError

    def _check_shadow(self) -> None:
        if self.shadow_recipe not in _SHADOW_CHOICES:
            raise ValueError(f"{self.name}.shadow_recipe must be one of {', '.join(_SHADOW_CHOICES)}, "
                             f"got {self.shadow_recipe!r}")

    def quant(self) -> QuantConfig | None:
        w, a, e, wg = self._tensors()
        shadow = None
        if self.shadow_recipe != "none":
            other = get_scheme(self.shadow_recipe)
            assert isinstance(other, _Recipe)
            sw, sa, se, _ = other._tensors()
            shadow = QuantConfig(w=sw, a=sa, e=se)
        return RecipeConfig(w=w, a=a, e=e, wgrad_transform=wg, shadow=shadow, recipe=self.name,
                            shadow_name=self.shadow_recipe if shadow is not None else "")


@register_scheme("fp8")
@dataclass(frozen=True)
class FP8Scheme(_Recipe):
    """TransformerEngine-style FP8 training (TE ``DelayedScaling`` / ``Float8CurrentScaling``; module
    docstring). W, A and E are quantized; G and the update stay float (FP32 master weights); the first
    and last layers stay high precision unless ``first_last``. ``granularity=row`` (one scale per dim-0
    index: output channel of W, sample of A and E) is for current scaling only."""

    description: ClassVar[str] = "FP8 training, TransformerEngine recipe (delayed or current scaling)"
    first_last: bool = field(default=False, metadata=field_doc(
        "also quantize the first and last layer (TE users keep them high precision)"))
    format: str = field(default="hybrid", metadata=field_doc(
        "fp8_format: hybrid = E4M3 for W/A, E5M2 for E; e4m3 = E4M3 everywhere", _FORMATS))
    scaling: str = field(default="delayed", metadata=field_doc(
        "delayed = scale from the amax history of previous steps; current = from the tensor's own amax",
        ("delayed", "current")))
    amax_history_len: int = field(default=1024, metadata={
        **field_doc("amax history length of delayed scaling (TE default 1024)"), "range": (1, 65536)})
    amax_compute_algo: str = field(default="max", metadata=field_doc(
        "amax taken from the history: its max or the most recent entry", ("max", "most_recent")))
    margin: int = field(default=0, metadata={
        **field_doc("scale = fp8_max / amax / 2**margin (delayed scaling)"), "range": (0, 32)})
    granularity: str = field(default="tensor", metadata=field_doc(
        "scale granularity: tensor, or row (current scaling only)", ("tensor", "row")))
    shadow_recipe: str = _shadow_field()

    def __post_init__(self) -> None:
        for k, ok in (("format", _FORMATS), ("scaling", ("delayed", "current")),
                      ("amax_compute_algo", ("max", "most_recent")), ("granularity", ("tensor", "row"))):
            if getattr(self, k) not in ok:
                raise ValueError(f"fp8.{k} must be one of {', '.join(ok)}, got {getattr(self, k)!r}")
        for k, lo, hi in (("amax_history_len", 1, 65536), ("margin", 0, 32)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"fp8.{k} must be an int in {lo}..{hi}, got {v!r}")
        if self.scaling == "delayed" and self.granularity != "tensor":
            raise ValueError("fp8: granularity=row needs scaling=current (delayed scaling is per tensor)")
        self._check_shadow()

    def _tensors(self) -> tuple[TensorQuant, TensorQuant, TensorQuant, WgradOperands | None]:
        fwd, bwd = _elems(self.format)
        if self.scaling == "current":
            def q(el: str) -> TensorQuant:
                return TensorQuant(f"scaled(elem={el},block={self.granularity},scale=fp32)")
        else:
            def q(el: str) -> TensorQuant:
                return DelayedScaleQuant(f"scaled(elem={el},block=tensor,scale=fp32)", "nearest",
                                         self.amax_history_len, self.amax_compute_algo, self.margin)
        return q(fwd), q(fwd), q(bwd), None


@register_scheme("mxfp8")
@dataclass(frozen=True)
class MXFP8Scheme(_Recipe):
    """MXFP8 training (OCP MX v1.0; NVIDIA's MXFP8 recipe): 32-element 1-D blocks with E8M0 scales,
    E4M3 everywhere (``format=e4m3``, the default of TransformerEngine's ``MXFP8BlockScaling``) or E4M3
    W/A and E5M2 E (``format=hybrid``). Blocks run along each GEMM's reduction axis
    (:class:`ReductionAxisQuant`): the last axis of a Linear's W, A and E, a Conv2d's W as
    ``W.reshape(Cout, -1)`` and its A and E along the channels, dim 0 (the batch) for both operands of
    the weight gradient (re-quantized from the float E and A). The input-gradient GEMM reuses the
    forward's W (blocked along its input axis)."""

    description: ClassVar[str] = "MXFP8 training (OCP MX: 32-element blocks, E8M0 scales)"
    format: str = field(default="e4m3", metadata=field_doc(
        "e4m3 = E4M3 everywhere (TE MXFP8BlockScaling default); hybrid = E4M3 for W/A, E5M2 for E",
        ("e4m3", "hybrid")))
    scale_rule: str = field(default="floor", metadata=field_doc(
        "E8M0 scale rule: floor (OCP MX v1.0) or rceil (NVIDIA's MXFP8 recipe)", ("floor", "rceil")))
    shadow_recipe: str = _shadow_field()

    def __post_init__(self) -> None:
        if self.format not in _FORMATS:
            raise ValueError(f"mxfp8.format must be one of {', '.join(_FORMATS)}, got {self.format!r}")
        if self.scale_rule not in ("floor", "rceil"):
            raise ValueError(f"mxfp8.scale_rule must be floor or rceil, got {self.scale_rule!r}")
        self._check_shadow()

    def _tensors(self) -> tuple[TensorQuant, TensorQuant, TensorQuant, WgradOperands | None]:
        fwd, bwd = _elems(self.format)
        w = ReductionAxisQuant(f"mx(elem={fwd},block=32,scale={self.scale_rule})")
        e = ReductionAxisQuant(f"mx(elem={bwd},block=32,scale={self.scale_rule})")
        return w, w, e, WgradOperands(e=e, a=w)


@register_scheme("nvfp4")
@dataclass(frozen=True)
class NVFP4Scheme(_Recipe):
    """NVFP4 training (NVFP4 paper, arXiv 2509.25149, section 4): NVFP4 (E2M1 elements, UE4M3 block
    scales, FP32 tensor scale) for W, A and E; every technique is a switch: 16x16 weight blocks
    (``w2d``), stochastic rounding of the gradients E (``sr``), a 16-point random Hadamard transform of
    both weight-gradient operands (``rht``), high-precision first/last layers (``first_last`` off). The
    weight-gradient operands are re-quantized from the float E and A with 1x16 blocks along the batch
    (the reduction axis of G)."""

    description: ClassVar[str] = "NVFP4 training recipe (2-D weight blocks, SR, RHT)"
    first_last: bool = field(default=False, metadata=field_doc(
        "also quantize the first and last layer (the paper keeps them high precision)"))
    w2d: bool = field(default=True, metadata=field_doc("16x16 2-D block scales for the weights (else 1x16)"))
    sr: bool = field(default=True, metadata=field_doc("stochastic rounding of the gradients E"))
    rht: bool = field(default=True, metadata=field_doc(
        "16-point random Hadamard transform of E and A in the weight-gradient GEMM"))
    shadow_recipe: str = _shadow_field()

    def __post_init__(self) -> None:
        for k in ("w2d", "sr", "rht"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"nvfp4.{k} must be true or false, got {getattr(self, k)!r}")
        self._check_shadow()

    def _tensors(self) -> tuple[TensorQuant, TensorQuant, TensorQuant, WgradOperands | None]:
        w = NVFP4Weight2D() if self.w2d else ReductionAxisQuant("nvfp4")
        a = ReductionAxisQuant("nvfp4")
        e = ReductionAxisQuant("nvfp4", "stochastic" if self.sr else "nearest")
        return w, a, e, WgradOperands(e=e, a=a, rht=16 if self.rht else 0)
