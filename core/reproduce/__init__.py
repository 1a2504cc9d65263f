"""The reproduction report: every claim of the seed papers that can be tested here, run and judged.

``python -m core.reproduce [--quick] [--out DIR] [--download] [--workers N]`` trains what the claims
need through the sweep engine (:mod:`core.sweep`; the shipped ``sweeps/*.toml`` where a claim is a
paper's table, small grids of its own otherwise) into a fresh run store in DIR, and writes
``DIR/report.md`` and ``DIR/report.html`` with plots in ``DIR/reproduction/``: per claim the paper's
value (quoted, with table/figure), ours, the verdict, the command and the run ids. See
``docs/reproduction.md`` (a quick report) and docs/architecture.md.

API::

    from core.reproduce import CLAIMS, Context, PROFILES, run_claims, write
    ctx = Context("/tmp/repro", profile=PROFILES["quick"], workers=2)
    report = run_claims(ctx, CLAIMS, command="...")
    write(report, "/tmp/repro")

Modules: :mod:`.claim` (Claim, Result, Profile, Context), :mod:`.verdict` (the rules), :mod:`.registry`
(the claims), :mod:`.mls`, :mod:`.logbtq`, :mod:`.niti`, :mod:`.fractrain` (one function per claim),
:mod:`.sweeps`, :mod:`.stats`, :mod:`.plots`, :mod:`.report`.
"""

from __future__ import annotations

from .claim import PROFILES, Claim, Context, Profile, Result
from .registry import CLAIMS, get_claim
from .report import Report, run_claims, write, write_html, write_markdown
from .verdict import Check, Stat, Verdict, at_least, combine, ordered, within

__all__ = ["CLAIMS", "get_claim", "Claim", "Result", "Context", "Profile", "PROFILES", "Report", "run_claims",
           "write", "write_markdown", "write_html", "Check", "Stat", "Verdict", "at_least", "ordered", "within",
           "combine"]
