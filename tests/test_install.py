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


#: prints the requirements of lowbit-explorer (extras left out) that the installed versions do not meet
_UNMET = """
import importlib.metadata as m
from packaging.requirements import Requirement
bad = []
for text in m.requires('lowbit-explorer') or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({'extra': ''}):
        continue
    try:
        version = m.version(req.name)
    except m.PackageNotFoundError:
        bad.append(f'{req} (missing)')
        continue
    if not req.specifier.contains(version, prereleases=True):
        bad.append(f'{req} (have {version})')
print(bad)
"""


def eval_list(text: str) -> list[str]:
    """A printed Python list of strings, read back safely."""
    import ast

    value = ast.literal_eval(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


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
    # what the wheel declares is true: its Python range is the one the code needs (tomllib: 3.11), pyarrow is
    # an extra, not a requirement, and every requirement is met by the versions found
    meta = _run([str(vpy), "-c", "import importlib.metadata as m; d = m.metadata('lowbit-explorer'); "
                 "print(d['Requires-Python']); print(d.get_all('Provides-Extra')); print(d.get_all('Requires-Dist'))"],
                cwd=tmp_path).stdout.split("\n")
    assert meta[0] == ">=3.11", meta[0]
    assert "parquet" in meta[1], meta[1]
    plain = [r for r in eval_list(meta[2]) if "extra ==" not in r]
    assert not any(r.startswith("pyarrow") for r in plain), plain
    assert {r.split(">")[0].split("[")[0].split("<")[0].split("=")[0].strip() for r in plain} >= {
        "torch", "numpy", "numba", "panel", "bokeh", "holoviews", "dask", "platformdirs", "pooch"}, plain
    unmet = _run([str(vpy), "-c", _UNMET], cwd=tmp_path).stdout.strip()
    assert unmet == "[]", unmet
    # without the parquet extra (pyarrow hidden from the venv, ahead of the shared site-packages): csv exports
    # work and a parquet export says which extra to install
    (site / "pyarrow").mkdir()
    (site / "pyarrow" / "__init__.py").write_text("raise ImportError('pyarrow is not installed here')\n")
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
    r = _run([exe, "formats", "show", "fp8_e4m3"], cwd=tmp_path, env=env)  # the formats subcommand
    assert "max                448" in r.stdout, r.stdout
    bad = subprocess.run([exe, "formats", "show", "float(e=11,m=52,bias=-2)"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr
    r = subprocess.run([str(vpy), "-c", "import sys; from core.store import RunStore; s = RunStore(sys.argv[1]); "
                        "rid = s.list_runs()['run_id'].iloc[0]; print(len(s.export(rid, sys.argv[2], 'csv'))); "
                        "s.export(rid, sys.argv[2], 'parquet')", str(store), str(tmp_path / "tables")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and int(r.stdout.split()[0]) >= 5, (r.stdout, r.stderr[-2000:])
    assert "pip install 'lowbit-explorer[parquet]'" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
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
