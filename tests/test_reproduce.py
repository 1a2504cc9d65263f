"""The reproduction report (core.reproduce): the claim registry, the verdict rules against hand-made
results, a tiny end-to-end report (Markdown + HTML) and the command line's bad input."""

from __future__ import annotations

import html.parser
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.reproduce import CLAIMS, Check, Context, Profile, Stat, Verdict, at_least, combine, ordered, within
from core.reproduce import logbtq as repro_logbtq
from core.reproduce import mls as repro_mls
from core.reproduce.__main__ import _shown_args, main
from core.reproduce.report import run_claims, write
from core.reproduce.registry import get_claim

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- registry

#: the claims the brief lists, by paper
REQUIRED = {
    "mls-table1", "mls-eq9",                                               # MLS Table 1, Eq. 9
    "mls-fig3-grouping", "mls-fig3-ex", "mls-fig3-ex-groups",             # MLS Fig. 3 rows 1-3
    "mls-table3-mx", "mls-table3-grouping", "mls-table3-ex", "mls-table3-mg",  # MLS Table 3 orderings
    "logbtq-table2", "logbtq-eq12",                                        # LogBTQ Table 2, Eq. 12
    "niti-mnist",                                                          # NITI vs fp32 on MNIST
    "cpt-bitops", "pfq-bitops", "dfq-bitops",                              # CPT / PFQ / DFQ BitOPs
    "mls-acc16",                                                           # 16-bit accumulation
}


def test_registry_covers_the_claims_and_each_entry_is_complete():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert REQUIRED <= set(ids), REQUIRED - set(ids)
    for c in CLAIMS:
        assert c.paper and c.where and c.paper_value, c.id
        assert any(w in c.doc for w in ("paper", "survey")), c.id  # the docstring cites its source
        assert any(w in c.doc for w in ("section", "Table", "Fig.", "Eq.")), c.id
    assert get_claim("mls-eq9").run is repro_mls.eq9
    with pytest.raises(KeyError, match="unknown claim 'nope'; known: mls-table1"):
        get_claim("nope")


# ------------------------------------------------------------------------------------------- verdict rules

def test_stat_mean_std_and_text():
    s = Stat((0.96, 0.97, 0.98), diverged=1)
    assert s.mean == pytest.approx(0.97) and s.std == pytest.approx(0.01)
    assert s.text() == "97.0 ± 1.0 (1/4 div.)"
    assert Stat((), diverged=3).text() == "Div."
    assert Stat((0.5,)).std == 0.0


def test_at_least_orders_within_noise():
    hi, lo = Stat((0.98, 0.981, 0.979)), Stat((0.90, 0.901, 0.899))
    assert at_least(hi, lo) and not at_least(lo, hi)           # clear ordering, either way round
    noisy_a, noisy_b = Stat((0.95, 0.97, 0.93)), Stat((0.96, 0.98, 0.94))
    assert at_least(noisy_a, noisy_b) and at_least(noisy_b, noisy_a)  # 1 point apart, std 2: a tie
    # the tolerance is 2 x the standard error of the difference: sqrt(0.02^2/3 * 2) * 2 = 0.0327
    assert at_least(Stat(tuple(v - 0.032 for v in noisy_b.values)), noisy_b)
    assert not at_least(Stat(tuple(v - 0.034 for v in noisy_b.values)), noisy_b)
    # the floor: one-seed cells 0.2 points apart are a tie with a 0.3-point floor, not without one
    assert at_least(Stat((0.978,)), Stat((0.980,)), floor=0.003) and not at_least(Stat((0.978,)), Stat((0.980,)))
    div = Stat((), diverged=3)
    assert at_least(lo, div) and not at_least(div, lo) and at_least(div, Stat((), diverged=2))
    assert ordered([hi, lo, div]) and not ordered([lo, hi, div])


def test_within_and_combine():
    assert within(6.83, 6.8, rel=0.05) and not within(6.0, 6.8, rel=0.05)
    assert within(86_016, 73_728, abs_=20_000) and not within(86_016, 73_728, rel=0.01)
    assert not within(math.nan, 1.0, rel=1.0)
    yes, no, na = Check("a", "", "", True), Check("b", "", "", False), Check("c", "", "", None)
    assert combine([yes, yes]) is Verdict.REPRODUCED
    assert combine([yes, no, na]) is Verdict.NOT_REPRODUCED
    assert combine([yes, na]) is Verdict.CANNOT_TEST and combine([]) is Verdict.CANNOT_TEST


def _logbtq_cells(acc: dict[str, list[float]]) -> pd.DataFrame:
    """Hand-made cells of sweeps/logbtq_table2.toml: scheme label -> best_test_acc per seed, on every pair."""
    rows = []
    for (d, m) in repro_logbtq.PAIRS:
        for label, vals in acc.items():
            for seed, v in enumerate(vals):
                rows.append({"coords": {"data.name": d, "model.name": m, "scheme": {"name": "x", "label": label},
                                        "seed": seed}, "status": "done", "run_id": f"r{len(rows)}",
                             "best_test_acc": v, "final_test_acc": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("acc,verdict", [
    ({"FP32": [0.99] * 3, "MU8": [0.98, 0.981, 0.982], "FP8 1-5-2": [0.95, 0.951, 0.952],
      "FP8 1-4-3": [0.90, 0.901, 0.902]}, Verdict.REPRODUCED),
    ({"FP32": [0.99] * 3, "MU8": [0.90, 0.901, 0.902], "FP8 1-5-2": [0.95, 0.951, 0.952],
      "FP8 1-4-3": [0.98, 0.981, 0.982]}, Verdict.NOT_REPRODUCED),
])
def test_table2_claim_on_hand_made_cells(tmp_path, monkeypatch, acc, verdict):
    ctx = Context(tmp_path, workers=1)
    monkeypatch.setattr(ctx, "sweep", lambda spec: _logbtq_cells(acc))
    r = repro_logbtq.table2(ctx)
    assert r.verdict is verdict
    assert len(r.checks) == 6 and all(c.ok is (verdict is Verdict.REPRODUCED) for c in r.checks)
    assert r.run_ids == [f"r{i}" for i in range(36)]


def test_eq9_claim_within_tolerance_or_not(tmp_path, monkeypatch):
    ctx = Context(tmp_path, workers=1)
    r = repro_mls.eq9(ctx)
    assert r.verdict is Verdict.REPRODUCED and r.ours == "6.83x"  # docs/papers.md#mls-energy: 6.83
    import core.cost.energy

    monkeypatch.setattr(core.cost.energy, "eq9_ratio", lambda counts, table=None: 6.0)
    assert repro_mls.eq9(ctx).verdict is Verdict.NOT_REPRODUCED


def test_table1_rows_against_the_paper(tmp_path):
    ctx = Context(tmp_path, workers=1)
    r = repro_mls.table1_gemm(ctx)
    assert r.verdict is Verdict.REPRODUCED and [c.ok for c in r.checks] == [True] * 5
    assert "Conv (F) 40,551,040" in r.ours
    ew = repro_mls.table1_ewadd(ctx)
    assert ew.verdict is Verdict.NOT_REPRODUCED and "86,016" in ew.ours  # Table 1 says 7.37E+04


# ------------------------------------------------------------------------------------------- end to end

class _Html(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.verdicts: list[str] = []
        self.imgs: list[str] = []
        self.commands: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "section" and "claim" in cls:
            self.sections.append(a["id"])
        if tag == "span" and "verdict" in cls:
            self._in = "verdict"
        if tag == "code" and "command" in cls:
            self._in = "command"
        if tag == "img":
            self.imgs.append(a["src"])

    def handle_data(self, data):
        if self._in == "verdict":
            self.verdicts.append(data)
        elif self._in == "command":
            self.commands.append(data)
        self._in = None


def test_tiny_report_writes_markdown_and_html(tmp_path):
    tiny = Profile("tiny", seeds=(0,), acc_epochs=1, max_steps=6)
    ctx = Context(tmp_path / "out", profile=tiny, workers=1, log=lambda s: None)
    claims = [get_claim("mls-table1"), get_claim("mls-acc16")]
    rep = run_claims(ctx, claims, "python -m core.reproduce --only mls-table1,mls-acc16 --out DIR", progress=False)
    md, htm = write(rep, tmp_path / "out")
    (c1, r1), (c2, r2) = rep.results
    assert r1.verdict is Verdict.REPRODUCED
    assert r2.verdict in (Verdict.REPRODUCED, Verdict.NOT_REPRODUCED) and len(r2.run_ids) == 1  # it trained
    assert r2.checks[0].ours == "14 bits"                          # 2 Mx + 2^(Ex+1) - 2 for <2,4>
    widths = [int(t) for c in r2.checks[1:] for t in c.ours.split()[0].split("..")]
    assert widths and all(14 <= w <= 40 for w in widths)
    run = ctx.store.get_run(r2.run_ids[0])
    assert run["status"] == "done"
    # HTML structure
    p = _Html()
    p.feed(htm.read_text())
    assert p.sections == ["mls-table1", "mls-acc16"]
    assert p.verdicts == [r1.verdict.value, r2.verdict.value]
    assert p.commands[0] == "python -m core.cost resnet20 --batch 1 --energy"
    assert "core.sweep run reproduction/sweeps/repro-acc-bits.toml" in p.commands[1]
    for src in p.imgs:
        assert not Path(src).is_absolute() and (tmp_path / "out" / src).is_file()
    # Markdown: both claims, the run id, no absolute path of this machine
    text = md.read_text()
    assert "## mls-table1: MLS" in text and "## mls-acc16: MLS" in text and r2.run_ids[0] in text
    assert str(tmp_path) not in text and str(tmp_path) not in htm.read_text()
    assert (tmp_path / "out" / "reproduction" / "sweeps" / "repro-acc-bits.toml").is_file()


# ------------------------------------------------------------------------------------------- command line

def test_cli_bad_input_is_one_error_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv, msg in ((["--only", "nope"], "unknown claim 'nope'"), (["--out", str(f)], "is not a folder"),
                      (["--mnist-root", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "is not a folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    for argv in (["--workers", "0"], ["--workers", "x"], ["--bogus"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_cli_subprocess_list_and_error():
    py = [sys.executable, "-m", "core.reproduce"]
    ok = subprocess.run(py + ["--list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == len(CLAIMS)
    bad = subprocess.run(py + ["--workers", "-3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


def test_report_command_hides_paths():
    assert _shown_args(["--quick", "--out", "/tmp/x", "--store=/a/b.sqlite", "--mnist-root", "/m"]) == \
        ["--quick", "--out DIR", "--store=STORE", "--mnist-root PATH"]
