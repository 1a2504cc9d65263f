"""Dataclass fields -> ``param`` parameters: the one adapter behind every knob panel.

:func:`knob_parameter` maps one field (its annotation, default, ``doc``, ``range`` and
``choices`` metadata) to a ``param.Parameter``; :func:`explorer.builder.knob_class` uses it for
the fields of a format family and :func:`scheme_knob_class` for the fields of a training scheme
(:meth:`core.train.Scheme.describe`). Panel-free.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import lru_cache
from typing import Any, Sequence

import param

import core

__all__ = ["knob_parameter", "scheme_knob_class", "spec_fields", "hint_name", "knob_text"]


def hint_name(t: Any) -> str:
    """A type hint as a short string: ``int``, ``str|None``, ``int|float`` (strings pass through)."""
    if t is None:
        return ""
    if isinstance(t, str):
        return t.replace(" ", "")
    origin = typing.get_origin(t)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return "|".join(hint_name(a) for a in args) + "|None"
    return getattr(t, "__name__", str(t))


def knob_text(value: Any) -> str:
    """A field value as the text of a String knob (tuples as ``3,4,6,8``)."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


_INTS = ("int", "int|None", "Optional[int]")
_FLOATS = ("float", "float|None", "Optional[float]", "int|float")


def knob_parameter(ann: str, default: Any, doc: str, bounds: Sequence[Any] | None = None,
                   choices: Sequence[Any] | None = None) -> param.Parameter:
    """The ``param`` Parameter of one field: choices -> Selector, ``bool`` -> Boolean, ``int`` ->
    Integer and ``float`` -> Number (``bounds`` from the field's ``range``; ``None`` allowed when the
    hint allows it), anything else a String holding :func:`knob_text` of the value."""
    rng = tuple(bounds) if bounds else None
    if choices:
        return param.Selector(default=default, objects=list(choices), doc=doc)
    if ann == "bool":
        return param.Boolean(default=bool(default), doc=doc)
    if ann in _INTS:
        return param.Integer(default=default, bounds=rng, allow_None=ann != "int", doc=doc)
    if ann in _FLOATS:
        return param.Number(default=default, bounds=rng, allow_None=ann.endswith("None") or ann.startswith("Optional"),
                            doc=doc)
    return param.String(default=default if isinstance(default, str) else knob_text(default), doc=doc)


def spec_fields(scheme_cls: Any) -> list[str]:
    """Fields of a scheme that hold format spec strings (``str`` or ``str | None`` without choices)."""
    out = []
    for d in scheme_cls.describe():
        ann = hint_name(d["type"])
        if ann in ("str", "str|None") and not d["choices"]:
            default = d["default"]
            if default is None or default is dataclasses.MISSING:
                out.append(d["name"])
                continue
            try:
                core.parse_format(default)
            except (ValueError, TypeError):
                continue
            out.append(d["name"])
    return out


@lru_cache(maxsize=None)
def scheme_knob_class(name: str) -> type[param.Parameterized]:
    """A ``param`` class with one parameter per non-spec field of scheme ``name``.

    Field types map to ``param`` types as in :func:`knob_parameter`; integer bounds are the
    fields' own ``range`` metadata (MLS ``ex``/``mx``/``eg``/``mg`` take theirs from the MLS format).
    """
    from core.train import SCHEMES, get_scheme

    cls = SCHEMES[name]
    default = get_scheme(name)
    specs = set(spec_fields(cls))
    params: dict[str, param.Parameter] = {}
    for d in cls.describe():
        n = d["name"]
        if n in specs:
            continue
        params[n] = knob_parameter(hint_name(d["type"]), getattr(default, n), d["doc"] or n,
                                   bounds=d.get("range"), choices=d["choices"])
    return param.parameterized_class(f"{name.capitalize()}SchemeKnobs", params)
