"""`python -m core.formats show|compare` end to end (subprocess) and in-process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from core.formats.__main__ import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.formats", *args], capture_output=True, text=True,
                          timeout=120)


def test_show_prints_the_numbers():
    p = run("show", "fp8_e4m3")
    assert p.returncode == 0, p.stderr
    assert "max                448" in p.stdout
    assert "min subnormal      0.00195312" in p.stdout
    assert "253 finite values" in p.stdout


def test_show_mls_lists_element_codebook(capsys):
    assert main(["show", "mls(ex=2,mx=1,eg=8,mg=1,group=nc)"]) == 0
    out = capsys.readouterr().out
    assert "0.0, 0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.75" in out
    assert "bits per element   4" in out


def test_compare_table_has_a_row_per_format(capsys):
    assert main(["compare", "fp8_e4m3", "fp8_e5m2", "mu8", "-n", "4096", "--dist", "laplace"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["format", "bits", "ARE"]
    assert [ln.split()[0] for ln in lines[1:]] == ["fp8_e4m3", "fp8_e5m2", "mu8(mu=255.0,range=2.0)"]
    # more mantissa bits -> lower ARE on the same data
    assert float(lines[1].split()[2]) < float(lines[2].split()[2])


def test_compare_reads_npy_and_pt(tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    torch.save({"w": torch.from_numpy(x)}, tmp_path / "x.pt")
    for f in ("x.npy", "x.pt"):
        assert main(["compare", "bf16", "--file", str(tmp_path / f)]) == 0
        assert "bf16" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["show", "fp9"], "unknown format 'fp9'"),
    (["compare", "fp8_e4m3", "--file", "/nonexistent.npy"], "does not exist"),
    (["show", "mls(ex=9)"], "ex=9 is out of range"),
])
def test_bad_input_exits_2_with_a_message(args, msg):
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("argv, needle", [
    (["show", "float(e=11,m=52,bias=-2)"], "beyond float64's range"),
    (["show", "float(e=2,m=0,bias=1100)"], "would round to 0"),
    (["show", "int(bits=\u0668)"], "non-ASCII"),
    (["compare", "fp8_e4m3", "-n", "-5"], "-n must be in"),
])
def test_specs_and_options_beyond_what_works_are_one_line_errors(capsys, argv, needle):
    from core.formats.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path, capsys):
    import os
    import pickle

    from core.formats.__main__ import main

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps(Evil()))
    assert main(["compare", "fp8_e4m3", "--file", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is refused" in err and err.count("\n") == 1, err
    assert not (tmp_path / "pwned").exists()
