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


def _imports_of(pkg: str) -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in _files(pkg)}


def _third_party(p: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
    return out


def test_the_training_engine_never_imports_what_builds_on_it():
    """core.train knows the schemes only through its registry (an entry point), never by import."""
    above = ("core.schemes", "core.sweep", "explorer")
    bad = {m: sorted(i for i in imps if i.startswith(above)) for m, imps in _imports_of("core.train").items()}
    assert {k: v for k, v in bad.items() if v} == {}
    bad = {m: sorted(i for i in imps if i.startswith(("core.sweep", "explorer")))
           for m, imps in _imports_of("core.schemes").items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_user_folders_import_no_project_module():
    assert sorted(i for i in _imports(ROOT / "core" / "userdirs.py") if i.startswith(("core", "explorer"))) == []


def test_the_store_imports_only_itself():
    # core.userdirs (where a user's files go; it imports no project module) is the one exception
    bad = {m: sorted(i for i in imps if not i.startswith("core.store") and i != "core.userdirs")
           for m, imps in _imports_of("core.store").items()}
    assert {k: v for k, v in bad.items() if v} == {}
    # and no module of the store imports store.py back (the mixins sit below it)
    below = {m: imps for m, imps in _imports_of("core.store").items() if m not in ("core.store", "core.store.store")}
    assert not any("core.store.store" in imps for imps in below.values())


def test_core_knows_no_screen():
    screens = {"panel", "holoviews", "bokeh"}
    bad = {str(p.relative_to(ROOT)): sorted(_third_party(p) & screens) for p in _files("core")}
    assert {k: v for k, v in bad.items() if v} == {}
