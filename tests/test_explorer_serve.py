"""Serving: beyond localhost only when the user names who may connect, with server-signed session ids;
export names are file names."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("args, needle", [
    (["--host", "0.0.0.0"], "needs --allow-origin"),
    (["--host", "0.0.0.0", "--allow-origin", "*"], "not '*'"),
])
def test_serving_beyond_localhost_needs_named_origins(args: list[str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and needle in r.stderr
    assert r.stderr.count("\n") == 1


def _ws_handshake(host: str, port: int, origin: str, query: str = "") -> int:
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", f"/explorer/ws{query}", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": origin})
    status = c.getresponse().status
    c.close()
    return status


def test_lan_serving_refuses_other_origins_and_made_up_sessions(tmp_path: Path) -> None:
    host = "127.0.0.2"  # a loopback address that is not "localhost": the LAN code path, reachable from here only
    port = _free_port(host)
    env = dict(os.environ, LOWBIT_STORE=str(tmp_path / "runs.sqlite"), PYTHONPATH=str(ROOT))
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "explorer", "--host", host, "--port", str(port),
                             "--allow-origin", f"{host}:{port}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://{host}:{port}/explorer"
        end = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    assert r.status == 200
                    break
            except (OSError, urllib.error.URLError):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                assert time.monotonic() < end, "server did not answer"
                time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as e:  # a session id the client made up
            urllib.request.urlopen(url + "?bokeh-session-id=made-up-by-a-web-page", timeout=30)
        assert e.value.code == 403
        assert _ws_handshake(host, port, "http://evil.example") == 403  # another web page's origin
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_export_names_are_file_names_not_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.train import Run, RunConfig

    from explorer.export import main

    store = str(tmp_path / "s.sqlite")
    run = Run(RunConfig.from_dict({"max_steps": 2, "epochs": 1, "checkpoint": False, "model": {"hidden": [8]}}),
              store=store).start()
    assert run.wait(60) == "done"
    out = tmp_path / "out"
    for bad in ("../x", "a/b", "..", ""):
        argv = ["--store", store, "--runs", str(run.id), "--name", bad, "--out", str(out), "--formats", "svg"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: export name must be a file name") and err.count("\n") == 1, err
    assert not (tmp_path / "x.svg").exists() and not list(tmp_path.glob("**/*.svg"))
    assert main(["--store", store, "--runs", str(run.id), "--name", "ok", "--out", str(out), "--formats", "svg"]) == 0
    assert (out / "ok.svg").exists()


def test_the_sessions_of_a_server_share_one_checked_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new page opens the run store; the sessions of one process share the store the first opened
    (checked once: a training run that grows the file does not make every page read the whole file again),
    while a file put in its place is opened and checked afresh (a corrupt one gives the reason)."""
    import sqlite3

    import core.store.store as store_module
    from core.store.integrity import check_integrity, forget_checks
    from corrupt_store import corrupt_copy, make_real_store
    from explorer import app

    path = make_real_store(tmp_path / "runs.sqlite")
    calls: list[Path] = []

    def counting(conn: sqlite3.Connection, p: Path) -> None:
        calls.append(p)
        check_integrity(conn, p)

    monkeypatch.setattr(store_module, "check_integrity", counting)
    forget_checks()
    first, problem = app._open_store(str(path))
    assert problem is None and len(calls) == 1
    first.conn.execute("CREATE TABLE grown (x)")  # a run's commits, then a checkpoint: the file's size and time move
    first.conn.execute("INSERT INTO grown VALUES (zeroblob(100000))")
    first.conn.commit()
    first.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    again, problem = app._open_store(str(path))
    assert again is first and problem is None and len(calls) == 1
    bad = corrupt_copy(path, tmp_path / "bad.sqlite", "garbled")
    os.replace(bad, path)  # another file at the same path
    gone, problem = app._open_store(str(path))
    assert gone is None and problem is not None and "is corrupt" in problem and len(calls) == 2
