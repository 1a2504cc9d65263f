"""``python -m core.schemes.compare``: bad input is one error line (exit 2); the runs go to the run store
(``--store`` / ``$LOWBIT_STORE``), never to stray temporary files."""

from __future__ import annotations

import pytest

from core.schemes.compare import main
from core.store import RunStore


@pytest.mark.parametrize("argv, needle", [
    (["--only", "nothing"], "unknown label(s) nothing"),
    (["--only", ","], "(none given)"),
    (["--dataset", "imagenet"], "unknown dataset(s) imagenet"),
    (["--epochs", "0"], "--epochs must be >= 1"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, needle):
    assert main([*argv, "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err


def test_runs_are_kept_in_the_store_from_the_environment(tmp_path, capsys, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("LOWBIT_STORE", str(path))
    assert main(["--only", "fp32,niti", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "niti" in out
    runs = RunStore(path).list_runs()
    assert sorted(runs["scheme"]) == ["fp32", "niti"] and set(runs["status"]) == {"done"}
