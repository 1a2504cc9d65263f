"""``python -m explorer.export`` on a store it cannot use: one ``error:`` line naming the store, exit 2,
nothing written to ``--out`` (a store made by a newer version, a damaged copy, a real store file that
another program changed)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from corrupt_store import HOW, corrupt_copy, make_real_store

from core.store import RunStore
from core.store.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = make_real_store(tmp_path_factory.mktemp("real") / "runs.sqlite")
    with RunStore(path, readonly=True) as s:
        return path, str(s.list_runs()["run_id"].iloc[0])


def _export(store: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.export", "--store", str(store), "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def _future(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    c = sqlite3.connect(dst)
    with c:
        c.execute("UPDATE lowbit_meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the change into the file itself, as a newer version leaves it
    c.close()
    return dst


@pytest.mark.parametrize("how", ("future", *HOW))
def test_export_of_an_unusable_store_is_one_error_line_and_writes_nothing(tmp_path, real_store, how):
    src, run_id = real_store
    bad = tmp_path / f"{how}.sqlite"
    if how == "future":
        _future(src, bad)
    else:
        corrupt_copy(src, bad, how)
    before = bad.read_bytes()
    out = tmp_path / "out"
    for args in (["--list"], ["--runs", run_id, "--formats", "html"]):
        r = _export(bad, out, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert str(bad) in r.stderr and "Traceback" not in r.stdout + r.stderr, r.stderr
        if how == "future":
            assert f"schema version {SCHEMA_VERSION + 1}" in r.stderr, r.stderr
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert bad.read_bytes() == before  # refused, not repaired or migrated behind the user's back


def test_export_of_the_intact_store_works(tmp_path, real_store):
    """The control for the test above: the same command on the undamaged store exports the run."""
    src, run_id = real_store
    out = tmp_path / "out"
    r = _export(src, out, "--runs", run_id, "--formats", "html")
    assert r.returncode == 0, r.stderr
    assert any(out.glob("*.html")), list(out.iterdir())
