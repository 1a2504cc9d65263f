"""The wheel works outside the checkout: built from the project's own files, installed into a fresh
virtualenv in a temporary folder, it trains a digits run and serves the Explorer (console script
``lowbit-explorer``), with the dataset catalogue shipped inside the package."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(600)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_wheel_installed_outside_the_checkout_trains_and_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w",
          str(dist)], cwd=tmp_path)
    wheels = list(dist.glob("lowbit_explorer-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    vpy = venv / "bin" / "python"
    site = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    # the dependencies (torch, panel ...) come from this environment's site-packages, as a plain path:
    # its .pth files (the checkout's editable install) are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOWBIT_DATA", "LOWBIT_STORE")}
    env["HOME"] = str(tmp_path / "home")
    where = _run([str(vpy), "-c", "import core, explorer; from core.data import catalogue, cache_dir; "
                  "print(core.__file__); print(explorer.__file__); print(len(catalogue())); print(cache_dir('mnist')); "
                  "from explorer.sweeps_state import find_sweeps_dir; "
                  "print(len(list(find_sweeps_dir().glob('*.toml'))))"],
                 cwd=tmp_path, env=env).stdout.split("\n")
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where  # not the checkout
    assert int(where[2]) >= 3  # the catalogue is in the package
    assert where[3].startswith(str(tmp_path / "home" / ".cache" / "lowbit-explorer")), where[3]
    assert int(where[4]) >= 4  # the sweep files are in the package: the Sweeps page can start them
    exe = str(venv / "bin" / "lowbit-explorer")
    store = tmp_path / "runs.sqlite"
    r = _run([exe, "train", "--dataset", "digits", "--epochs", "1", "--max-steps", "5", "--hidden", "16",
              "--store", str(store), "--no-progress"], cwd=tmp_path, env=env)
    assert " done: test_acc=" in r.stdout, r.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([exe, "--port", str(port), "--store", str(store)], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/explorer", timeout=10) as resp:
                    assert resp.status == 200 and b"Lowbit Explorer" in resp.read()
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < end, "the installed Explorer did not answer"
                time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
