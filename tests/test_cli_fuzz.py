"""Command-line fuzzing: every ``python -m`` CLI answers a malformed command line with exit status 2 and
exactly one stderr line starting with ``error: `` (no usage dump, no traceback).

Each CLI's ``main(argv)`` is called in-process (fast); a few lines per CLI also run as real processes
to check the exit status and stderr end to end. The lines are systematic (every option with each
bad value of its kind: missing, wrong type, NaN/inf, negative, huge, non-ASCII, bad spec strings,
missing paths, folders for files, unknown options, values given to flags) and random
(hypothesis: a valid prefix plus one guaranteed-bad item plus noise). Every generated line is
invalid by construction, so a CLI that trained, served or printed a result fails the test.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import random
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

#: CLI name -> module whose ``main(argv)`` it is
MODULES = {
    "core.train": "core.train.__main__",
    "core.formats": "core.formats.__main__",
    "core.sweep": "core.sweep.__main__",
    "core.cost": "core.cost.__main__",
    "core.schemes.compare": "core.schemes.compare",
    "explorer.export": "explorer.export",
    "explorer": "explorer.__main__",
}

#: lines per CLI at most (the test file runs in well under a minute on a loaded 2-core machine)
MAX_LINES = 700
NON_ASCII = ("ü", "日本", "\u202e", "é\u0301", "🙂")
BAD_INT = ("", "x", "1.5", "nan", "inf", "-inf", "1e3", "0x10", "ü", "--", "9" * 5000)
BAD_POS_INT = BAD_INT + ("0", "-1", "-99999999999999999999")
BAD_FLOAT = ("", "x", "nan", "inf", "-inf", "1e999", "-1e999", "ü", "1,5", "0x1p")
BAD_POS_FLOAT = BAD_FLOAT + ("0", "-1", "-0.5")
BAD_NAME = ("nope", "ü", "", " ", "digits\n", "../x", "DIGITS ", "🙂")
BAD_SPEC = ("fp8_e9m9", "mls(ex=", "mls(ex=99)", "mx(elem=)", "((((", "ü", "fp8_e4m3(", "int(bits=0)",
            "mls(ex=nan)", "mu8(mu=-1)", "mls(group=hw)")


class Paths:
    """Bad paths made in a temporary folder: missing files, folders given for files, garbage files."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.folder = tmp / "a-folder"
        self.folder.mkdir(exist_ok=True)
        self.garbage = tmp / "garbage.bin"
        self.garbage.write_bytes(bytes(range(256)) * 8)
        self.text = tmp / "not-a-db.sqlite"
        self.text.write_text("hello " * 500)
        self.bad_toml = tmp / "bad.toml"
        self.bad_toml.write_text("[[[ not toml = \n")
        self.wrong_toml = tmp / "wrong.toml"
        self.wrong_toml.write_text("epochs = 'many'\n[bogus]\nx = 1\n")
        self.missing = tmp / "missing" / "nope.toml"
        self.sweep = tmp / "ok-sweep.toml"
        self.sweep.write_text('name = "fuzz"\n[base]\nepochs = 1\nmax_steps = 1\n[base.model]\nhidden = [4]\n'
                              '[base.scheme]\nname = "mls"\nfirst_last = true\n[grid]\n"scheme.mx" = [1]\n')
        self.bad_sweep = tmp / "bad-sweep.toml"
        self.bad_sweep.write_text('name = "fuzz"\n[grid]\n"scheme.nope" = [1]\n')

    def files(self) -> list[str]:
        """Values that are bad wherever a readable file is expected."""
        return [str(self.missing), str(self.folder), str(self.garbage), str(self.tmp / "ü" / "ä.toml"), ""]

    def stores(self) -> list[str]:
        """Values that are bad wherever a store file is expected."""
        return [str(self.folder), str(self.garbage), str(self.text)]


def _catalogue(p: Paths) -> dict[str, tuple[list[str], list[list[str]]]]:
    """CLI -> (a valid prefix, bad items). Each bad item makes any line that contains it invalid."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    files, stores = p.files(), p.stores()

    def opt(flag: str, values: Any) -> list[list[str]]:
        """``flag value`` for every value, and the first two as ``flag=value``."""
        return [[flag, v] for v in values] + [[f"{flag}={v}"] for v in values[:2]]

    common = [["--bogus"], ["-x"], ["--" + NON_ASCII[0]], ["junk-positional"], [NON_ASCII[1]], ["--store"]]

    # python -m core.train
    train: list[list[str]] = list(common)
    for flag in ("--epochs", "--batch-size", "--train-subset", "--test-subset", "--max-steps", "--threads"):
        train += opt(flag, BAD_POS_INT) + [[flag]]
    train += [["--threads", "100000"], ["--epochs", "1", "--threads", "9" * 25]]
    for flag in ("--telemetry-every",):
        train += opt(flag, BAD_INT + ("-1",))
    for flag in ("--seed",):
        train += opt(flag, BAD_INT + ("9" * 30, "-" + "9" * 30))
    for flag in ("--lr", "--width"):
        train += opt(flag, BAD_POS_FLOAT)
    train += opt("--width", ("1000",)) + opt("--momentum", BAD_FLOAT + ("-1", "1", "2"))
    train += opt("--weight-decay", BAD_FLOAT + ("-1",))
    for flag in ("--dataset", "--model", "--scheme", "--optimizer", "--schedule"):
        train += opt(flag, BAD_NAME)
    train += opt("--hidden", ("", "x", "0", "-1", "1.5", "9" * 30, "70000", "ü", ",,", "nan"))
    train += opt("--shortcut", ("C", "", "ü"))
    for flag in ("--ex", "--mx", "--eg", "--mg"):
        train += [["--scheme", "mls", flag, v] for v in BAD_INT + ("-1", "99", "9" * 30)]
    train += [["--scheme", "mls", "--group", v] for v in ("hw", "", "ü", "nc,c")]
    train += [["--scheme", "mls", "--rounding", v] for v in ("round", "", "ü")]
    train += [["--scheme", "custom", f"--{t}", v] for t in ("w", "a", "e", "g") for v in BAD_SPEC]
    train += [["--scheme", "fp32", "--ex", "2"], ["--scheme", "mls", "--w", "fp8_e4m3"], ["--mu", "3"]]
    train += [["--scheme", "logbtq", "--mu", v] for v in ("nan", "-1", "x", "inf")]
    train += [["--scheme", "logbtq", "--codebook", v] for v in BAD_SPEC[:4]]
    train += [["--shadow", v] for v in BAD_SPEC]
    train += [["--set", v] for v in ("noequals", "bogus.key=1", "epochs=x", "scheme.ex=nan", "=", "optim.lr=-1",
                                     "optim.lr=nan", "scheme.name=nope", "data.name=ü", "model.hidden=0",
                                     "telemetry.shadow=fp8_e9m9", "epochs=1e999", "batch_size=-5", "seed=x")]
    train += [["--config", v] for v in files + [str(p.bad_toml), str(p.wrong_toml)]]
    train += [["--store", v] for v in stores]
    train += [["--dataset", "mnist", "--data-root", v] for v in (str(p.folder), str(p.garbage), str(p.missing))]
    train += [["--download=yes"], ["--first-last", "--no-first-last"], ["--no-progress=1"]]
    out["core.train"] = (["--no-progress", "--epochs", "1", "--max-steps", "1", "--hidden", "4"], train)

    # python -m core.formats
    fmts: list[list[str]] = [["show"], ["compare"], ["bogus"], [], [NON_ASCII[0]], ["show", "--bogus", "fp8_e4m3"]]
    fmts += [["show", s] for s in BAD_SPEC]
    fmts += [["show", "fp8_e4m3", "--codes", v] for v in BAD_INT + ("-1",)]
    fmts += [["compare", s] for s in BAD_SPEC] + [["compare", "fp8_e4m3", s] for s in BAD_SPEC[:4]]
    fmts += [["compare", "fp8_e4m3", "-n", v] for v in BAD_POS_INT + ("9" * 30, str(1 << 29))]
    fmts += [["compare", "fp8_e4m3", "--scale", v] for v in BAD_POS_FLOAT]
    fmts += [["compare", "fp8_e4m3", "--seed", v] for v in BAD_INT + ("-1", "9" * 30)]
    fmts += [["compare", "fp8_e4m3", "--dist", v] for v in BAD_NAME]
    fmts += [["compare", "fp8_e4m3", "--rounding", v] for v in BAD_NAME]
    fmts += [["compare", "fp8_e4m3", "--file", v] for v in files + [str(p.text), str(p.tmp / "x.npy")]]
    out["core.formats"] = ([], fmts)

    # python -m core.sweep
    sw: list[list[str]] = [[], ["bogus"], [NON_ASCII[0]], ["run"], ["plan"], ["status"], ["stop"], ["list", "x"]]
    sw += [["run", v] for v in files + [str(p.bad_toml), str(p.bad_sweep), str(p.wrong_toml)]]
    sw += [["plan", v] for v in files + [str(p.bad_toml), str(p.bad_sweep)]]
    sw += [["run", str(p.sweep), "--workers", v] for v in BAD_POS_INT + ("100000", "9" * 30)]
    sw += [["run", str(p.sweep), "--store", v] for v in stores]
    sw += [[c, "nope-sweep", "--store", str(p.tmp / "empty.sqlite")] for c in ("status", "stop")]
    sw += [[c, "x", "--store", v] for c in ("status", "stop") for v in stores]
    sw += [["list", "--store", v] for v in stores]
    sw += [["status", "x", "--metric"], ["run", str(p.sweep), "--bogus"], ["list", "--store"]]
    out["core.sweep"] = ([], sw)

    # python -m core.cost
    cost: list[list[str]] = [[], ["--batch", "1"], *([[m] for m in BAD_NAME if m])]
    for flag in ("--batch", "--classes"):
        cost += [["mlp", flag, v] for v in BAD_POS_INT + ("9" * 30,)]
    cost += [["mlp", "--width", v] for v in BAD_POS_FLOAT + ("1000",)]
    cost += [["mlp", "--input", v] for v in ("", "x", "0", "-1,2", "3,32,x", "1.5", "9" * 30, "ü", ",")]
    cost += [["mlp", "--set", v] for v in ("x", "nope=1", "fp8_mul=x", "fp8_mul=nan", "fp8_mul=-1", "=", "fp8_mul")]
    cost += [["mlp", "--shortcut", "C"], ["mlp", "--energy=1"], ["mlp", "extra"]]
    out["core.cost"] = ([], cost)

    # python -m core.schemes.compare
    cmp_: list[list[str]] = list(common)
    cmp_ += [["--epochs", v] for v in BAD_POS_INT] + [["--hidden", v] for v in BAD_POS_INT + ("70000",)]
    cmp_ += [["--seed", v] for v in BAD_INT + ("9" * 30,)]
    cmp_ += [["--train-subset", v] for v in BAD_POS_INT]
    cmp_ += [["--dataset", v] for v in BAD_NAME] + [["--only", v] for v in ("nope", ",", "", "ü", "mls,nope")]
    cmp_ += [["--store", v] for v in stores]
    cmp_ += [["--dataset", "mnist", "--root", v, "--only", "fp32", "--epochs", "1"]
             for v in (str(p.folder), str(p.garbage), str(p.missing))]
    out["core.schemes.compare"] = ([], cmp_)

    # python -m explorer.export (after the prefix --store <an empty store>)
    ex: list[list[str]] = list(common) + [[]]
    ex += [["--store", v, "--list"] for v in stores] + [["--store", v] for v in stores]
    ex += [["--last", v] for v in BAD_INT + ("-1", "0")] + [["--last=" + v] for v in ("", "x", "-5")]
    ex += [["--smooth", v] for v in BAD_INT + ("0", "-3")]
    ex += [["--runs", v] for v in ("nope", "ü", "", "'", "%", "_", "--")] + [["--runs"]]
    ex += [["--formats", v] for v in ("gif", "", "ü", "PNG ", "html,png")]
    ex += [["--metrics", v] for v in ("nope", "", "ü", "loss,test_acc")]
    ex += [["--grid", "scheme.ex"], ["--grid"], ["--list=1"], ["--value"], ["--name"], ["--out"]]
    ex += [["--runs", "abc", "--name", v] for v in ("", ".", "..", "a/b", "/etc/x", "a\\b")]
    ex += [["--runs", "abc", "--out", v] for v in (str(p.garbage), str(p.garbage / "sub"))]
    ex += [["--last", "1", "--grid", "x", v] for v in ("y", "ü")]
    out["explorer.export"] = (["--store", str(p.tmp / "export-empty.sqlite")], ex)

    # python -m explorer
    srv: list[list[str]] = list(common)
    srv += [["--port", v] for v in BAD_INT + ("-1", "65536", "9" * 30)]
    hosts = ("0.0.0.0", "::", "192.168.1.1", "example.invalid", "ü", "", "*", "a b", "日本.invalid")
    srv += [["--host", v] for v in hosts] + [["--host", v, "--port", "5007"] for v in hosts]
    unresolvable = ("no-such-host.invalid", "ü.invalid", "999.1.1.1", "a b", "[::1", "日本.invalid", "-x.invalid")
    srv += [["--host", v, "--allow-origin", o] for v in unresolvable for o in ("h:1", "127.0.0.1:5006")]
    srv += [["--host", h, "--allow-origin", v] for h in ("0.0.0.0", "::") for v in ("*", "", " ", " * ")]
    srv += [["--store", v] for v in stores] + [["--store", v, "--port", "0"] for v in stores]
    srv += [["--show=1"], ["--port"], ["--host"], ["--allow-origin"], ["--store", str(p.folder), "--show"]]
    out["explorer"] = ([], srv)
    return out


def _call(name: str, argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """``main(argv)`` of CLI ``name`` in this process: (exit status, stdout, stderr, traceback or None)."""
    mod = importlib.import_module(MODULES[name])
    out, err = io.StringIO(), io.StringIO()
    code: int | None
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = mod.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a crash is what the test reports
            code, tb = None, traceback.format_exc()
    return code, out.getvalue(), err.getvalue(), tb


def _problem(name: str, argv: list[str]) -> str | None:
    code, out, err, tb = _call(name, argv)
    lines = err.splitlines()
    if tb is not None:
        return f"{name} {argv!r} crashed:\n{tb}"
    if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in err:
        return f"{name} {argv!r}: exit {code}, stderr {err!r}, stdout {out[:200]!r}"
    return None


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("cli-fuzz")
    paths = Paths(tmp)
    mp = pytest.MonkeyPatch()
    mp.setenv("LOWBIT_STORE", str(tmp / "default.sqlite"))
    mp.setenv("LOWBIT_DATA", str(tmp / "data"))
    mp.chdir(tmp)  # a relative path in a line lands here
    import panel

    def no_serve(*a: Any, **k: Any) -> None:
        raise AssertionError("a malformed command line reached panel.serve")

    mp.setattr(panel, "serve", no_serve)
    yield paths, _catalogue(paths)
    mp.undo()


def _ends_open(item: list[str]) -> bool:
    """Whether ``item`` ends with a bare option that would take the next token as its value."""
    return bool(item) and item[-1].startswith("-") and "=" not in item[-1]


def _flags(item: list[str]) -> set[str]:
    """The options an item sets (two items setting one option are not combined: the later value wins,
    and an item bad only with its own other options, like --host with --allow-origin, could turn valid)."""
    return {t.split("=")[0] for t in item if t.startswith("-")}


def _systematic(cat: dict[str, tuple[list[str], list[list[str]]]], name: str) -> list[list[str]]:
    """Each bad item alone and after the valid prefix; then, seeded, each after and before another bad
    item and followed by an unknown non-ASCII option (never after an item that ends in a bare option,
    which could take the other item's first token as its value and make the line valid, nor two items
    that set the same option)."""
    prefix, bad = cat[name]
    rng = random.Random(name)
    lines = [list(b) for b in bad]
    lines += [prefix + list(b) for b in bad if prefix]
    closed = [b for b in bad if not _ends_open(b)]
    for b in bad:
        other, first = rng.choice(bad), rng.choice(closed)
        if not _ends_open(b) and not _flags(b) & _flags(other):
            lines.append(prefix + list(b) + list(other))
        if not _flags(b) & _flags(first):
            lines.append(prefix + list(first) + list(b))
        lines.append(prefix + list(b) + ["--" + rng.choice(NON_ASCII) + "=" + rng.choice(NON_ASCII)])
    singles = len(bad) * (2 if prefix else 1)
    if len(lines) > MAX_LINES:  # every item alone, and a seeded sample of the combinations
        lines = lines[:singles] + rng.sample(lines[singles:], max(0, MAX_LINES - singles))
    return lines


@pytest.mark.parametrize("name", list(MODULES))
def test_malformed_command_lines_give_one_error_line_and_exit_2(name: str, fuzz_env: Any) -> None:
    paths, cat = fuzz_env
    lines = _systematic(cat, name)
    assert len(lines) >= 200, len(lines)
    problems = [p for p in (_problem(name, argv) for argv in lines) if p]
    assert not problems, f"{len(problems)} of {len(lines)} lines:\n" + "\n".join(problems[:8])


def _is_int(text: str, lo: int) -> bool:
    try:
        return int(text) >= lo
    except ValueError:
        return False


#: random option text: "--" + anything is an unknown option wherever it stands (argparse never takes a
#: token starting with "--" as a value), so it cannot turn a bad line into a valid one
_UNKNOWN = st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s and not s.startswith("-")
                                                    and s.split("=")[0].strip() != "")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_unknown_options_around_a_bad_item_are_one_error_line(fuzz_env: Any, data: Any) -> None:
    """A guaranteed-bad item with random unknown options (any unicode) before or after it."""
    paths, cat = fuzz_env
    name = data.draw(st.sampled_from(sorted(MODULES)))
    prefix, bad = cat[name]
    item = data.draw(st.sampled_from(bad))
    before = ["--" + t for t in data.draw(st.lists(_UNKNOWN, max_size=2))]
    after = ["--" + t for t in data.draw(st.lists(_UNKNOWN, max_size=2))]
    problem = _problem(name, before + prefix + item + after)
    assert problem is None, problem


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_text_for_a_positive_integer_option_is_one_error_line(fuzz_env: Any, data: Any) -> None:
    """Any text that is not a positive integer, given to an integer option of core.train or core.cost."""
    name, flag, prefix = data.draw(st.sampled_from([
        ("core.train", "--epochs", ["--no-progress"]), ("core.train", "--batch-size", ["--no-progress"]),
        ("core.train", "--threads", ["--no-progress"]), ("core.cost", "--batch", ["mlp"]),
        ("core.cost", "--classes", ["mlp"]), ("core.formats", "-n", ["compare", "fp8_e4m3"]),
        ("core.schemes.compare", "--epochs", [])]))
    text = data.draw(st.text(max_size=12).filter(lambda s: "\x00" not in s and not _is_int(s, 1)))
    problem = _problem(name, prefix + [f"{flag}={text}"])
    assert problem is None, problem


@pytest.mark.parametrize("name,argv", [
    ("core.train", ["--epochs", "nan"]),
    ("core.formats", ["show", "fp8_e9m9"]),
    ("core.sweep", ["run", "/nonexistent/sweep.toml"]),
    ("core.cost", ["nope"]),
    ("core.schemes.compare", ["--only", "nope"]),
    ("explorer.export", ["--bogus"]),
    ("explorer", ["--port", "65536"]),
])
def test_a_real_process_exits_2_with_one_error_line(name: str, argv: list[str], tmp_path: Path) -> None:
    env = dict(os.environ, LOWBIT_STORE=str(tmp_path / "runs.sqlite"), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", name, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""


def test_usage_errors_are_one_line_with_a_pointer_to_help() -> None:
    code, out, err, tb = _call("core.sweep", ["run"])
    assert tb is None and code == 2
    assert err == "error: the following arguments are required: file (see python -m core.sweep run --help)\n"
    code, out, err, tb = _call("core.train", ["--epochs"])
    assert err == "error: argument --epochs: expected one argument (see python -m core.train --help)\n"
    assert "usage:" not in err
