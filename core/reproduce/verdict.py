"""The verdict rules of the reproduction report: orderings and numbers against the papers'.

Owns :class:`Verdict` (reproduced / not reproduced / cannot test here), :class:`Check` (one
comparison: what the paper says, what we measured, whether it holds), :class:`Stat` (the mean and
sample std of one cell over seeds, with diverged seeds set apart, as docs/sweeps.md's tables do),
and the rules:

* :func:`at_least` (``a >= b``): holds when ``mean(a) >= mean(b) - tol``, with ``tol`` twice the
  standard error of the difference of the means (and at least ``floor``): a difference smaller than
  that is noise (docs/sweeps.md, "A difference under about 2 std is not a difference"), and a tie
  satisfies ``>=``. A cell whose seeds all diverged ranks below every cell that trained.
* :func:`ordered` (``a >= b >= c ...``): every adjacent pair holds :func:`at_least`.
* :func:`within` (a number against the paper's, relative or absolute tolerance).
* :func:`combine`: every check holds -> reproduced; one fails -> not reproduced; a check that could not
  be made (``ok is None``) and none failing -> cannot test here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

__all__ = ["Verdict", "Check", "Stat", "at_least", "ordered", "within", "combine", "stat_of"]


class Verdict(str, Enum):
    """A claim's verdict."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    CANNOT_TEST = "cannot test here"


@dataclass(frozen=True)
class Check:
    """One comparison of a claim.

    Attributes:
        what: the statement checked (``"MU8 >= FP8 1-5-2 on digits MLP"``).
        paper: the paper's value or ordering, as it reads there.
        ours: what we measured, as text.
        ok: True (holds), False (does not), None (could not be checked here).
    """

    what: str
    paper: str
    ours: str
    ok: bool | None


@dataclass(frozen=True)
class Stat:
    """One cell over its seeds: the values of the seeds that trained, and how many diverged.

    ``mean``/``std`` are over the trained seeds (NaN when none trained); ``std`` is the sample std
    (0 for one value).
    """

    values: tuple[float, ...]
    diverged: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def all_diverged(self) -> bool:
        return self.n == 0

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """``96.8 ± 0.7`` (``(1/3 div.)`` appended), or ``Div.`` when every seed diverged."""
        if self.all_diverged:
            return "Div." if self.diverged else "-"
        s = f"{self.mean * scale:.{digits}f}"
        if self.n > 1:
            s += f" ± {self.std * scale:.{digits}f}"
        if self.diverged:
            s += f" ({self.diverged}/{self.n + self.diverged} div.)"
        return s


def stat_of(values: Iterable[float | None], diverged: int = 0) -> Stat:
    """A :class:`Stat` of the finite values (None and NaN left out)."""
    return Stat(tuple(float(v) for v in values if v is not None and math.isfinite(float(v))), diverged)


def _tol(a: Stat, b: Stat, floor: float) -> float:
    se = math.sqrt((a.std ** 2 / a.n if a.n else 0.0) + (b.std ** 2 / b.n if b.n else 0.0))
    return max(2.0 * se, floor)


def at_least(a: Stat, b: Stat, floor: float = 0.0) -> bool:
    """``a >= b`` within noise (module doc); a fully diverged ``a`` holds only against a fully diverged ``b``."""
    if a.all_diverged:
        return b.all_diverged
    if b.all_diverged:
        return True
    return a.mean >= b.mean - _tol(a, b, floor)


def ordered(stats: Sequence[Stat], floor: float = 0.0) -> bool:
    """``stats[0] >= stats[1] >= ...`` pair by pair, each within noise (:func:`at_least`)."""
    return all(at_least(x, y, floor) for x, y in zip(stats, stats[1:]))


def within(ours: float, paper: float, rel: float | None = None, abs_: float | None = None) -> bool:
    """``|ours - paper| <= rel * |paper|`` (or ``<= abs_``); both given: either suffices."""
    if not (math.isfinite(ours) and math.isfinite(paper)):
        return False
    d = abs(ours - paper)
    ok = False
    if rel is not None:
        ok = ok or d <= rel * abs(paper)
    if abs_ is not None:
        ok = ok or d <= abs_
    return ok


def combine(checks: Sequence[Check]) -> Verdict:
    """The claim's verdict from its checks (module doc); no checks at all -> cannot test here."""
    if any(c.ok is False for c in checks):
        return Verdict.NOT_REPRODUCED
    if not checks or any(c.ok is None for c in checks):
        return Verdict.CANNOT_TEST
    return Verdict.REPRODUCED


@dataclass
class Table:
    """A small table of a result: a header row and text rows."""

    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
