"""Run store: SIGKILL -> interrupted with the logged steps kept, bad and damaged files (quick_check, the CLIs' one
error line), export, live readers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_call import call_main
from corrupt_store import HOW, corrupt_copy, make_real_store

from core.store import RunStore, StoreCorruptError, StoreError, default_store_path, resolve_store_path
from core.store.integrity import check_integrity, forget_checks
from core.store.process import process_start_time
from core.train import ModelConfig, OptimConfig, Run, RunConfig, TelemetryConfig, get_scheme

ROOT = Path(__file__).resolve().parents[1]


def test_sigkill_mid_run_leaves_a_readable_store_and_interrupted_run(tmp_path):
    db = tmp_path / "runs.sqlite"
    script = textwrap.dedent(f"""
        from core.train import Run, RunConfig, TelemetryConfig, get_scheme
        cfg = RunConfig(scheme=get_scheme("mls", first_last=True), epochs=10000, threads=1,
                        telemetry=TelemetryConfig(every=5), checkpoint=False)
        run = Run(cfg, store={str(db)!r}).start()
        run.wait()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        logged = 0
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if not db.exists():
                continue
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    row = c.execute("SELECT COUNT(*) FROM metrics WHERE name='loss'").fetchone()
            except sqlite3.Error:
                continue
            logged = row[0]
            if logged >= 30:
                break
        assert logged >= 30, "the training process logged nothing"
        with RunStore(db) as s:  # opened while the process is alive: still running
            assert list(s.list_runs().status) == ["running"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with RunStore(db) as store:
        runs = store.list_runs()
        assert len(runs) == 1 and runs.status.iloc[0] == "interrupted"
        run_id = runs.run_id.iloc[0]
        sc = store.scalars(run_id)
        assert len(sc) >= logged and list(sc.step) == list(range(len(sc)))  # every logged step, in order
        assert store.metrics(run_id, name="are").shape[0] > 0
        assert "interrupted" in set(store.events(run_id).kind)
        assert store.get_run(run_id)["ended"] is not None


def test_sigterm_ends_a_cli_run_like_ctrl_c_with_a_final_checkpoint(tmp_path):
    db = tmp_path / "runs.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "core.train", "--epochs", "10000", "--hidden", "16",
                             "--telemetry-every", "0", "--store", str(db), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    if (c.execute("SELECT max(step) FROM runs").fetchone()[0] or 0) > 20:
                        break
            except sqlite3.Error:
                continue
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and " stopped: " in out, (out, err[-2000:])
    with RunStore(db) as store:
        run = store.list_runs().iloc[0]
        assert run.status == "stopped"
        assert len(store.checkpoints(run.run_id)) == 1 and store.events(run.run_id).kind.iloc[-1] == "stopped"


def test_not_a_database_and_foreign_database_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(StoreError, match="not a run store"):
        RunStore(junk)
    assert junk.read_bytes() == b"this is not sqlite at all" * 200  # untouched
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(StoreError, match="not a Lowbit run store.*people"):
        RunStore(other)
    with pytest.raises(StoreError, match="is a directory"):
        RunStore(tmp_path)


def test_store_location_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWBIT_STORE", str(tmp_path / "env.sqlite"))
    assert resolve_store_path() == tmp_path / "env.sqlite"
    assert resolve_store_path(tmp_path / "arg.sqlite") == tmp_path / "arg.sqlite"
    monkeypatch.delenv("LOWBIT_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_store_path() == tmp_path / "xdg" / "lowbit-explorer" / "runs.sqlite"
    s = RunStore()
    assert s.path == default_store_path() and s.path.exists()
    with sqlite3.connect(s.path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_readers_and_export(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    cfg = RunConfig(scheme=get_scheme("mls"), model=ModelConfig(hidden=(32, 32)), epochs=2, threads=1,
                    optim=OptimConfig(lr=0.05), telemetry=TelemetryConfig(every=10, shadow=("fp8_e4m3",)))
    run = Run(cfg, store).start()
    assert run.wait(120) == "done"
    info = store.get_run(run.id)
    assert info["config"] == cfg.to_dict() and RunConfig.from_dict(info["config"]) == cfg
    assert info["versions"]["torch"] and info["dataset"] == "digits" and info["scheme"] == "mls"
    m = store.metrics(run.id)
    assert list(m.columns) == ["run_id", "step", "epoch", "layer", "tensor", "fmt", "role", "name", "value"]
    assert set(m.role) == {"", "stat", "live", "shadow", "cost"}  # every run logs its effective BitOPs
    bitops = m[(m.role == "cost") & (m.name == "bitops")].value
    assert len(bitops) > 1 and bitops.is_monotonic_increasing and bitops.iloc[0] > 0
    assert set(store.metrics(run.id, since_step=40).step) <= set(range(40, 46))
    h = store.histograms(run.id, tensor="a")
    assert len(h) and all(len(c) == 112 for c in h.counts) and set(h.kind) == {"x"}
    assert set(store.histograms(run.id, kind=None).kind) == {"x", "q"}
    ev = store.events(run.id)
    assert ev.kind.iloc[0] == "start" and ev.kind.iloc[-1] == "done"
    assert store.checkpoints(run.id).shape[0] == 1 and Path(store.checkpoints(run.id).path.iloc[0]).is_file()
    assert set(store.samples(run.id).tensor) == {"w", "a", "e", "g"}

    csv = store.export(run.id, tmp_path / "csv", "csv")
    assert {p.name for p in csv} == {f"{run.id}_{t}.csv" for t in
                                     ("run", "metrics", "histograms", "events", "layers", "checkpoints")}
    back = pd.read_csv(tmp_path / "csv" / f"{run.id}_metrics.csv", keep_default_na=False)
    assert len(back) == len(m)
    pq = store.export(run.id, tmp_path / "pq", "parquet")
    hp = pd.read_parquet([p for p in pq if p.name.endswith("histograms.parquet")][0])
    hall = store.histograms(run.id, kind=None)
    assert len(hp) == len(hall) and json.loads(hp.counts.iloc[0]) == hall.counts.iloc[0].tolist()
    with pytest.raises(ValueError, match="csv' or 'parquet"):
        store.export(run.id, tmp_path, "xlsx")
    with pytest.raises(StoreError, match="no run"):
        store.get_run("nope")
    store.delete_run(run.id)
    assert store.list_runs().empty and store.metrics(run.id).empty


def test_dead_pid_is_interrupted_live_one_is_not(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    alive = store.create_run({"x": 1})
    dead = store.create_run({"x": 2})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.update_run(dead, pid=proc.pid, pid_start=process_start_time(os.getpid()))
    assert store.mark_interrupted() == [dead]
    st = store.list_runs().set_index("run_id").status
    assert st[alive] == "running" and st[dead] == "interrupted"


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder on a read-only tmpfs (file modes do not stop root; a read-only mount does)."""
    d = tmp_path / "ro"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield d
    finally:
        r = subprocess.run(["umount", str(d)], capture_output=True, text=True)
        assert r.returncode == 0, f"the store left files open on the mount: {r.stderr}"


def test_a_store_on_read_only_media_opens_for_reading(readonly_dir):
    path = readonly_dir / "runs.sqlite"
    with RunStore(path) as s:
        rid = s.create_run({"a": 1}, name="kept")
        s.update_run(rid, status="done", final_test_acc=0.5)
    assert subprocess.run(["mount", "-o", "remount,ro", str(readonly_dir)]).returncode == 0
    with RunStore(path) as s:
        assert s.readonly and list(s.list_runs()["name"]) == ["kept"] and s.get_run(rid)["final_test_acc"] == 0.5
        assert s.readonly_reason == "read-only file system"
        with pytest.raises(sqlite3.OperationalError):
            s.update_run(rid, status="error")  # nothing is written
    r = subprocess.run([sys.executable, "-m", "core.train", "--store", str(path), "--no-progress", "--max-steps", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)  # a writer is refused in one line
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    assert r.stderr == f"error: cannot write the run store {path}: read-only file system\n"
    for cmd in (["-m", "explorer.export", "--list"], ["-m", "core.sweep", "list"]):
        r = subprocess.run([sys.executable, *cmd, "--store", str(path)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stderr == "", r.stderr
    with pytest.raises(StoreError, match="no run store"):
        RunStore(readonly_dir / "missing.sqlite", readonly=True)


@pytest.mark.parametrize("content", [b"junk that is not sqlite", b""])
def test_export_reports_a_bad_store_in_one_line(tmp_path, content):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(content)
    if not content:
        with sqlite3.connect(bad) as c:  # another program's database
            c.execute("CREATE TABLE other (x)")
    r = subprocess.run([sys.executable, "-m", "explorer.export", "--list", "--store", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr


def test_checkpoints_go_to_the_user_data_folder_not_beside_the_store(tmp_path, monkeypatch):
    """``LOWBIT_STORE=~/runs.sqlite`` must not create anything else in ``~``: a run's checkpoints are in the
    user data directory (``$XDG_DATA_HOME/lowbit-explorer/checkpoints/<store id>/<run id>``), or under
    ``$LOWBIT_CHECKPOINTS``; two stores keep their runs apart; the store records the full path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("LOWBIT_CHECKPOINTS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = RunStore(home / "runs.sqlite")
    cfg = RunConfig(model=ModelConfig(hidden=(8,)), epochs=1, max_steps=2, threads=1)
    run = Run(cfg, store).start()
    assert run.wait(120) == "done"
    ck = Path(store.checkpoints(run.id).path.iloc[-1])
    assert ck.is_file() and ck.is_relative_to(tmp_path / "data" / "lowbit-explorer" / "checkpoints" / store.store_id)
    assert {p.name for p in home.iterdir()} <= {"runs.sqlite", "runs.sqlite-wal", "runs.sqlite-shm"}  # nothing else
    assert RunStore(home / "other.sqlite").checkpoint_dir("abc") != store.checkpoint_dir("abc")
    monkeypatch.setenv("LOWBIT_CHECKPOINTS", str(tmp_path / "big-disk"))
    assert store.checkpoint_dir("abc") == tmp_path / "big-disk" / store.store_id / "abc"


def test_training_goes_on_while_another_process_holds_the_write_lock(tmp_path):
    """Rows are buffered while the store is locked, written when it is free again; nothing is lost."""
    db = tmp_path / "runs.sqlite"
    store = RunStore(db)
    cfg = RunConfig(model=ModelConfig(hidden=(16,)), epochs=10000, checkpoint=False, threads=1,
                    telemetry=TelemetryConfig(every=0))
    run = Run(cfg, store=store).start()
    try:
        deadline = time.monotonic() + 60
        while run.step < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        lock = sqlite3.connect(db, timeout=5, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another program holds the write lock ...
        at = run.step
        time.sleep(4.0)  # ... for longer than Run.store_wait several times over
        during = run.step
        lock.execute("COMMIT")
        lock.close()
        assert run.status == "running" and during > at + 50, (at, during)  # kept training
        run.stop()
        assert run.wait(60) == "stopped"
    finally:
        run.stop()
        run.wait(60)
    sc = store.scalars(run.id)
    assert list(sc.step) == list(range(run.step))  # every step's row, in order
    ev = store.events(run.id)
    blocked = [p for k, p in zip(ev.kind, ev.payload) if k == "store_blocked"]
    assert blocked and blocked[0]["seconds"] > 2.0, list(ev.kind)


def test_a_full_disk_is_reported_as_such(tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        r = subprocess.run([sys.executable, "-m", "core.train", "--epochs", "50", "--store", str(d / "runs.sqlite"),
                            "--no-progress", "--set", "checkpoint=false"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
    assert r.returncode == 1 and "error=OperationalError: database or disk is full" in r.stdout, r.stdout
    assert "cannot rollback" not in r.stdout + r.stderr


# ------------------------------------------------------------------ a damaged store file


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    return make_real_store(tmp_path_factory.mktemp("real-store") / "runs.sqlite")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("readonly", [False, True], ids=["rw", "ro"])
def test_a_damaged_store_is_refused_with_a_one_line_reason(real_store, tmp_path, how, readonly):
    bad = corrupt_copy(real_store, tmp_path / f"{how}.sqlite", how)
    before = bad.read_bytes()
    with pytest.raises(StoreCorruptError) as err:
        RunStore(bad, readonly=readonly)
    msg = str(err.value)
    assert msg.startswith(f"run store {bad} is corrupt: ") and "\n" not in msg
    assert "malformed" in msg or "tree page" in msg or "Page " in msg, msg
    assert isinstance(err.value, StoreError)  # every caller that handles StoreError handles this one
    assert bad.read_bytes() == before  # refused before anything was written to it
    with RunStore(real_store) as s:  # the sound original still opens
        assert len(s.list_runs()) == 1


def test_quick_check_problem_rows_become_one_line(tmp_path):
    """quick_check reports problems as rows ('*** in database main *** ...'); the error names the first
    and counts the rest, on one line."""
    class Rows:
        def execute(self, sql):
            assert sql.startswith("PRAGMA quick_check")
            return self

        def fetchall(self):
            return [("*** in database main ***\nOn tree page 7 cell 1: invalid page number 99",), ("Page 9: x",)]

    with pytest.raises(StoreCorruptError, match=r"^run store .* is corrupt: On tree page 7 cell 1: invalid page "
                                                r"number 99 \(and 1 more problem\); move it aside"):
        check_integrity(Rows(), tmp_path / "nope.sqlite")  # type: ignore[arg-type]


def test_the_check_runs_once_per_process_and_file_and_again_when_it_changes(real_store, tmp_path):
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(real_store, copy)
    forget_checks()
    calls = []

    class Counting(sqlite3.Connection):
        def execute(self, sql, *a):
            if "quick_check" in sql:
                calls.append(sql)
            return super().execute(sql, *a)

    def connect(path):
        return sqlite3.connect(path, factory=Counting)

    c = connect(copy)
    check_integrity(c, copy)
    check_integrity(c, copy)
    assert len(calls) == 1  # found sound once: not read again
    corrupt_copy(real_store, copy, "garbled")  # the same path, changed in place
    with pytest.raises(StoreCorruptError):
        check_integrity(connect(copy), copy)
    assert len(calls) == 2


def test_opening_a_50_run_store_stays_fast(real_store, tmp_path):
    """~50 runs of ~1 MB: the first open of a process pays quick_check (tens of ms with a warm page
    cache), later opens skip it."""
    big = tmp_path / "big.sqlite"
    shutil.copyfile(real_store, big)
    with sqlite3.connect(big) as c:
        rid = c.execute("SELECT run_id FROM runs").fetchone()[0]
        tables = {t: [r[1] for r in c.execute(f"PRAGMA table_info({t})")]
                  for t in ("metrics", "histograms", "events", "layers", "samples", "runs")}
        for i in range(49):
            for t, cols in tables.items():
                sel = ", ".join("?" if col == "run_id" else col for col in cols)
                c.execute(f"INSERT INTO {t} ({', '.join(cols)}) SELECT {sel} FROM {t} WHERE run_id=?",
                          (f"copy{i:08d}", rid))
    forget_checks()
    t0 = time.perf_counter()
    with RunStore(big) as s:
        first = time.perf_counter() - t0
        assert len(s.list_runs()) == 50
    t0 = time.perf_counter()
    RunStore(big).close()
    again = time.perf_counter() - t0
    assert first < 2.0 and again < 0.1, (first, again)


def test_every_cli_that_opens_a_store_reports_a_damaged_one_in_one_line(real_store, tmp_path, monkeypatch):
    import panel

    monkeypatch.setattr(panel, "serve", lambda *a, **k: pytest.fail("served a damaged store"))
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "s"\n[base]\nepochs = 1\nmax_steps = 1\n[base.scheme]\nname = "mls"\n'
                     '[grid]\n"scheme.mx" = [1, 2]\n')
    for how in HOW:
        bad = str(corrupt_copy(real_store, tmp_path / f"{how}.sqlite", how))
        for module, argv in [
            ("core.train.__main__", ["--store", bad, "--no-progress", "--max-steps", "1", "--hidden", "4"]),
            ("core.sweep.__main__", ["list", "--store", bad]),
            ("core.sweep.__main__", ["status", "s", "--store", bad]),
            ("core.sweep.__main__", ["stop", "s", "--store", bad]),
            ("core.sweep.__main__", ["run", str(sweep), "--store", bad, "--no-progress"]),
            ("explorer.export", ["--list", "--store", bad]),
            ("explorer.export", ["--last", "1", "--store", bad]),
            ("core.schemes.compare", ["--store", bad, "--only", "fp32", "--epochs", "1"]),
            ("explorer.__main__", ["--store", bad, "--port", "0"]),
        ]:
            code, out, err = call_main(module, argv)
            assert code == 2 and out == "", (module, argv, code, out, err)
            assert err.splitlines() == [err.strip()] and err.startswith(f"error: run store {bad} is corrupt: "), \
                (module, argv, err)


@pytest.mark.parametrize("module", ["core.train", "explorer"])
def test_a_damaged_store_in_a_real_process_is_one_line_and_exit_2(real_store, tmp_path, module):
    bad = corrupt_copy(real_store, tmp_path / "bad.sqlite", "garbled")
    argv = ["--no-progress", "--max-steps", "1"] if module == "core.train" else ["--port", "0"]
    r = subprocess.run([sys.executable, "-m", module, "--store", str(bad), *argv], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"error: run store {bad} is corrupt: ") and r.stderr.count("\n") == 1, r.stderr
