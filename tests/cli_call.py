"""A command line's ``main(argv)`` run in the test's own process (no interpreter start: fast, and
monkeypatches apply), with its stdout and stderr captured."""

from __future__ import annotations

import contextlib
import importlib
import io
from typing import Any

__all__ = ["call_main"]


def call_main(module: str, argv: list[str]) -> tuple[Any, str, str]:
    """``module.main(argv)``: (exit status, stdout, stderr); a ``SystemExit`` gives its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()
