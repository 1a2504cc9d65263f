"""Format Lab state (Panel-free): up to four formats side by side on one tensor.

:class:`FormatLabState` holds four :class:`~explorer.builder.SpecBuilder` slots (``count`` of
them shown), the data source (a synthetic distribution or a tensor sample from a stored
run) and the rounding mode, and keeps ``results`` — one
:class:`~explorer.analysis.FormatResult` per visible slot — up to date whenever any of
them changes.  Results are cached by (data, spec, rounding, seed), so moving one slider
recomputes one format; ``latency`` records how long the last update took.

A result that cannot be computed never leaves the previous format's plots on screen: the slot gets
a result with ``error`` set (NaN metrics, nothing drawn) under the new spec, and the reason is in
``slot_errors``.  Besides the four slots the state keeps the bit layout of one typed value in one slot's
format (:mod:`explorer.bitlayout`) and the per-block scales of one slot's scaled format over the tensor
as a 2-D weight (:mod:`explorer.scalemap`).

Tensors from a run come only from the run store (``store.samples`` / ``store.load_sample``),
never from a path typed on the page.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import numpy as np
import param

import core
from core.formats.base import RBITS_MAX, RBITS_MIN, RBITS_PREFIX

from .batching import batched
from .analysis import DISTRIBUTIONS, SIZES, DataSummary, FormatResult, ResultCache, _nan_metrics
from .bitlayout import BitLayout, bit_layout
from .builder import SpecBuilder
from .scalemap import ScaleMap, as_matrix, scale_map

__all__ = ["FormatLabState", "DEFAULT_SPECS", "SOURCES", "ROUNDINGS", "SCALE_MAP_ROWS", "SCALE_MAP_COLS"]

#: the formats the four slots start with
DEFAULT_SPECS: tuple[str, ...] = (
    "mls(ex=2,mx=1,eg=8,mg=1,group=nc)",
    "fp8_e4m3",
    "mu8(mu=255.0,range=2.0)",
    "int8",
)
#: data sources
SOURCES: tuple[str, ...] = ("synthetic", "stored run")
#: the rounding choices: core's named modes plus ``stochastic_rbits`` (its K is the ``rbits`` knob)
ROUNDINGS: tuple[str, ...] = (*core.ROUNDING_MODES, RBITS_PREFIX)
#: the scale heat map uses at most this many rows and columns of the 2-D tensor (its top-left corner)
SCALE_MAP_ROWS, SCALE_MAP_COLS = 256, 512
_NONE = ""


class FormatLabState(param.Parameterized):
    """State of the Format Lab page."""

    count = param.Integer(default=2, bounds=(1, 4), doc="Number of formats compared side by side (1-4).")
    builders = param.List(item_type=SpecBuilder, constant=True,
                          doc="The four format slots (the first `count` are shown).")
    rounding: param.Selector[str] = param.Selector(
        default="nearest", objects=list(ROUNDINGS),
        doc="Rounding mode used for every format (stochastic_rbits: with `rbits` random bits).")
    rbits = param.Integer(default=8, bounds=(RBITS_MIN, RBITS_MAX),
                          doc="Random bits K of stochastic_rbits<K> rounding.")
    probe = param.String(default="0.3", doc="Value shown in the bit-layout view (a number).")
    probe_slot = param.Integer(default=1, bounds=(1, 4), doc="Slot whose format the bit-layout view uses.")
    probe_amax = param.Number(default=0.0, bounds=(0.0, None),
                              doc="Largest |x| of the probe's block (scaled formats); 0: the probe is the block max.")
    scale_slot = param.Integer(default=1, bounds=(1, 4), doc="Slot whose block scales the heat map shows.")
    layout = param.ClassSelector(class_=BitLayout, default=None, allow_None=True, constant=True,
                                 doc="Bit layout of `probe` in slot `probe_slot`'s format (read-only).")
    layout_error = param.String(default="", constant=True, doc="Why the bit layout cannot be shown; empty when it is.")
    scales = param.ClassSelector(class_=ScaleMap, default=None, allow_None=True, constant=True,
                                 doc="Per-block log2 scales of slot `scale_slot` over the tensor as 2-D (read-only).")
    scales_message = param.String(default="", constant=True, doc="Why there is no scale map; empty when there is.")
    slot_errors = param.List(default=["", "", "", ""], constant=True,
                             doc="Per slot: why its current spec could not be computed (empty when it was).")
    source: param.Selector[str] = param.Selector(default="synthetic", objects=list(SOURCES),
                                                 doc="Synthetic distribution or a tensor stored by a training run.")
    distribution: param.Selector[str] = param.Selector(default="normal", objects=list(DISTRIBUTIONS),
                                                       doc="Synthetic distribution.")
    log2_scale = param.Number(default=0.0, bounds=(-40.0, 40.0), step=0.5,
                              doc="log2 of the distribution's scale "
                                  "(std for normal, b for laplace, the top of a log-uniform range).")
    binades = param.Number(default=16.0, bounds=(1.0, 60.0), step=1.0, doc="Width of the log-uniform range in binades.")
    size: param.Selector[str] = param.Selector(default="1M", objects=list(SIZES),
                                               doc="Number of synthetic elements (NCHW shape, N=16, C=64).")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the synthetic data and of stochastic rounding.")
    run_id: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE],
                                                 doc="Stored run to take a tensor from (runs with tensor samples).")
    layer: param.Selector[str] = param.Selector(default=_NONE, objects=[_NONE], doc="Layer of the stored tensor.")
    tensor: param.Selector[str] = param.Selector(default="w", objects=["w", "a", "e", "g"],
                                                 doc="Which tensor: W (weight), A (input activation), "
                                                     "E (output gradient), G (weight gradient).")
    step: param.Selector[int | None] = param.Selector(default=None, objects=[None], allow_None=True,
                                                      doc="Training step of the stored sample (None: the latest).")
    store = param.Parameter(default=None,
                            doc="Run store (or its path) for stored tensors; "
                                "None: the default store, opened on first use.")
    # set by __init__ (never None after it): typed without None
    data = cast("param.ClassSelector[DataSummary]",
                param.ClassSelector(class_=DataSummary, constant=True,
                                    doc="The current tensor and its log2|x| binning (read-only)."))
    results = param.List(default=[], constant=True, doc="One FormatResult per shown slot, in slot order (read-only).")
    latency = param.Number(default=0.0, constant=True,
                           doc="Seconds taken by the last update (data + all formats), read-only.")
    message = param.String(default="", constant=True,
                           doc="Status line: what is shown, or why a stored tensor is unavailable.")

    def __init__(self, specs: tuple[str, ...] | list[str] = DEFAULT_SPECS, **params: Any) -> None:
        builders = [SpecBuilder(s) for s in list(specs)[:4]]
        builders += [SpecBuilder(DEFAULT_SPECS[i]) for i in range(len(builders), 4)]
        super().__init__(builders=builders, **params)
        self._cache = ResultCache(size=48)
        self._scale_cache: dict[tuple[str, str], ScaleMap | str] = {}
        for b in self.builders:
            b.param.watch(self._on_format, ["fmt"])
        self._load_data()
        self._update_results()
        self._update_layout()
        self._update_scales()

    # -------------------------------------------------------------- public
    @property
    def effective_rounding(self) -> str:
        """The rounding mode passed to :func:`core.quantize` (``stochastic_rbits<K>`` with K = ``rbits``)."""
        return f"{RBITS_PREFIX}{self.rbits}" if self.rounding == RBITS_PREFIX else self.rounding

    @property
    def specs(self) -> list[str]:
        """Spec strings of the shown slots."""
        return [str(b.fmt) for b in self.builders[: self.count]]

    def refresh_runs(self) -> list[str]:
        """Re-read the runs that have stored tensor samples; returns their ids."""
        store = self._store()
        ids: list[str] = []
        if store is not None:
            runs = store.list_runs()
            for rid in list(runs["run_id"]) if len(runs) else []:
                if len(store.samples(rid)):
                    ids.append(str(rid))
        self.param.run_id.objects = [_NONE, *ids]
        if self.run_id not in self.param.run_id.objects:
            self.run_id = _NONE
        return ids

    def recompute(self) -> None:
        """Recompute every shown format (cache bypassed only for changed inputs)."""
        self._update_results()

    # ----------------------------------------------------------- internals
    def _store(self) -> Any:
        try:
            from core.store import RunStore
        except ImportError:
            return None
        if not isinstance(self.store, RunStore):
            self.store = RunStore(self.store)  # None: $LOWBIT_STORE or the user data dir
        return self.store

    @param.depends("run_id", watch=True)
    def _on_run(self) -> None:
        layers: list[str] = [_NONE]
        if self.run_id:
            samples = self._store().samples(self.run_id)
            layers = list(dict.fromkeys(str(v) for v in samples["layer"])) or [_NONE]
        self.param.layer.objects = layers
        with param.parameterized.batch_call_watchers(self):
            self.layer = layers[0]
            self._on_layer_objects()

    @param.depends("layer", "tensor", watch=True)
    def _on_layer_objects(self) -> None:
        steps: list[Any] = [None]
        if self.run_id and self.layer:
            s = self._store().samples(self.run_id, layer=self.layer, tensor=self.tensor)
            steps += sorted({int(v) for v in s["step"]})
        self.param.step.objects = steps
        if self.step not in steps:
            self.step = None

    @param.depends("source", "distribution", "log2_scale", "binades", "size", "seed",
                   "run_id", "layer", "tensor", "step", watch=True)
    def _on_data(self) -> None:
        if self.source == "stored run" and not self.run_id:
            ids = self.refresh_runs()
            if ids:
                self.run_id = ids[0]  # loads the data through the run/layer watchers
                return
        with batched():  # one document update for the four plots, the table and the scale map
            self._load_data()
            self._update_results()
            self._update_scales()

    @param.depends("count", "rounding", "rbits", watch=True)
    def _on_slots(self) -> None:
        with batched():
            self._update_results()

    def _on_format(self, *events: Any) -> None:
        with batched():
            self._update_results()
            self._update_layout()
            self._update_scales()

    @param.depends("probe", "probe_slot", "probe_amax", "rbits", "seed", watch=True)
    def _update_layout(self) -> None:
        fmt = self.builders[self.probe_slot - 1].fmt
        layout, err = None, ""
        try:
            x = float(self.probe.strip())
        except ValueError:
            err = f"not a number: {self.probe!r}"
        else:
            try:
                layout = bit_layout(fmt, x, self.probe_amax or None, self.rbits, self.seed)
            except (ValueError, TypeError, NotImplementedError) as exc:
                err = f"{fmt}: {exc}"
        with param.edit_constant(self):
            self.param.update(layout=layout, layout_error=err)

    @param.depends("scale_slot", watch=True)
    def _update_scales(self) -> None:
        fmt = self.builders[self.scale_slot - 1].fmt
        key = (self.data.key, str(fmt))
        hit = self._scale_cache.get(key)
        if hit is None:
            try:
                x = as_matrix(self.data.x)[:SCALE_MAP_ROWS, :SCALE_MAP_COLS]
                hit = scale_map(fmt, x)
            except (ValueError, TypeError, NotImplementedError) as exc:
                hit = str(exc)
            if len(self._scale_cache) > 16:
                self._scale_cache.clear()
            self._scale_cache[key] = hit
        with param.edit_constant(self):
            if isinstance(hit, ScaleMap):
                self.param.update(scales=hit, scales_message="")
            else:
                self.param.update(scales=None, scales_message=hit)

    def _load_data(self) -> None:
        t0 = time.perf_counter()
        data: DataSummary | None = None
        msg = ""
        if self.source == "stored run":
            data, msg = self._stored_data()
        if data is None:
            data = DataSummary.synthetic(self.distribution, 2.0 ** self.log2_scale, SIZES[self.size],
                                         self.seed, self.binades)
            msg = (msg + " - showing synthetic data instead: " if msg else "") + data.label
        with param.edit_constant(self):
            self.param.update(data=data, message=msg, latency=time.perf_counter() - t0)

    def _stored_data(self) -> tuple[DataSummary | None, str]:
        if not self.run_id or not self.layer:
            return None, "pick a stored run and layer"
        store = self._store()
        samples = store.samples(self.run_id, layer=self.layer, tensor=self.tensor)
        if not len(samples):
            return None, f"run {self.run_id} has no stored {self.tensor.upper()} samples for {self.layer}"
        arr = store.load_sample(self.run_id, self.layer, self.tensor, step=self.step)
        row = samples.iloc[-1] if self.step is None else samples[samples["step"] == self.step].iloc[-1]
        x = core_tensor(arr, row.get("shape"))
        step = int(row["step"])
        key = f"run:{self.run_id}:{self.layer}:{self.tensor}:{step}"
        label = (f"run {self.run_id}, {self.layer} {self.tensor.upper()} at step {step}, "
                 f"{x.numel():,} elements {tuple(x.shape)}")
        return DataSummary.from_tensor(x, key, label), label

    def _update_results(self) -> None:
        t0 = time.perf_counter()
        data = self.data
        results: list[FormatResult] = []
        errors = ["", "", "", ""]
        for i, b in enumerate(self.builders[: self.count]):
            try:
                results.append(self._cache.get(data, b.fmt, self.effective_rounding, self.seed))
            except Exception as exc:  # noqa: BLE001 - any failure is shown on the page, never stale plots
                errors[i] = f"{b.fmt} could not be computed: {type(exc).__name__}: {exc}"
                results.append(_failed(b.fmt, len(data.counts), errors[i]))
            if results[-1].error:
                errors[i] = results[-1].error
        with param.edit_constant(self):
            self.param.update(results=results, slot_errors=errors, latency=time.perf_counter() - t0)


def _failed(fmt: Any, nbins: int, message: str) -> FormatResult:
    """The result of a format that could not be computed: its spec, NaN metrics, nothing to draw."""
    empty = np.zeros(0)
    try:
        bits = int(fmt.bits)
    except Exception:  # noqa: BLE001 - a broken format may fail here too
        bits = 0
    return FormatResult(str(fmt), bits, bool(getattr(fmt, "scaled", False)), _nan_metrics(), empty, empty,
                        np.full(nbins, math.nan), 0.0, message)


def core_tensor(arr: Any, shape: Any) -> "Any":
    """A float32 tensor of a stored sample, in the shape it was stored with.

    Samples of tensors larger than the run's ``sample_size`` keep their grouping structure (whole
    dim-0 x dim-1 groups, see ``core.train.telemetry.structured_sample``), so grouped formats (MLS,
    per-channel scales) see real groups. Stores written before that kept flat random subsets with
    the original shape: those stay 1-D.
    """
    import json

    import numpy as np
    import torch

    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    try:
        dims = json.loads(shape) if isinstance(shape, str) else list(shape or [])
        n = 1
        for d in dims:
            n *= int(d)
        if dims and n == t.numel():
            return t.reshape([int(d) for d in dims])
    except (TypeError, ValueError):
        pass
    return t
