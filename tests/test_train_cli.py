"""CLI: ``python -m core.train`` prints one summary line; bad input exits 2 with one clear message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.store import RunStore
from core.train import __main__ as cli
from core.train.__main__ import build_parser, config_from_args, help_info, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.train", "--store", str(tmp_path / "runs.sqlite"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"LOWBIT_DATA": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_cli_trains_and_prints_one_summary_line(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 2\nthreads = 1\n[scheme]\nname = "mls"\nfirst_last = true\n[telemetry]\nevery = 10\n')
    r = _cli("--config", str(toml), "--set", "scheme.mx=3", "--shadow", "fp8_e4m3", "--lr", "0.05", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    m = re.fullmatch(r"run ([0-9a-f]{12}) done: test_acc=(0\.\d{4}) steps=46 epochs=2 time=[\d.]+s store=.*", lines[0])
    assert m, lines[0]
    assert "step" in r.stderr  # the tqdm bar went to stderr
    run = RunStore(tmp_path / "runs.sqlite").get_run(m.group(1))
    assert run["config"]["scheme"]["mx"] == 3 and run["config"]["telemetry"]["shadow"] == ["fp8_e4m3"]
    assert run["final_test_acc"] == pytest.approx(float(m.group(2)), abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--model", "alexnet"], "unknown model 'alexnet'"),
    (["--scheme", "nope"], "unknown scheme 'nope'"),
    (["--scheme", "custom", "--w", "mls(ex=2"], "cannot parse format"),
    (["--scheme", "fp32", "--ex", "3"], "--ex does not apply to scheme 'fp32'"),
    (["--dataset", "mnist"], "not found in"),
    (["--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path / "data"))
    assert main(["--store", str(tmp_path / "runs.sqlite"), *args]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: ") and message in out.err and out.err.count("\n") == 1
    assert out.out == ""


def test_cli_bad_store_file_in_a_real_process(tmp_path):
    (tmp_path / "runs.sqlite").write_text("not a database " * 100)
    r = _cli(tmp_path=tmp_path)
    assert r.returncode == 2 and "not a run store" in r.stderr and r.stdout == ""


def test_cli_options_map_onto_config():
    args = build_parser().parse_args(["--scheme", "custom", "--w", "fp8_e4m3", "--e-rounding", "stochastic",
                                      "--no-first-last", "--hidden", "64,32", "--epochs", "3", "--download"])
    cfg = config_from_args(args)
    assert cfg.scheme.name == "custom" and cfg.scheme.w == "fp8_e4m3" and cfg.scheme.e_rounding == "stochastic"
    assert cfg.scheme.first_last is False and cfg.model.hidden == (64, 32) and cfg.epochs == 3
    assert cfg.data.download is True


def test_paper_scheme_fields_have_their_own_options():
    """Every field of the papers' schemes is an option (LogBTQ mu/u/k, NITI m_u, CPT b_min ...),
    coerced and validated like --set; a field of another scheme is refused by name."""
    p = build_parser()
    cfg = config_from_args(p.parse_args(["--scheme", "logbtq", "--mu", "100", "--u", "0.2", "--k", "5",
                                         "--codebook", "fp8_143", "--barrier-activations", "true"]))
    s = cfg.scheme
    assert (s.name, s.mu, s.u, s.k, s.codebook, s.barrier_activations) == ("logbtq", 100.0, 0.2, 5, "fp8_143", True)
    assert config_from_args(p.parse_args(["--scheme", "niti", "--m-u", "4"])).scheme.m_u == 4
    assert config_from_args(p.parse_args(["--scheme", "cpt", "--b-min", "4", "--b-max", "6"])).scheme.b_max == 6
    with pytest.raises(ValueError, match="--m-u does not apply to scheme 'mls'"):
        config_from_args(p.parse_args(["--scheme", "mls", "--m-u", "3"]))
    with pytest.raises(ValueError, match="u"):
        config_from_args(p.parse_args(["--scheme", "logbtq", "--u", "0"]))


@pytest.mark.parametrize("args, message", [
    (["--set", "device=cuda"], "CUDA is not available"),
    (["--hidden", "1000000000"], "ModelConfig.hidden must be widths in 1..65536"),
    (["--set", "optim.weight_decay=nan"], "weight_decay must be a finite number"),
    (["--set", "optim.gamma=inf"], "gamma must be a finite number"),
    (["--set", "telemetry.hist_bins=100000000"], "hist_bins must be in 1..4096"),
    (["--scheme", "logbtq", "--u", "nan"], "logbtq.u must be a finite number"),
    (["--scheme", "logbtq", "--lam", "inf"], "logbtq.lam must be a finite number"),
])
def test_values_that_only_fail_later_are_refused_up_front(tmp_path, capsys, args, message):
    if "cuda" in " ".join(args):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    rc = main([*args, "--max-steps", "1", "--store", str(tmp_path / "s.sqlite"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s.sqlite").exists() or RunStore(tmp_path / "s.sqlite").list_runs().empty


def test_a_config_that_is_a_folder_is_bad_input(tmp_path, capsys):
    assert main(["--config", str(tmp_path), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "is a folder, not a TOML file" in capsys.readouterr().err


_HELP_IN_A_FRESH_PROCESS = """
import contextlib, io, sys
from core.train.__main__ import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0, exc.code
sys.stdout.write(f"{'torch' in sys.modules}\\n{out.getvalue()}")
"""


def test_help_answers_before_torch_loads_with_the_live_text(monkeypatch):
    """A fresh process takes the registries' part of --help from the source-keyed cache: no torch, and
    the same text as the parser built from the live registries (the first process may fill the cache)."""
    monkeypatch.setenv("COLUMNS", "100")
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _HELP_IN_A_FRESH_PROCESS], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "COLUMNS": "100"})
        assert r.returncode == 0, r.stderr
    torch_loaded, _, text = r.stdout.partition("\n")
    assert torch_loaded == "False"
    assert text == build_parser().format_help()
    assert "--m-u" in text and "logbtq" in text


def test_the_cli_names_the_schemes_plugin_group():
    from core.train.schemes import PLUGIN_GROUP

    assert cli._PLUGIN_GROUP == PLUGIN_GROUP


def _stale_info() -> cli.HelpInfo:
    info = help_info()
    return {**info, "schemes": info["schemes"][:2], "extra": {k: v for k, v in info["extra"].items() if k != "m_u"}}


def test_a_stale_help_cache_changes_no_result(monkeypatch, capsys):
    """Outside --help the live registries decide: an option the stale cache lacks still parses, and a
    usage error is the live parser's."""
    monkeypatch.setattr(cli, "_loaded", lambda: False)
    monkeypatch.setattr(cli, "_cached_help_info", _stale_info)
    assert main(["--list", "--m-u", "3"]) == 0
    assert "niti" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--epochs"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: argument --epochs: expected one argument (see python -m core.train --help)\n"
