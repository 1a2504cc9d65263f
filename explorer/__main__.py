"""``python -m explorer``: serve the Explorer on 127.0.0.1 (another address only when asked).

Equivalent to ``panel serve apps/explorer.py --address 127.0.0.1``. Serving beyond this machine
(``--host 0.0.0.0`` or an address) needs ``--allow-origin`` naming the pages that may connect (the
host:port the users type in their browser), and then the server signs its session ids with a secret
key (``BOKEH_SECRET_KEY`` when set, else a random one per start), so no other web page can open a
session or make one up.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, open the store and serve until interrupted; returns the exit code (2: bad input,
    an unusable store)."""
    from core.cli import ArgumentParser, fail

    p = ArgumentParser(prog="python -m explorer", description="Serve the Lowbit Explorer.")
    p.add_argument("--port", type=int, default=5006, help="port (default 5006; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; use 0.0.0.0 to serve other machines)")
    p.add_argument("--store", default=None, help="run store file (default: $LOWBIT_STORE or the user data dir)")
    p.add_argument("--show", action="store_true", help="open a browser tab")
    p.add_argument("--allow-origin", action="append", default=[], metavar="HOST[:PORT]",
                   help="who may connect when serving beyond this machine: the host[:port] users open "
                        "(repeatable; required with --host other than 127.0.0.1/localhost)")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        return fail(f"--port must be in 0..65535, got {args.port}")
    local = args.host in ("127.0.0.1", "localhost", "::1")
    if not local and not args.allow_origin:
        return fail(f"serving on {args.host} needs --allow-origin HOST[:PORT] naming the address "
                    f"users open (e.g. --allow-origin myhost.lan:{args.port})")
    if any(o.strip() in ("*", "") for o in args.allow_origin):
        return fail("--allow-origin must name a host, not '*'")
    if not local:
        import socket

        try:
            socket.getaddrinfo(args.host, args.port)
        except (OSError, UnicodeError) as exc:
            return fail(f"--host {args.host!r} is not an address of this machine: {exc}")
    from core.store import RunStore, StoreError

    try:
        with RunStore(args.store) as store:  # a bad store is reported here, not as a blank page
            store_path = str(store.path)
    except (StoreError, OSError) as exc:
        return fail(exc)

    import panel as pn

    from .app import RAW_CSS, create_app

    pn.extension(raw_css=[RAW_CSS], notifications=True)
    kwargs: dict[str, object] = {}
    if local:
        origins = [f"127.0.0.1:{args.port}", f"localhost:{args.port}"] + list(args.allow_origin)
    else:
        origins = list(args.allow_origin)
        # session ids made by the server and signed: a page elsewhere cannot invent one
        kwargs.update(sign_sessions=True, generate_session_ids=True,
                      secret_key=os.environ.get("BOKEH_SECRET_KEY") or secrets.token_urlsafe(32))
    # warm: one page is built before the server reports ready (imports, Numba kernels, first analyses),
    # so the first browser's page costs only its own session
    pn.serve({"explorer": lambda: create_app(store=store_path)}, address=args.host, port=args.port,
             show=args.show, title="Lowbit Explorer", websocket_origin=origins, warm=True, **kwargs)
    return 0


#: ``lowbit-explorer <command> ...`` -> the module whose ``main(argv)`` runs it
COMMANDS = {"train": "core.train.__main__", "formats": "core.formats.__main__", "sweep": "core.sweep.__main__",
            "export": "explorer.export"}


def cli(argv: Sequence[str] | None = None) -> int:
    """The ``lowbit-explorer`` console script: serve the Explorer, or run a command.

    ``lowbit-explorer [--port N] [--host H --allow-origin O] [--store PATH]`` serves;
    ``lowbit-explorer train|formats|sweep|export ...`` is ``python -m core.train`` etc.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        import importlib

        module = importlib.import_module(COMMANDS[args[0]])
        sys.argv[0] = f"lowbit-explorer {args[0]}"
        return int(module.main(args[1:]) or 0)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write("usage: lowbit-explorer [serve options] | lowbit-explorer {train,formats,sweep,export} ...\n"
                         "  serve the Explorer (options: python -m explorer --help), or run a command "
                         "(lowbit-explorer train --help ...)\n")
        return 0
    return main(args)


if __name__ == "__main__":
    raise SystemExit(main())
