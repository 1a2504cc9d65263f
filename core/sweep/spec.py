"""Sweep files: a base run config and the grid of changes to it, expanded into cells.

A sweep is a TOML file::

    name = "mls-ex-mx"                 # the sweep's name in the store (default: the file's stem)
    description = "Ex x Mx on digits"
    metric = "best_test_acc"           # what the grid shows (see core.sweep.metrics.METRICS)
    axes = ["scheme.ex", "scheme.mx"]  # default heat-map axes (default: the first two varied keys)

    [base]                             # an ordinary run config: the tables of ``core.train --config``
    epochs = 3
    [base.scheme]
    name = "mls"

    [grid]                             # dotted config key -> values; the cells are their product
    "scheme.ex" = [0, 1, 2]
    "scheme.mx" = [1, 2, 3, 4]

    [[include]]                        # optional sections: each is the product of its own values,
    "scheme.group" = "none"            # crossed with the [grid] keys it does not set
    "scheme.ex" = [0, 1, 2, 3]

    [[exclude]]                        # optional: drop the cells that match every key of a table
    "scheme.ex" = 0
    "scheme.mx" = 1

Without ``[[include]]`` tables the cells are the ``[grid]`` product. With them, each include table
is a section (the MLS paper's Table 3 is three sections: grouping, Ex without and with group
scaling); cells that several sections produce are one cell. A value of ``scheme`` may be a table
(``{name = "custom", w = "fp8_e4m3", label = "fp8 e4m3"}``) so that schemes are one axis; its
``label`` names it on the axis.

A cell's key is a hash of the run config it trains, so running a sweep again finds the cells that
are already done. Every error names the file, the key and, where it can, the line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # imported where a config is built: `python -m core.sweep list/status` stays torch-free
    from core.train.config import RunConfig

__all__ = ["SweepSpec", "Cell", "SweepError", "load", "loads", "expand", "value_label"]

_TOP_KEYS = {"name", "description", "metric", "axes", "base", "grid", "include", "exclude"}


class SweepError(ValueError):
    """A sweep file that cannot be run (the message names the file, the key and the line)."""


@dataclass(frozen=True)
class Cell:
    """One run of a sweep.

    Attributes:
        key: hash of the run config (the cell's identity across reruns).
        coords: the varied keys' values in this cell (dotted key -> value), in axis order.
        config: the run config.
        index: position in the grid.
    """

    key: str
    coords: dict[str, Any]
    config: RunConfig
    index: int = 0

    @property
    def label(self) -> str:
        """``key=value`` pairs of the coordinates."""
        return ", ".join(f"{k}={value_label(v)}" for k, v in self.coords.items())


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring for the format)."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    include: tuple[dict[str, list[Any]], ...] = ()
    exclude: tuple[dict[str, list[Any]], ...] = ()
    description: str = ""
    metric: str = "best_test_acc"
    axes: tuple[str, ...] = ()
    source: str = ""
    text: str = field(default="", repr=False)

    @property
    def varied(self) -> list[str]:
        """Every key a section varies or sets, in first-seen order ([grid] first)."""
        keys = list(self.grid)
        for table in self.include:
            keys += [k for k in table if k not in keys]
        return keys

    @property
    def default_axes(self) -> tuple[str, ...]:
        """The heat map's x and y keys: ``axes`` if given, else the first two varied keys with more than one
        value."""
        if self.axes:
            return self.axes
        return tuple(self._multi_valued()[:2]) or tuple(self.varied[:2])

    def _multi_valued(self) -> list[str]:
        out = []
        for k in self.varied:
            vals = list(self.grid.get(k, []))
            for t in self.include:
                vals += t.get(k, [])
            if len({json.dumps(v, sort_keys=True, default=str) for v in vals}) > 1:
                out.append(k)
        return out

    def cells(self) -> list[Cell]:
        """Expand into cells (see :func:`expand`)."""
        return expand(self)


def value_label(v: Any) -> str:
    """A coordinate value as text: a scheme table by its ``label`` (or name and fields), others as ``str``."""
    if isinstance(v, Mapping):
        if "label" in v:
            return str(v["label"])
        rest = ",".join(f"{k}={x}" for k, x in v.items() if k != "name")
        return f"{v.get('name', '?')}({rest})" if rest else str(v.get("name", "?"))
    return str(v)


def _line_of(text: str, key: str) -> str:
    """`` (line N)`` of the first line of ``text`` that mentions ``key``, or ''."""
    for i, line in enumerate(text.splitlines(), 1):
        if key in line:
            return f" (line {i})"
    return ""


def loads(text: str, source: str = "<sweep>", name: str | None = None) -> SweepSpec:
    """Parse sweep TOML ``text`` (``source`` names it in errors).

    Raises:
        SweepError: malformed TOML, unknown top-level key, a grid that is not key -> list, an empty grid.
    """
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{source}: not valid TOML: {exc}") from None
    bad = sorted(set(d) - _TOP_KEYS)
    if bad:
        raise SweepError(f"{source}: unknown key {bad[0]!r}{_line_of(text, bad[0])}; "
                         f"a sweep has {', '.join(sorted(_TOP_KEYS))}")
    base = d.get("base", {})
    if not isinstance(base, dict):
        raise SweepError(f"{source}: [base] must be a table of run config keys{_line_of(text, 'base')}")

    def section(t: Any, what: str, lists: bool) -> dict[str, list[Any]]:
        if not isinstance(t, dict):
            raise SweepError(f"{source}: {what} must be a table of dotted config keys{_line_of(text, what)}")
        out: dict[str, list[Any]] = {}
        for k, v in t.items():
            if isinstance(v, dict) and (k != "scheme" or any(isinstance(x, list) for x in v.values())):
                inner = next(iter(v), "x")
                raise SweepError(f"{source}: {what} key {k!r}{_line_of(text, k)} holds a table; "
                                 f"quote dotted keys (\"{k}.{inner}\" = [...])")
            vals = list(v) if isinstance(v, list) else [v]
            if not vals:
                raise SweepError(f"{source}: {what} key {k!r}{_line_of(text, k)} has no values")
            if lists and not isinstance(v, list):
                raise SweepError(f"{source}: {what} key {k!r}{_line_of(text, k)} must be a list of values")
            out[k] = vals
        return out

    grid = section(d.get("grid", {}), "[grid]", lists=True)
    include = tuple(section(t, "[[include]]", lists=False) for t in _tables(d.get("include", []), source, "include"))
    exclude = tuple(section(t, "[[exclude]]", lists=False) for t in _tables(d.get("exclude", []), source, "exclude"))
    if not grid and not include:
        raise SweepError(f"{source}: the sweep has an empty grid: give [grid] values or [[include]] sections")
    axes = d.get("axes", ())
    if isinstance(axes, str) or not all(isinstance(a, str) for a in axes):
        raise SweepError(f"{source}: axes must be a list of dotted config keys{_line_of(text, 'axes')}")
    spec_name = str(d.get("name") or name or Path(source).stem)
    if not spec_name.strip() or any(ch in spec_name for ch in "/\\\n"):
        raise SweepError(f"{source}: name must be a non-empty single-line name without slashes, got {spec_name!r}")
    from .metrics import METRICS

    metric = str(d.get("metric", "best_test_acc"))
    if metric not in METRICS:
        raise SweepError(f"{source}: unknown metric {metric!r}{_line_of(text, 'metric')}; "
                         f"known: {', '.join(METRICS)}")
    spec = SweepSpec(name=spec_name, base=base, grid=grid, include=include, exclude=exclude,
                     description=str(d.get("description", "")), metric=metric, axes=tuple(axes), source=source,
                     text=text)
    unknown_axes = [a for a in spec.axes if a not in spec.varied]
    if unknown_axes:
        raise SweepError(f"{source}: axis {unknown_axes[0]!r}{_line_of(text, 'axes')} is not a key the sweep varies "
                         f"({', '.join(spec.varied)})")
    return spec


def _tables(v: Any, source: str, what: str) -> list[Any]:
    if isinstance(v, dict):
        return [v]
    if not isinstance(v, list):
        raise SweepError(f"{source}: [[{what}]] must be tables")
    return v


def load(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a sweep file.

    Raises:
        SweepError: the file is missing, unreadable or malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"sweep file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"cannot read sweep file {p}: {exc}") from None
    return loads(text, source=str(p), name=p.stem)


def _order(changes: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A scheme switch first, then the scheme's fields, then the rest (as the CLI does)."""
    def rank(k: str) -> int:
        return 0 if k in ("scheme", "scheme.name") else 1 if k.startswith("scheme.") else 2
    return sorted(changes.items(), key=lambda kv: rank(kv[0]))


def _apply(base: RunConfig, changes: Mapping[str, Any], spec: SweepSpec, section: str = "") -> RunConfig:
    """``base`` with a cell's changes. A scheme table of the base scheme's name changes only the fields
    it gives (the rest come from ``[base.scheme]``); a table of another scheme starts from its defaults."""
    from core.train.config import across_field_checks_deferred

    with across_field_checks_deferred():  # checks across fields wait for the whole cell: key order never matters
        cfg = _apply_each(base, changes, spec, section)
    try:
        cfg.check_across_fields()
    except ValueError as exc:
        keys = ", ".join(f"{k} = {value_label(v)!s}" for k, v in changes.items())
        raise SweepError(f"{spec.source}: {section}{keys or '[base]'}: {exc}") from None
    return cfg


def _apply_each(base: RunConfig, changes: Mapping[str, Any], spec: SweepSpec, section: str) -> RunConfig:
    cfg = base
    for key, value in _order(changes):
        k, v = key, value
        if key == "scheme.name":
            k = "scheme"
        if k == "scheme" and isinstance(v, Mapping):
            v = {x: y for x, y in v.items() if x != "label"}
            if v.get("name", cfg.scheme.name) == base.scheme.name:
                v = {**base.scheme.to_dict(), **v}
        try:
            cfg = cfg.with_changes({k: v})
        except (ValueError, TypeError) as exc:
            where = _line_of(spec.text, key)
            raise SweepError(f"{spec.source}: {section}{key} = {value_label(value)!s}{where}: {exc}") from None
    return cfg


def _product(table: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(table)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(table[k] for k in keys))]


def _matches(coords: Mapping[str, Any], rule: Mapping[str, list[Any]]) -> bool:
    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    return all(k in coords and any(same(coords[k], v) for v in vals) for k, vals in rule.items())


def config_key(cfg: RunConfig) -> str:
    """The identity of a cell: a hash of its run config."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(spec: SweepSpec) -> list[Cell]:
    """The cells of a sweep, validated: every cell's config is built before anything runs.

    Raises:
        SweepError: an unknown key or a value outside its domain (naming the key and the line), an
            unknown dataset or model, or a grid with no cells left.
    """
    from core.data import DATASETS
    from core.models import MODELS

    try:
        from core.train.config import RunConfig

        base = RunConfig.from_dict({**spec.base, "name": spec.base.get("name", spec.name)})
    except (ValueError, TypeError) as exc:
        raise SweepError(f"{spec.source}: [base]: {exc}") from None
    varied = spec.varied
    sections = [dict(t) for t in spec.include] if spec.include else [{}]
    raw: list[tuple[dict[str, Any], str]] = []
    for i, sec in enumerate(sections):
        table = {**{k: v for k, v in spec.grid.items() if k not in sec}, **sec}
        label = f"[[include]] section {i + 1}: " if spec.include else ""
        raw += [(c, label) for c in _product(table)]
    cells: list[Cell] = []
    seen: set[str] = set()
    for changes, label in raw:
        cfg = _apply(base, changes, spec, label)
        coords = {k: changes[k] if k in changes else _current(cfg, k) for k in varied}
        if any(_matches(coords, rule) for rule in spec.exclude):
            continue
        for what, known, name in (("dataset", DATASETS, cfg.data.name), ("model", MODELS, cfg.model.name)):
            if name not in known:
                raise SweepError(f"{spec.source}: unknown {what} {name!r}{_line_of(spec.text, name)}; "
                                 f"known: {', '.join(sorted(known))}")
        key = config_key(cfg)
        if key in seen:
            continue
        seen.add(key)
        cells.append(Cell(key=key, coords=coords, config=cfg, index=len(cells)))
    if not cells:
        raise SweepError(f"{spec.source}: the sweep has no cells left after [[exclude]]")
    return cells


def _current(cfg: RunConfig, key: str) -> Any:
    """The value of a dotted key in a config (for coordinates a section did not set)."""
    d: Any = cfg.to_dict()
    for part in key.split("."):
        if part == "name" and isinstance(d, dict) and "name" in d:
            return d["name"]
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    if isinstance(d, float) and math.isnan(d):
        return None
    return d


def coords_json(coords: Mapping[str, Any]) -> str:
    """Coordinates as canonical JSON."""
    return json.dumps(dict(coords), sort_keys=False, default=str)


def cells_for_store(cells: Sequence[Cell]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(key, coords, config dict)`` rows for ``RunStore.begin_sweep``."""
    return [(c.key, c.coords, c.config.to_dict()) for c in cells]
