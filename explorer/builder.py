"""The spec builder: pick a format family, then its knobs; always shows the spec string.

:class:`SpecBuilder` is Panel-free ``param`` state.  The knobs of each family are generated
from the family's frozen dataclass (:data:`core.formats.FAMILIES`) by
:func:`explorer.knobs.knob_parameter` (the adapter the scheme knobs use too): ``int`` fields become
``param.Integer`` with the field's ``metadata["range"]`` as bounds, ``bool`` fields
``param.Boolean``, ``str`` fields with ``metadata["choices"]`` ``param.Selector``, ``float``
fields ``param.Number``; ``metadata["doc"]`` becomes the parameter's ``doc``.

Three ways to set a format, kept consistent:

* choose a ``family`` (its default spec is loaded) or a named ``preset`` (an alias);
* move a knob (the spec is rebuilt with :meth:`FormatSpec.replace`);
* type a ``spec`` string.  One that does not parse (or knobs that do not validate)
  sets ``error`` to the parser's message and changes nothing else: ``fmt`` keeps the last
  valid format.

:class:`explorer.widgets.SpecBuilderView` is the thin Panel view (widgets from the params).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, cast

import param

import core
from core.formats import ALIASES, FAMILIES, FormatSpec, family_fields

from .knobs import hint_name, knob_parameter

__all__ = ["SpecBuilder", "knob_class", "FLOAT_NONE", "SLOT_COLORS"]

#: label of the "no quantization" choice of optional spec builders
FLOAT_NONE = "(float)"
#: one colour per Format Lab slot, used by the cards and every plot
SLOT_COLORS: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
_CUSTOM = "(custom)"


def _knob_parameter(f: dataclasses.Field, default: Any) -> param.Parameter:
    """A ``param`` Parameter mirroring one dataclass field of a format family."""
    meta = f.metadata
    return knob_parameter(hint_name(f.type), default, str(meta.get("doc", f.name)), bounds=meta.get("range"),
                          choices=meta.get("choices"))


@lru_cache(maxsize=None)
def knob_class(family: str) -> type[param.Parameterized]:
    """A ``param.Parameterized`` subclass with one parameter per field of ``family``.

    Defaults are those of the family's default spec (``FAMILIES[family]()``).

    Raises:
        KeyError: unknown family.
    """
    cls = FAMILIES[family]
    default = cls()
    params = {f.name: _knob_parameter(f, getattr(default, f.name)) for f in family_fields(cls)}
    return param.parameterized_class(f"{family.capitalize()}Knobs", params)


def _knob_values(spec: FormatSpec) -> dict[str, Any]:
    """The spec's values of the fields that are knobs (``init`` fields)."""
    return {f.name: getattr(spec, f.name) for f in family_fields(type(spec))}


def _knobs_for(spec: FormatSpec) -> param.Parameterized:
    knobs = knob_class(spec.family)()
    with param.parameterized.discard_events(knobs):
        knobs.param.update(**_knob_values(spec))
    return knobs


def _outside_knobs(spec: FormatSpec) -> str:
    """Why ``spec`` cannot be shown on its family's knobs (a value beyond a field's ``range``), or ``""``."""
    knobs = knob_class(spec.family)
    for name, value in _knob_values(spec).items():
        try:
            knobs.param[name]._validate(value)
        except (ValueError, TypeError) as exc:
            return f"{spec.family}: {name}={value!r} is outside the knob's range ({exc})"
    return ""


class SpecBuilder(param.Parameterized):
    """One format chosen by family + knobs, by preset, or by a typed spec string."""

    family: param.Selector[str] = param.Selector(default="mls", objects=list(FAMILIES),
                                                 doc="Format family; its knobs appear below.")
    preset: param.Selector[str] = param.Selector(default=_CUSTOM, objects=[_CUSTOM, *ALIASES],
                                                 doc="A named format (alias); '(custom)' when the spec has no alias.")
    spec = param.String(default="",
                        doc="The spec string. Typing one parses it; "
                            "a bad one shows the parser's message and changes nothing.")
    # knobs and fmt: None only while __init__ runs (it applies a format or raises), so typed without None
    knobs = cast("param.ClassSelector[param.Parameterized]",
                 param.ClassSelector(class_=param.Parameterized, constant=True,
                                     doc="The family's knobs (one parameter per spec field)."))
    error = param.String(default="", constant=True,
                         doc="Message of the last rejected spec or knob value; empty when valid.")
    fmt = cast("param.ClassSelector[FormatSpec]",
               param.ClassSelector(class_=FormatSpec, constant=True, doc="The current valid format (read-only)."))
    optional = param.Boolean(default=False, constant=True,
                             doc="When true, the empty spec (or '(float)') means 'not quantized' and fmt is None.")
    enabled = param.Boolean(default=True, doc="False when an optional builder is set to float (no quantization).")

    def __init__(self, spec: str | FormatSpec | None = "mls(ex=2,mx=1,eg=8,mg=1,group=nc)", **params: Any) -> None:
        super().__init__(**params)
        self._syncing = False
        self._knob_watcher: Any = None
        if spec is None or (isinstance(spec, str) and spec.strip() in ("", FLOAT_NONE)):
            if not self.optional:
                raise ValueError("a spec is required unless optional=True")
            self._apply(core.parse_format("mls(ex=2,mx=1,eg=8,mg=1,group=nc)"))
            with param.parameterized.discard_events(self):
                self.enabled = False
                self.spec = FLOAT_NONE
        else:
            self._apply(core.parse_format(spec))

    # ------------------------------------------------------------------ api
    @property
    def value(self) -> str | None:
        """The spec string to use (None for a disabled optional builder)."""
        return str(self.fmt) if self.enabled else None

    def set_spec(self, text: str | FormatSpec | None) -> None:
        """Set the format from a string/spec (None or '(float)' disables an optional builder)."""
        self.spec = FLOAT_NONE if text is None else str(text)

    def set_knob(self, name: str, value: Any) -> bool:
        """Move one knob; a value outside the knob's range (or of the wrong type) sets ``error`` to the
        reason and changes nothing else, like a rejected spec string. Returns whether it was applied."""
        try:
            self.knobs.param[name]._validate(value)
        except (ValueError, TypeError) as exc:
            self._reject(f"{self.fmt.family}: {name}={value!r} rejected: {exc}; still showing {self.fmt}")
            return False
        setattr(self.knobs, name, value)
        return not self.error

    # -------------------------------------------------------------- internals
    def _apply(self, spec: FormatSpec) -> None:
        """Make ``spec`` current: fmt, family, knobs, preset and the canonical string."""
        self._syncing = True
        try:
            if self._knob_watcher is not None:
                self.knobs.param.unwatch(self._knob_watcher)
                self._knob_watcher = None
            knobs = self.knobs
            if knobs is None or type(knobs) is not knob_class(spec.family):
                knobs = _knobs_for(spec)
            else:
                knobs.param.update(**_knob_values(spec))
            text = str(spec)
            preset = text if text in ALIASES else _CUSTOM
            with param.edit_constant(self):
                changes: dict[str, Any] = dict(fmt=spec, error="", family=spec.family, preset=preset,
                                               spec=text, enabled=True)
                if knobs is not self.knobs:
                    changes["knobs"] = knobs
                self.param.update(**changes)
            names = [f.name for f in family_fields(type(spec))]
            self._knob_watcher = knobs.param.watch(self._on_knob, names)
        finally:
            self._syncing = False

    def _reject(self, message: str) -> None:
        with param.edit_constant(self):
            self.error = message

    def _on_knob(self, *events: param.parameterized.Event) -> None:
        if self._syncing:
            return
        changes = {e.name: e.new for e in events}
        try:
            new = self.fmt.replace(**changes)
        except (ValueError, TypeError) as exc:
            self._reject(str(exc))
            return
        self._apply(new)

    @param.depends("family", watch=True)
    def _on_family(self) -> None:
        if self._syncing or self.family == self.fmt.family:
            return
        self._apply(FAMILIES[self.family]())

    @param.depends("preset", watch=True)
    def _on_preset(self) -> None:
        if self._syncing or self.preset == _CUSTOM:
            return
        self._apply(ALIASES[self.preset])

    @param.depends("spec", watch=True)
    def _on_spec(self) -> None:
        if self._syncing:
            return
        text = self.spec.strip()
        if self.optional and text in ("", FLOAT_NONE):
            with param.parameterized.discard_events(self):
                self.spec = FLOAT_NONE
            with param.edit_constant(self):
                self.error = ""
            self.enabled = False
            return
        try:
            new = core.parse_format(text)
        except (ValueError, TypeError) as exc:
            self._reject(str(exc))
            return
        if new == self.fmt and self.enabled:
            with param.edit_constant(self):
                self.error = ""
            return
        reason = _outside_knobs(new)
        if reason:
            self._reject(reason)
            return
        self._apply(new)
