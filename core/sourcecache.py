"""Values derived from the project's sources, cached on disk and keyed on those sources.

Owns :func:`cached`: ``cached(name, build, packages=..., entry_point_group=...)`` returns the value an
earlier process stored when nothing it can depend on changed since, else calls ``build()`` and stores
its result (JSON: lists come back for tuples). The key (:func:`source_key`) is a SHA-256 over the
interpreter's version, the bytes of every ``*.py`` file of ``packages`` (their folders, recursively),
the entry points of ``entry_point_group`` (name, target, distribution and its version) and the ``*.py``
files of the top-level packages those entry points name. The file is
``<first package>/__pycache__/<name>.json`` (next to Python's byte code), else, where that folder is
not writable, ``<name>.json`` in the user cache directory (:func:`core.userdirs.user_cache_dir`).

Used by ``python -m core.train --help``, whose text lists the registered schemes and their field docs:
known only once the schemes (and torch) are imported, so a fresh process reads them from here.
Light on purpose (standard library and platformdirs only); any failure to read or write the cache means ``build()``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from core.userdirs import user_cache_dir

__all__ = ["cached", "source_key"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: bump when the file layout or the key's recipe changes
_FORMAT = 1


def _locations(name: str) -> list[Path]:
    """Folders (a package) or files (a module) of an importable name, found without running it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _hash_sources(h: Any, roots: Iterable[Path]) -> None:
    for root in roots:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                data = b"\0unreadable"
            rel = f"{root.name}/{f.relative_to(root).as_posix()}" if root.is_dir() else f.name
            h.update(f"{rel}\0{len(data)}\0".encode())
            h.update(data)


def _entry_points(group: str) -> list[tuple[str, str, str, str]]:
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=group):
        dist = ep.dist
        out.append((ep.name, ep.value, dist.name if dist else "", dist.version if dist else ""))
    return sorted(out)


def source_key(packages: Sequence[str], entry_point_group: str | None = None) -> str:
    """The SHA-256 (hex) a cached value is valid for: see the module doc."""
    h = hashlib.sha256(f"{_FORMAT}\0{sys.implementation.cache_tag}\0{sys.version}\0".encode())
    roots = [loc for p in packages for loc in _locations(p)]
    if entry_point_group is not None:
        eps = _entry_points(entry_point_group)
        h.update(repr(eps).encode())
        own = {p.split(".")[0] for p in packages}
        tops = sorted({value.split(":")[0].strip().split(".")[0] for _, value, _, _ in eps} - own)
        roots += [loc for top in tops for loc in _locations(top)]
    _hash_sources(h, roots)
    return h.hexdigest()


def _files(name: str, package: str) -> list[Path]:
    out = [loc / "__pycache__" / f"{name}.json" for loc in _locations(package)[:1] if loc.is_dir()]
    try:
        base = user_cache_dir()
    except RuntimeError:  # no home folder
        return out
    return out + [base / f"{name}.json"]


def _write(path: Path, text: str) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from the checkout's other users
            os.replace(tmp, path)  # atomic: a reader sees the old file or the new one
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)
        return False
    return True


def cached(name: str, build: Callable[[], T], *, packages: Sequence[str], entry_point_group: str | None = None) -> T:
    """``build()``, or the value a process stored for the same :func:`source_key` (see the module doc).

    ``name`` names the file; ``build()`` must return a JSON value (dicts, lists, str, numbers, bool, None).
    """
    try:
        key = source_key(packages, entry_point_group)
    except Exception as exc:  # noqa: BLE001 - a cache must never be the reason a command fails
        log.debug("no source key for %s: %s", name, exc)
        return build()
    files = _files(name, packages[0])
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("key") == key and "value" in doc:
            value: T = doc["value"]
            return value
    value = build()
    text = json.dumps({"key": key, "value": value}, ensure_ascii=False)
    for path in files:
        if _write(path, text):
            break
    return value
