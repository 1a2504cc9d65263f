"""The command lines' one rule for bad input: one line ``error: ...`` on stderr and exit status 2.

Owns :class:`ArgumentParser` (argparse whose usage errors are that one line, with a pointer to
``--help`` on the same line, instead of the usage dump plus the error), :func:`fail` (any error
message as that one line), :func:`warn` (one ``warning: ...`` line) and the option types
:func:`int_in` and :func:`float_in` (numbers checked against their range, NaN and inf refused,
as argparse errors). Every ``python -m``
command line of the project uses them: ``core.train``, ``core.formats``, ``core.sweep``,
``core.cost``, ``core.schemes.compare``, ``explorer.export`` and ``explorer``
(``tests/test_cli_fuzz.py`` feeds each of them malformed command lines).

Light on purpose (argparse and sys only): ``--help`` and bad options answer before torch loads.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import IO, Callable, NoReturn

__all__ = ["ArgumentParser", "fail", "warn", "one_line", "int_in", "float_in", "BAD_INPUT", "SEED_MAX"]

#: exit status of every command line for bad input (argparse's own choice)
BAD_INPUT = 2
#: the largest seed a command line takes (a non-negative int64)
SEED_MAX = 2**63 - 1


def one_line(message: object) -> str:
    """``message`` as one line: every run of whitespace (newlines included) becomes one space."""
    return " ".join(str(message).split())


def fail(message: object, stream: IO[str] | None = None) -> int:
    """Write ``error: <message>`` as one line to stderr (or ``stream``); return :data:`BAD_INPUT`."""
    (stream or sys.stderr).write(f"error: {one_line(message)}\n")
    return BAD_INPUT


def warn(message: object, stream: IO[str] | None = None) -> None:
    """Write ``warning: <message>`` as one line to stderr (or ``stream``)."""
    (stream or sys.stderr).write(f"warning: {one_line(message)}\n")


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose usage errors print one line,
    ``error: <what is wrong> (see <prog> --help)``, and exit with status 2.

    Sub-parsers made by ``add_subparsers().add_parser`` are of this class too (argparse makes
    them with the parent's class), so their errors name their own ``--help``.
    """

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")
        raise SystemExit(BAD_INPUT)


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f"in {lo}..{hi}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"<= {hi}")
    return " and ".join(parts)


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` reading an integer in ``lo..hi`` (either bound may be None)."""
    what = f"an integer {_range_text(lo, hi)}".rstrip()

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise argparse.ArgumentTypeError(f"must be {what}, got {shown}")
        return v

    parse.__name__ = "int"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` reading a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    what = f"a finite number {_range_text(lo, hi, lo_open)}".rstrip()

    def parse(text: str) -> float:
        try:
            v = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) \
                or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return v

    parse.__name__ = "float"
    return parse
