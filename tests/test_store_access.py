"""Run stores that cannot be used as they are: a table rebuilt without a column, a read-only folder or
file, a store path through a regular file, a full disk (a file size limit, which stops root too). The
command lines answer each with one ``error: ...`` line naming the store and what is wrong, exit status 2,
no traceback, and nothing written; a full disk in the middle of a run ends the run as an error with
every committed row still readable.

File modes do not stop root (``id -u`` = 0 in CI containers): the chmod test is skipped for root, and the
same refusals are checked as root by faking ``os.access`` (what the store consults) or by real failures
that no privilege lifts (``NotADirectoryError``, ``RLIMIT_FSIZE``)."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_call import call_main
from corrupt_store import without_column

from core.store import RunStore, StoreError, StoreSchemaError, StoreWriteError
from core.store.integrity import forget_checks, schema_columns

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

SWEEP = ('name = "s"\n[base]\nepochs = 1\nmax_steps = 1\ncheckpoint = false\n[base.model]\nhidden = [4]\n'
         '[base.scheme]\nname = "mls"\nfirst_last = true\n[grid]\n"scheme.mx" = [1, 2]\n')


def _store(path: Path) -> Path:
    """A closed store at ``path`` with one finished run row (its WAL merged into the file)."""
    with RunStore(path) as s:
        rid = s.create_run({"a": 1}, name="kept")
        s.update_run(rid, status="done", final_test_acc=0.5)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (what "nothing written" compares), but a reader's own SQLite
    bookkeeping: the ``-shm`` index and an empty ``-wal`` (a read-only connection in a folder that is really
    writable makes them; none is made in a read-only one)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size):
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def _one_error_line(err: str, start: str) -> None:
    assert err.startswith(start) and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err


_TRAIN = ["--no-progress", "--max-steps", "1", "--hidden", "4"]


def _train(store: Path, *, preexec: Any = None, extra: list[str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "core.train", "--store", str(store), *(extra or _TRAIN)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


# ------------------------------------------------------------------ tables without a column


@pytest.mark.parametrize("table, column", [("runs", "total_steps"), ("metrics", "value"),
                                           ("sweep_cells", "attempts"), ("lowbit_meta", "value")])
@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
def test_a_store_missing_a_column_is_refused_at_open_in_one_line(tmp_path, table, column, readonly):
    bad = without_column(_store(tmp_path / "good.sqlite"), tmp_path / "bad.sqlite", table, column)
    before = bad.read_bytes()
    with pytest.raises(StoreSchemaError) as err:
        RunStore(bad, readonly=readonly)
    msg = str(err.value)
    assert msg.startswith(f"run store {bad} does not match schema version 2: table {table} lacks column {column}")
    assert "\n" not in msg and "move it aside" in msg and isinstance(err.value, StoreError)
    assert bad.read_bytes() == before  # refused before anything was written to it


def test_training_into_a_store_missing_a_column_is_one_line_and_exit_2(tmp_path):
    """Was: the run's worker thread failed at its first write (``no such column: total_steps``), logged
    two tracebacks and the command exited 1 with the run left in the store."""
    bad = without_column(_store(tmp_path / "good.sqlite"), tmp_path / "bad.sqlite", "runs", "total_steps")
    before = _files(tmp_path)
    r = _train(bad)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    _one_error_line(r.stderr, f"error: run store {bad} does not match schema version 2: table runs lacks column "
                              f"total_steps; ")
    assert _files(tmp_path) == before
    code, out, err = call_main("core.sweep.__main__",
                                ["run", str(_sweep(tmp_path)), "--store", str(bad), "--no-progress"])
    assert code == 2 and out == ""
    _one_error_line(err, f"error: run store {bad} does not match schema version 2: table runs lacks column ")


def _sweep(tmp_path: Path) -> Path:
    p = tmp_path / "s.toml"
    if not p.exists():
        p.write_text(SWEEP)
    return p


def test_an_older_store_without_the_column_it_gains_is_still_upgraded(tmp_path):
    """The column check comes after the upgrade: a version-1 store (no ``runs.total_steps``) opens."""
    old = without_column(_store(tmp_path / "good.sqlite"), tmp_path / "v1.sqlite", "runs", "total_steps")
    with sqlite3.connect(old) as c:
        c.execute("UPDATE lowbit_meta SET value='1' WHERE key='schema_version'")
    with RunStore(old) as s:
        assert list(s.list_runs()["name"]) == ["kept"] and "total_steps" in s.list_runs().columns
    with sqlite3.connect(old) as c:
        assert c.execute("SELECT value FROM lowbit_meta WHERE key='schema_version'").fetchone() == ("2",)


def test_a_column_this_code_cannot_fill_is_refused(tmp_path):
    """A store whose ``runs`` has an extra ``NOT NULL`` column without a default takes no new run."""
    db = _store(tmp_path / "s.sqlite")
    with sqlite3.connect(db) as c:
        sql = c.execute("SELECT sql FROM sqlite_master WHERE name='runs'").fetchone()[0]
        cols = ", ".join(schema_columns()["runs"])
        c.execute(sql.replace("CREATE TABLE runs", "CREATE TABLE runs2").rstrip().rstrip(")")
                  + ", owner TEXT NOT NULL)")
        c.execute(f"INSERT INTO runs2 ({cols}, owner) SELECT {cols}, 'me' FROM runs")
        c.execute("DROP TABLE runs")
        c.execute("ALTER TABLE runs2 RENAME TO runs")
    with pytest.raises(StoreSchemaError, match=r"table runs has column owner that must be set and that this code "
                                               r"does not write"):
        RunStore(db)


# ------------------------------------------------------------------ read-only folders and files


@pytest.fixture
def unwritable(monkeypatch):
    """``unwritable(path)``: from now on ``os.access(path, W_OK)`` answers False, as it does for a folder or file
    without write permission (for root, only a read-only mount does; faking it tests the same code path)."""
    real = os.access
    denied: set[Path] = set()

    def access(path: Any, mode: int, *a: Any, **kw: Any) -> bool:
        if mode & os.W_OK and Path(path).absolute() in denied:
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    return lambda p: denied.add(Path(p).absolute())


def _store_folder(tmp_path, exists: bool):
    """A folder ``ro`` with (``exists``) or without a store ``runs.sqlite`` in it: ``(folder, db, its files)``."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "runs.sqlite"
    if exists:
        _store(db)
    return folder, db, _files(folder)


@pytest.mark.parametrize("exists", [True, False], ids=["store-exists", "no-store-yet"])
def test_training_into_a_read_only_folder_is_one_line_and_exit_2(tmp_path, unwritable, exists):
    """Was: an existing store opened read-only and ``Run.start`` died in a traceback (``attempt to write a
    readonly database``); a new one was made regardless of the folder."""
    folder, db, before = _store_folder(tmp_path, exists)
    unwritable(folder)
    code, out, err = call_main("core.train.__main__", ["--store", str(db), *_TRAIN])
    assert code == 2 and out == "", (code, out, err)
    assert err == f"error: cannot write the run store {db}: read-only folder\n"
    assert _files(folder) == before  # nothing made, nothing changed
    code, out, err = call_main("core.sweep.__main__",
                                ["run", str(_sweep(tmp_path)), "--store", str(db), "--no-progress"])
    assert code == 2 and out == "" and err == f"error: cannot write the run store {db}: read-only folder\n"
    assert _files(folder) == before
    if exists:  # the readers still read it
        with RunStore(db) as s:
            assert s.readonly and s.readonly_reason == "read-only folder" and list(s.list_runs()["name"]) == ["kept"]


def test_a_read_only_store_file_opens_for_reading_and_takes_no_run(tmp_path, unwritable):
    """Was: a store file without write permission in a writable folder was refused as ``not a run store``."""
    db = _store(tmp_path / "runs.sqlite")
    unwritable(db)
    from core.train import ModelConfig, Run, RunConfig

    with RunStore(db) as s:
        assert s.readonly and s.readonly_reason == "read-only file" and list(s.list_runs()["name"]) == ["kept"]
        with pytest.raises(StoreWriteError, match=rf"^cannot write the run store {re.escape(str(db))}: read-only "
                                                  r"file$"):
            Run(RunConfig(model=ModelConfig(hidden=(4,)), max_steps=1), store=s).start()
        assert len(s.list_runs()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root (the faked and root-proof tests run)")
@pytest.mark.parametrize("exists", [True, False], ids=["store-exists", "no-store-yet"])
def test_a_chmod_read_only_folder_in_a_real_process(tmp_path, exists):
    folder, db, before = _store_folder(tmp_path, exists)
    folder.chmod(0o555)
    try:
        r = _train(db)
    finally:
        folder.chmod(0o755)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    assert r.stderr == f"error: cannot write the run store {db}: read-only folder\n"
    assert _files(folder) == before


@pytest.mark.parametrize("below", ["runs.sqlite", "sub/runs.sqlite"])
def test_a_store_path_through_a_file_is_one_line_and_exit_2(tmp_path, below):
    """Root-proof: a regular file where a folder of the store's path should be (``NotADirectoryError`` /
    ``FileExistsError`` from making the folder) -- was a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    db = afile / below
    r = _train(db)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    assert r.stderr == f"error: cannot write the run store {db}: {afile} is a file, not a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["afile"] and afile.read_text() == "not a folder\n"
    code, out, err = call_main("core.sweep.__main__",
                                ["run", str(_sweep(tmp_path)), "--store", str(db), "--no-progress"])
    assert code == 2 and out == "" and err == r.stderr


# ------------------------------------------------------------------ a full disk, as a file size limit


def _file_size_limit(nbytes: int) -> Any:
    """A ``preexec_fn`` capping the files the child writes at ``nbytes`` (``RLIMIT_FSIZE``: binds root too; a
    write past it fails with EFBIG, as a full disk fails with ENOSPC, once SIGXFSZ is ignored)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def test_a_full_disk_when_the_store_is_made_is_one_line_and_exit_2(tmp_path):
    """Was: ``error: <path> is not a run store: disk I/O error``."""
    db = tmp_path / "runs.sqlite"
    r = _train(db, preexec=_file_size_limit(8192))
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    _one_error_line(r.stderr, f"error: cannot write the run store {db}: disk I/O error (a write failed: a full "
                              f"disk, or a file size limit)")
    with RunStore(db) as s:  # what SQLite wrote before the failure is no half store: it opens, empty
        assert s.list_runs().empty


def test_a_full_disk_mid_run_ends_the_run_as_an_error_with_its_rows_readable(tmp_path):
    """``test_store_runs.test_a_full_disk_is_reported_as_such`` needs a tmpfs mount (root with CAP_SYS_ADMIN);
    a file size limit fills "the disk" anywhere: the run ends ``error``, the command exits 1 with the
    reason on its one line, no ``cannot rollback``, and the store stays sound and readable."""
    db = tmp_path / "runs.sqlite"
    r = _train(db, preexec=_file_size_limit(256 * 1024),
               extra=["--epochs", "50", "--no-progress", "--set", "checkpoint=false"])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr[-3000:])
    reason = r" error=OperationalError: (disk I/O error|database or disk is full)$"
    assert r.stdout.count("\n") == 1 and " error: " in r.stdout and re.search(reason, r.stdout.strip()), r.stdout
    assert "cannot rollback" not in r.stdout + r.stderr
    forget_checks()
    with RunStore(db) as s:  # quick_check and the column check pass; the dead run is marked
        runs = s.list_runs()
        assert len(runs) == 1 and runs.status.iloc[0] in ("error", "interrupted")
        sc = s.scalars(runs.run_id.iloc[0])
        assert len(sc) > 0 and list(sc.step) == list(range(len(sc)))  # every committed step, in order
        assert s.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
