"""The arrows point one way (docs/architecture.md): core.kernels imports nothing above it, core.formats
only itself and the kernels (base at the bottom, no base <-> registry cycle), and compiled Numba code
lives in core/kernels/ only. Module-level and function-level imports both count."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(p: Path) -> str:
    parts = p.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(p: Path) -> set[str]:
    """Every ``core...`` module a file imports (absolute or relative, anywhere in the file)."""
    name = _module(p)
    base = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                mod = ".".join(parts[: len(parts) - node.level + 1]) + (f".{node.module}" if node.module else "")
            else:
                mod = node.module or ""
            out.add(mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "core" or m.startswith("core.")}


def _files(pkg: str) -> list[Path]:
    return sorted((ROOT / pkg.replace(".", "/")).rglob("*.py"))


def test_kernels_import_only_kernels():
    bad = {_module(p): sorted(m for m in _imports(p) if not m.startswith("core.kernels"))
           for p in _files("core.kernels")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_formats_import_only_formats_and_kernels():
    bad = {_module(p): sorted(m for m in _imports(p) if not m.startswith(("core.formats", "core.kernels")))
           for p in _files("core.formats") if p.name != "__main__.py"}  # the CLI sits on top of core
    assert {k: v for k, v in bad.items() if v} == {}


def test_format_base_is_the_bottom_of_formats():
    assert _imports(ROOT / "core/formats/base.py") == set()
    assert not (ROOT / "core/quantize.py").exists()  # the dispatch lives in core/formats/dispatch.py


def test_compiled_code_only_under_core_kernels():
    """Numba decorators live in core/kernels/ only; explorer/ calls core."""
    pat = re.compile(r"@(numba\.)?(njit|jit|vectorize|guvectorize|cuda\.jit)\b|\bnumba\.njit\(|\bnjit\(")
    offenders = [str(p.relative_to(ROOT)) for d in ("core", "explorer") for p in (ROOT / d).rglob("*.py")
                 if p.relative_to(ROOT).parts[:2] != ("core", "kernels") and pat.search(p.read_text())]
    assert offenders == []
    numba_users = [str(p.relative_to(ROOT)) for p in (ROOT / "explorer").rglob("*.py")
                   if re.search(r"^\s*(import numba|from numba)", p.read_text(), re.M)]
    assert numba_users == []
