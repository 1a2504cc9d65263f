"""One registry from short names to format specs, and the spec-string parser.

Grammar (no code is ever evaluated)::

    spec   := NAME | FAMILY "(" [key "=" value ("," key "=" value)*] ")"
    value  := integer | float | "true" | "false" | identifier | pattern

``pattern``: a ``str`` field may declare ``field(metadata={"pattern": REGEX})``; its tokens must
match that regular expression in full (``scaled``'s ``block=128x128``), never a free string.

``NAME`` is a registered alias (``fp8_e4m3``, ``bf16``, ``mu8`` ...),
``FAMILY`` a registered spec class (``float``, ``mls``, ``mx`` ...).  Keys are
the dataclass fields of the family; their types come from the field
annotations and their allowed values from ``field(metadata=...)``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, TypeVar

from .base import ALIASES, FAMILIES, FormatSpec, family_fields, format_spec_string

# ALIASES, FAMILIES, family_fields and format_spec_string live in .base (FormatSpec.__str__ needs them;
# base imports nothing of this package) and are re-exported here, next to the functions that fill them.

__all__ = [
    "FAMILIES",
    "ALIASES",
    "register_family",
    "register_alias",
    "parse_format",
    "format_spec_string",
    "as_format",
    "family_fields",
]

T = TypeVar("T", bound=type[FormatSpec])

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def register_family(cls: T) -> T:
    """Class decorator: register a frozen spec dataclass under ``cls.family``."""
    name = cls.family
    if not name or not _NAME_RE.match(name):
        raise ValueError(f"bad family name {name!r}")
    if name in FAMILIES and FAMILIES[name] is not cls:
        raise ValueError(f"family {name!r} registered twice")
    FAMILIES[name] = cls
    return cls


def register_alias(name: str, spec: FormatSpec) -> FormatSpec:
    """Register a short name for a fully specified format."""
    if not _NAME_RE.match(name) or name in FAMILIES:
        raise ValueError(f"bad alias name {name!r}")
    ALIASES[name] = spec
    return spec


def _convert(family: str, f: dataclasses.Field, token: str) -> Any:
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    ann = ann.replace(" ", "")
    choices = f.metadata.get("choices")
    where = f"{family}: key {f.name!r} got {token!r}"
    if ann == "bool":
        low = token.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{where}; expected true or false")
    if ann == "int":
        if not _INT_RE.match(token):
            raise ValueError(f"{where}; expected an integer")
        value: Any = int(token)
    elif ann == "float":
        if not (_FLOAT_RE.match(token) or _INT_RE.match(token)):
            raise ValueError(f"{where}; expected a number")
        value = float(token)
    elif ann in ("int|None", "Optional[int]"):
        if token.lower() == "none":
            return None
        if not _INT_RE.match(token):
            raise ValueError(f"{where}; expected an integer or none")
        value = int(token)
    else:  # str: a name, or a token of the field's own ``pattern`` metadata (e.g. ``128x128``)
        pattern = f.metadata.get("pattern")
        if pattern is not None:
            if not re.fullmatch(pattern, token):
                raise ValueError(f"{where}; expected {f.metadata.get('pattern_doc', pattern)}")
        elif not _NAME_RE.match(token):
            raise ValueError(f"{where}; expected a name")
        value = token
    if choices is not None and value not in choices:
        raise ValueError(f"{where}; valid values: {', '.join(map(str, choices))}")
    return value


def _split_args(family: str, body: str) -> list[tuple[str, str]]:
    body = body.strip()
    if not body:
        return []
    pairs: list[tuple[str, str]] = []
    for item in body.split(","):
        if "=" not in item:
            raise ValueError(f"{family}: expected key=value, got {item.strip()!r}")
        key, _, val = item.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not _NAME_RE.match(key) or not val:
            raise ValueError(f"{family}: malformed argument {item.strip()!r}")
        pairs.append((key, val))
    return pairs


def parse_format(text: str | FormatSpec) -> FormatSpec:
    """Parse a spec string into a frozen spec; ``str(parse_format(s))`` round-trips.

    Raises:
        ValueError: unknown family/alias, unknown key, bad or out-of-range value;
            the message names the offending token and lists what is valid.
        TypeError: ``text`` is neither a string nor a spec.
    """
    if isinstance(text, FormatSpec):
        return text
    if not isinstance(text, str):
        raise TypeError(f"a format is a spec string or a FormatSpec, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError("empty format string")
    if not s.isascii():
        bad = next(ch for ch in s if not ch.isascii())
        raise ValueError(f"format {text!r} has a non-ASCII character {bad!r}; specs are ASCII (digits 0-9)")
    m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", s, re.S)
    if not m:
        raise ValueError(
            f"cannot parse format {text!r}; expected NAME or family(key=value,...)"
        )
    name, body = m.group(1).lower(), m.group(2)
    if body is None and name in ALIASES:
        return ALIASES[name]
    if name not in FAMILIES:
        valid = sorted(set(FAMILIES) | set(ALIASES))
        raise ValueError(f"unknown format {name!r}; valid names: {', '.join(valid)}")
    cls = FAMILIES[name]
    fields = {f.name: f for f in family_fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, val in _split_args(name, body or ""):
        if key not in fields:
            raise ValueError(
                f"{name}: unknown key {key!r}; valid keys: {', '.join(fields)}"
            )
        if key in kwargs:
            raise ValueError(f"{name}: key {key!r} given twice")
        kwargs[key] = _convert(name, fields[key], val)
    return cls(**kwargs)


def as_format(fmt: str | FormatSpec) -> FormatSpec:
    """Accept a spec or a spec string."""
    return parse_format(fmt)


def check_range(family: str, key: str, value: Any, lo: Any, hi: Any) -> None:
    """Raise ``ValueError`` unless ``lo <= value <= hi``."""
    if isinstance(value, bool) or not (lo <= value <= hi):
        raise ValueError(f"{family}: {key}={value!r} is out of range; valid: {lo}..{hi}")


def check_choice(family: str, key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(
            f"{family}: {key}={value!r} is not valid; valid values: {', '.join(map(str, choices))}"
        )


Validator = Callable[[FormatSpec], None]
