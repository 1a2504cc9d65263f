"""``python -m explorer``: serve the Explorer on 127.0.0.1 (another address only when asked).

Equivalent to ``panel serve apps/explorer.py --address 127.0.0.1``; ``--host 0.0.0.0`` (or a
specific address) opts in to serving beyond this machine.
"""

from __future__ import annotations

import argparse
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until interrupted; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m explorer", description="Serve the Lowbit Explorer.")
    p.add_argument("--port", type=int, default=5006, help="port (default 5006; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; use 0.0.0.0 to serve other machines)")
    p.add_argument("--store", default=None, help="run store file (default: $LOWBIT_STORE or the user data dir)")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    args = p.parse_args(argv)

    import panel as pn

    from .app import RAW_CSS, create_app

    pn.extension(raw_css=[RAW_CSS], notifications=True)
    origins = None if args.host in ("127.0.0.1", "localhost") else ["*"]
    pn.serve({"explorer": lambda: create_app(store=args.store)}, address=args.host, port=args.port,
             show=args.show, title="Lowbit Explorer", websocket_origin=origins)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
