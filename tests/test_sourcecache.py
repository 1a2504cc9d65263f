"""core.sourcecache: a value is rebuilt exactly when a source it is keyed on changes; a bad or unwritable
cache file means a rebuild, never an error."""

from __future__ import annotations

import json

from core.sourcecache import cached, source_key

VALUE = {"a": [1, 2], "b": "ü", "c": {"x": None}}


def _package(tmp_path, monkeypatch):
    pkg = tmp_path / "srccache_probe_pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "m.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return pkg


def test_rebuilt_exactly_when_a_source_changes(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch)
    calls: list[int] = []

    def build():
        calls.append(1)
        return VALUE

    def get():
        return cached("probe", build, packages=("srccache_probe_pkg",))

    assert get() == VALUE and get() == VALUE and len(calls) == 1
    assert json.loads((pkg / "__pycache__" / "probe.json").read_text(encoding="utf-8"))["value"] == VALUE
    (pkg / "sub" / "m.py").write_text("Y = 2\n")
    assert get() == VALUE and get() == VALUE and len(calls) == 2
    (pkg / "new.py").write_text("")
    assert get() == VALUE and len(calls) == 3
    (pkg / "__pycache__" / "probe.json").write_text("{not json")
    assert get() == VALUE and get() == VALUE and len(calls) == 4
    assert not (tmp_path / "xdg").exists()


def test_falls_back_to_the_user_cache_folder(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch)
    (pkg / "__pycache__").write_text("")  # a file where the folder would be: nothing can be written there
    calls: list[int] = []

    def build():
        calls.append(1)
        return VALUE

    assert cached("probe", build, packages=("srccache_probe_pkg",)) == VALUE
    assert cached("probe", build, packages=("srccache_probe_pkg",)) == VALUE and len(calls) == 1
    assert (tmp_path / "xdg" / "lowbit-explorer" / "probe.json").is_file()


def test_the_key_covers_the_entry_points():
    group = "lowbit_explorer.schemes"
    assert source_key(("core",), group) == source_key(("core",), group) != source_key(("core",))
