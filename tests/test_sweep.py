"""Sweeps: sweep files, their expansion and errors, and grids trained on real Dask clusters
(an embedded LocalCluster, and a ``dask scheduler`` with two ``dask worker`` processes on 127.0.0.1),
with a worker killed mid-sweep, Ctrl-C, and reruns that train nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from core.store import FINAL_STATUSES, CommandKind, RunStore
from core.sweep import SweepError, expand, loads, run

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DASK = str(Path(PY).with_name("dask"))

BASE = """
name = "{name}"
[base]
epochs = {epochs}
max_steps = {steps}
checkpoint = false
[base.model]
name = "mlp"
hidden = [16]
[base.scheme]
name = "mls"
first_last = true
[base.telemetry]
every = 5
sample_every = 0
"""


def sweep_text(name: str, grid: str, steps: int = 4, extra: str = "") -> str:
    epochs = steps // 23 + 1  # digits: 23 steps of 64 per epoch
    return BASE.format(name=name, steps=steps, epochs=epochs) + extra + "\n[grid]\n" + grid


def write(tmp: Path, name: str, grid: str, steps: int = 4, extra: str = "") -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(sweep_text(name, grid, steps, extra))
    return p


def cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "core.sweep", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env or dict(os.environ))


# ------------------------------------------------------------------ files and expansion
def test_grid_include_exclude_expand_like_table3() -> None:
    """[grid] axes cross every [[include]] section that does not set them; duplicates are one cell."""
    text = sweep_text("t3", '"scheme.mx" = [4, 3, 2, 1]', extra="""
[[include]]
"scheme.group" = ["none", "c", "n", "nc"]
"scheme.mg" = 0
"scheme.ex" = 0
[[include]]
"scheme.group" = "nc"
"scheme.mg" = 1
"scheme.ex" = [0, 1, 2]
[[include]]
"scheme.group" = "none"
"scheme.mg" = 0
"scheme.ex" = [0, 1, 2, 3]
[[exclude]]
"scheme.group" = "nc"
"scheme.ex" = 2
"scheme.mx" = 1
""")
    spec = loads(text, "t3.toml")
    cells = expand(spec)
    coords = [(c.coords["scheme.group"], c.coords["scheme.mg"], c.coords["scheme.ex"], c.coords["scheme.mx"])
              for c in cells]
    # 4 + 3 + 4 rows minus the repeated (none, ex 0) row = 10 rows x 4 Mx, minus one excluded cell
    assert len(cells) == 10 * 4 - 1 and len(set(coords)) == len(coords)
    assert ("nc", 1, 2, 1) not in coords and ("nc", 1, 2, 2) in coords
    none_rows = {(g, e) for g, _, e, _ in coords if g == "none"}
    assert none_rows == {("none", 0), ("none", 1), ("none", 2), ("none", 3)}
    c = cells[0]
    assert c.config.scheme.mx == c.coords["scheme.mx"] and c.config.scheme.group == c.coords["scheme.group"]
    assert len({c.key for c in cells}) == len(cells)  # the key is the config's identity
    assert spec.default_axes == ("scheme.mx", "scheme.group")


def test_scheme_tables_are_one_axis_with_labels() -> None:
    text = sweep_text("fmt", 'scheme = [{name = "custom", w = "fp8_e4m3", a = "fp8_e4m3", label = "fp8"}, '
                             '{name = "niti"}]\nseed = [0, 1]')
    cells = expand(loads(text))
    assert [c.config.scheme.name for c in cells] == ["custom", "custom", "niti", "niti"]
    assert cells[0].label == "scheme=fp8, seed=0" and cells[2].label == "scheme=niti, seed=0"


def test_a_scheme_table_of_the_base_scheme_changes_only_its_own_fields() -> None:
    text = sweep_text("merge", 'scheme = [{name = "mls", ex = 1, label = "ex1"}, {name = "niti"}]').replace(
        'name = "mls"\nfirst_last = true', 'name = "mls"\nfirst_last = true\nmx = 3')
    cells = expand(loads(text))
    mls, niti = cells[0].config.scheme, cells[1].config.scheme
    assert (mls.ex, mls.mx, mls.first_last) == (1, 3, True)  # mx and first_last from [base.scheme]
    assert niti.name == "niti"


def test_sweep_errors_name_the_section_and_hint_at_quoting() -> None:
    with pytest.raises(SweepError, match=r'quote dotted keys \("scheme.mx" = \[...\]\)'):
        loads(BASE.format(name="q", steps=4, epochs=1) + "\n[grid]\nscheme.mx = [1, 2]\n", "q.toml")
    text = sweep_text("sec", '"scheme.mx" = [1, 2]', extra='\n[[include]]\nscheme = {name = "fp32"}\n')
    with pytest.raises(SweepError, match=r"\[\[include\]\] section 1: scheme.mx"):
        expand(loads(text, "sec.toml"))


@pytest.mark.parametrize("grid, extra, needle", [
    ('"scheme.nope" = [1]', "", "scheme.nope"),
    ('"optim.lr" = ["x"]', "", "optim.lr"),
    ('"scheme.mx" = [99]', "", "scheme.mx"),
    ('"data.name" = ["imagenet"]', "", "imagenet"),
    ('"epochs" = []', "", "epochs"),
    ('"epochs" = 3', "", "must be a list"),
    ("", "", "empty grid"),
    ('"seed" = [0', "", "not valid TOML"),
    ('"seed" = [0]', 'metric = "nope"\n', None),
])
def test_bad_sweeps_fail_before_anything_runs_naming_key_and_line(tmp_path: Path, grid: str, extra: str,
                                                                  needle: str | None) -> None:
    text = sweep_text("bad", grid)
    if extra:
        text = extra + text
    with pytest.raises(SweepError) as e:
        expand(loads(text, "bad.toml"))
    msg = str(e.value)
    assert msg.startswith("bad.toml: ") and "\n" not in msg
    assert needle is None or needle in msg, msg
    if needle in ("scheme.nope", "optim.lr", "scheme.mx", "epochs"):
        assert "(line " in msg
    p = tmp_path / "bad.toml"
    p.write_text(text)
    r = cli("run", str(p), "--store", str(tmp_path / "s.sqlite"), "--no-progress")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "s.sqlite").exists() or RunStore(tmp_path / "s.sqlite").list_runs().empty


def test_unreachable_scheduler_is_a_clear_error_within_10_s(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    p = write(tmp_path, "lost", '"seed" = [0]')
    t0 = time.monotonic()
    r = cli("run", str(p), "--scheduler", f"tcp://127.0.0.1:{port}", "--store", str(tmp_path / "s.sqlite"),
            "--no-progress")
    took = time.monotonic() - t0
    assert r.returncode == 2 and "error: cannot reach the Dask scheduler" in r.stderr, r.stderr
    # the 6 s connect timeout + the interpreter's start: 8-9 s quiet; the slack is for a loaded machine (the start
    # alone took 8 s beside a CPU hog)
    assert r.stderr.count("\n") == 1 and took < 6 + 10, took


# ------------------------------------------------------------------ local cluster
def test_local_cluster_sweep_of_8_cells_then_a_rerun_trains_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    p = write(tmp_path, "eight", '"scheme.mx" = [1, 2, 3, 4]\nseed = [0, 1]')
    res = run(p, store=store, workers=2)
    assert res.status == "done" and res.trained == 8 and res.counts == {"done": 8}
    cells = store.sweep_cells("eight")
    runs = store.list_runs()
    assert len(runs) == 8 and set(cells["run_id"]) == set(runs["run_id"])
    assert (runs["status"] == "done").all() and (runs["step"] == 4).all()
    for c in cells.itertuples():  # every cell is an ordinary run, tagged with its sweep and coordinates
        assert store.sweep_of_run(c.run_id) == ("eight", c.coords)
        cfg = store.get_run(c.run_id)["config"]
        assert cfg["scheme"]["mx"] == c.coords["scheme.mx"] and cfg["seed"] == c.coords["seed"]
    pids = {store.get_run(r)["pid"] for r in runs["run_id"]}
    assert os.getpid() not in pids and len(pids) == 2  # trained in the two worker processes
    before = store.get_sweep("eight")
    again = run(p, store=store, workers=2)
    assert again.trained == 0 and again.status == "done" and len(store.list_runs()) == 8
    after = store.get_sweep("eight")  # a rerun that trains nothing keeps the record of the training
    assert (after["started"], after["ended"], after["engine"]) == (before["started"], before["ended"], before["engine"])
    assert before["engine"] == "local (2 workers)" and before["source"] == str(p.resolve())
    r = cli("status", "eight", "--store", str(store.path))
    assert r.returncode == 0 and sum(" done " in line for line in r.stdout.splitlines()[3:]) == 8, r.stdout
    r = cli("list", "--store", str(store.path))
    assert r.returncode == 0 and "eight  done  8/8 done" in r.stdout, r.stdout


def test_failed_and_diverged_cells_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    # diverge_loss 0.01: the first loss is above it, so those cells diverge at step 0
    p = write(tmp_path, "mixed", '"diverge_loss" = [0.01, 100.0]\n"scheme.mx" = [1, 2]')
    res = run(p, store=store, workers=2)
    cells = store.sweep_cells("mixed")
    div = cells[[c["diverge_loss"] == 0.01 for c in cells["coords"]]]
    assert (div["status"] == "diverged").all() and len(div) == 2
    assert (cells.loc[~cells.index.isin(div.index), "status"] == "done").all()
    assert res.status == "done" and res.counts == {"diverged": 2, "done": 2}


def test_ctrl_c_stops_running_cells_cleanly_and_a_rerun_finishes_the_grid(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    p = write(tmp_path, "stopme", '"scheme.mx" = [1, 2, 3, 4]', steps=200_000)
    proc = subprocess.Popen([PY, "-m", "core.sweep", "run", str(p), "--workers", "2", "--store", str(path),
                             "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            if path.exists():
                with RunStore(path) as st:
                    if len(st.list_runs()) and (st.list_runs()["step"] > 5).sum() >= 2:
                        break
            time.sleep(0.3)
        else:
            raise AssertionError("two cells never got going")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "sweep stopme stopped" in out, (out + err)[-2000:]
    with RunStore(path) as st:
        runs = st.list_runs()
        assert set(runs["status"]) == {"stopped"} and len(runs) == 2
        cells = st.sweep_cells("stopme")
        assert sorted(cells["status"]) == ["created", "created", "stopped", "stopped"]
        assert st.get_sweep("stopme")["status"] == "stopped"
    r = cli("status", "stopme", "--store", str(path))
    assert r.returncode == 0 and "nan" not in r.stdout and r.stdout.count("created") == 2, r.stdout
    with RunStore(path) as st:
        for rid in runs["run_id"]:
            assert st.events(rid)["kind"].iloc[-1] == "stopped"  # ended through the run's own path
    from core.sweep.runner import _todo

    with RunStore(path) as st:  # running it again trains the stopped and the unstarted cells, nothing else
        assert len(_todo(expand(loads(p.read_text())), st.sweep_cells("stopme"), rerun_failed=False)) == 4


def test_sigterm_stops_a_sweep_like_ctrl_c_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    """``kill PID`` (a service manager, a batch system's time limit) ends ``python -m core.sweep run`` as Ctrl-C
    does: the running cell ends ``stopped`` through its run's own path, the unstarted ones stay ``created``,
    the sweep is ``stopped``, the store passes its checks, and running the same sweep again trains the rest."""
    import sqlite3

    from core.store.integrity import check_schema, forget_checks

    path = tmp_path / "s.sqlite"
    p = write(tmp_path, "term", '"scheme.mx" = [1, 2, 3]', steps=200)  # 2-4 s a cell: the rerun stays short
    cmd = [PY, "-m", "core.sweep", "run", str(p), "--workers", "1", "--store", str(path), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        going: list[str] = []
        end = time.monotonic() + 120
        while not going and time.monotonic() < end:
            if path.exists():
                try:
                    with sqlite3.connect(path, timeout=5) as c:
                        going = [r for (r,) in c.execute("SELECT run_id FROM runs WHERE status='running' "
                                                         "AND step >= 2")]
                except sqlite3.Error:
                    pass
            time.sleep(0.1)
        assert going, "no cell got going"
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "sweep term stopped" in out, (out + err)[-3000:]
    assert took < 30, took  # the cell stops at its next step; then the cluster closes
    assert "Traceback" not in err, err[-3000:]
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        check_schema(c, path)
    forget_checks()
    with RunStore(path) as st:  # opens (quick_check) and marks nothing: no process of the sweep is left
        runs = st.list_runs().set_index("run_id")
        assert all(runs.loc[r, "status"] == "stopped" for r in going), runs[["status", "step"]]
        assert set(runs["status"]) == {"stopped"}  # no run left 'running' (nor 'interrupted')
        for rid in going:
            assert st.events(rid)["kind"].iloc[-1] == "stopped"  # ended through the run's own path
        cells = st.sweep_cells("term")
        assert set(cells["status"]) <= {"stopped", "created"} and (cells["status"] == "stopped").sum() == len(going)
        assert st.get_sweep("term")["status"] == "stopped"
        todo = int((cells["status"] != "done").sum())
    with RunStore(path) as st:  # the same sweep again (in this process: no second interpreter start)
        res = run(p, store=st, workers=1)
        assert res.status == "done" and res.trained == todo and res.counts == {"done": 3}
        cells = st.sweep_cells("term")
        assert (cells["status"] == "done").all() and set(cells["run_id"]).isdisjoint(going)
        assert st.get_sweep("term")["status"] == "done"


# ------------------------------------------------------------------ a real cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (stopped afterwards)."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        f = open(logs / f"{name}.log", "wb")
        pr = subprocess.Popen([DASK, *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(pr)
        return pr

    start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    workers = [start(f"worker{i}", "worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                     "--host", "127.0.0.1", "--name", f"w{i}") for i in range(2)]
    from distributed import Client

    deadline = time.monotonic() + 60
    client = None
    while time.monotonic() < deadline:
        try:
            client = Client(addr, timeout=5, set_as_default=False)
            client.wait_for_workers(2, timeout=max(1, deadline - time.monotonic()))
            break
        except (OSError, TimeoutError):
            time.sleep(0.5)
    assert client is not None, (logs / "scheduler.log").read_text()
    client.close()
    try:
        yield {"address": addr, "workers": workers, "logs": logs}
    finally:
        for pr in reversed(procs):
            if pr.poll() is None:
                os.killpg(pr.pid, signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(pr.pid, signal.SIGKILL)


def test_a_2x2_sweep_on_a_dask_scheduler_with_two_workers(tmp_path: Path, cluster: dict[str, Any]) -> None:
    path = tmp_path / "s.sqlite"
    p = write(tmp_path, "remote", '"scheme.mx" = [1, 2]\nseed = [0, 1]')
    r = cli("run", str(p), "--scheduler", cluster["address"], "--store", str(path), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sweep remote done: 4 cells trained" in r.stdout
    with RunStore(path) as st:
        runs = st.list_runs()
        assert len(runs) == 4 and (runs["status"] == "done").all()
        assert len({st.get_run(x)["pid"] for x in runs["run_id"]}) == 2  # both workers trained
    r = cli("run", str(p), "--scheduler", cluster["address"], "--store", str(path), "--no-progress")
    assert r.returncode == 0 and "0 cells trained" in r.stdout, r.stdout
    with RunStore(path) as st:
        assert len(st.list_runs()) == 4


def test_a_worker_killed_mid_sweep_loses_nothing(tmp_path: Path, cluster: dict[str, Any]) -> None:
    path = tmp_path / "s.sqlite"
    p = write(tmp_path, "kill", '"scheme.mx" = [1, 2, 3]\nseed = [0, 1]', steps=1500)
    proc = subprocess.Popen([PY, "-m", "core.sweep", "run", str(p), "--scheduler", cluster["address"], "--store",
                             str(path), "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        end = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < end:
            if path.exists():
                with RunStore(path) as st:
                    runs = st.list_runs()
                    going = runs[(runs["status"] == "running") & (runs["step"] > 5)]
                    if len(going):
                        victim, victim_run = int(going["pid"].iloc[0]), str(going["run_id"].iloc[0])
            time.sleep(0.2)
        assert victim is not None, "no cell got going"
        os.kill(victim, signal.SIGKILL)  # the worker process training a cell
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    with RunStore(path) as st:
        cells = st.sweep_cells("kill")
        assert len(cells) == 6 and cells["status"].isin(FINAL_STATUSES).all(), cells[["status", "error"]]
        assert (cells["status"] == "done").sum() >= 5, cells[["status", "error", "attempts"]]
        runs = st.list_runs()
        # the run that worker process was training when it was killed (the one seen going, unless it had
        # just finished and the worker had taken the next cell) is interrupted, the others it trained done
        mine = runs[runs["pid"] == victim]
        assert list(mine["status"]).count("interrupted") == 1 and set(mine["status"]) <= {"done", "interrupted"}
        assert runs.set_index("run_id").loc[victim_run, "status"] in ("interrupted", "done")
        # the killed cell was trained again on a surviving worker (Dask rescheduled it) or recorded as lost
        cell = cells[cells["attempts"] > 1]
        assert len(cell) <= 1
        for r in cells.itertuples():
            assert r.status == "done" or r.error
        assert st.get_sweep("kill")["status"] == "done"
    assert proc.returncode in (0, 1), err[-3000:]


# ------------------------------------------------------------------ the control channel
def test_a_run_obeys_commands_written_into_the_store(tmp_path: Path) -> None:
    from core.data import DataConfig
    from core.models import ModelConfig
    from core.train import Run, RunConfig, TelemetryConfig, get_scheme

    store = RunStore(tmp_path / "s.sqlite")
    cfg = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(name="mlp", hidden=(16,)),
                    scheme=get_scheme("mls", first_last=True), telemetry=TelemetryConfig(every=0), epochs=500,
                    checkpoint=False)
    run = Run(cfg, store=store).start()
    try:
        end = time.monotonic() + 60
        while run.step < 3 and time.monotonic() < end:
            time.sleep(0.02)
        seq = store.send_command(run.id, CommandKind.UPDATE, {"changes": {"scheme.mx": 3, "optim.lr": 0.05}})
        bad = store.send_command(run.id, CommandKind.UPDATE, {"changes": {"model.hidden": "8"}})
        t0 = time.monotonic()
        while not store.command(bad).get("acked") and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        assert time.monotonic() - t0 < 1.0  # answered within a second
        ans = store.command(seq)
        assert ans["result"].startswith("applied") and store.command(bad)["result"].startswith("rejected")
        while run.config.scheme.mx != 3 and time.monotonic() < end:
            time.sleep(0.02)
        assert run.config.scheme.mx == 3 and run.config.optim.lr == 0.05
        store.send_command(run.id, CommandKind.PAUSE)
        while run.status != "paused" and time.monotonic() < end:
            time.sleep(0.02)
        at = run.step
        time.sleep(0.3)
        assert run.status == "paused" and run.step == at
        store.send_command(run.id, CommandKind.RESUME)
        while run.step == at and time.monotonic() < end:
            time.sleep(0.02)
        store.send_command(run.id, CommandKind.STOP)
        assert run.wait(30) == "stopped"
    finally:
        run.stop()
        run.wait(30)
    kinds = list(store.events(run.id)["kind"])
    assert "update" in kinds and "pause" in kinds and "resume" in kinds and kinds[-1] == "stopped"


@pytest.mark.parametrize("grid", ['"data.train_subset" = [16]\nbatch_size = [8]',
                                  'batch_size = [8]\n"data.train_subset" = [16]'])
def test_a_cells_keys_are_checked_together_whatever_their_order(grid):
    """A check across fields (a training subset smaller than one batch) sees the whole cell: a subset of 16
    with batch 8 is valid in either key order; the same subset with the base's batch of 64 is refused."""
    base = "name = \"order\"\n[base]\nbatch_size = 64\nepochs = 1\n[grid]\n"
    cells = expand(loads(base + grid, "order.toml"))
    assert [(c.config.batch_size, c.config.data.train_subset) for c in cells] == [(8, 16)]
    with pytest.raises(SweepError, match="fewer than one batch"):
        expand(loads(base + '"data.train_subset" = [16, 100]', "order.toml"))
