#!/usr/bin/env bash
# Install, then start the main job: the Explorer on the embedded digits dataset.
#   bash scripts/run.sh             (what the README's run command does)
# The installs run when the venv is new or what they depend on changed (pyproject.toml, the torch
# pin, the interpreter): a stamp in .venv records the last one; the editable install needs no rerun
# for .py changes. The Numba kernels are compiled into their cache once (python -m core.warm), again
# only when core/kernels/ changed; the server then loads the page once before it reports ready (--warm).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install.sh
install_project ""
PORT=${PORT:-5006}
exec .venv/bin/panel serve apps/explorer.py --address 127.0.0.1 --port "$PORT" --warm \
  --allow-websocket-origin="127.0.0.1:$PORT" --allow-websocket-origin="localhost:$PORT" "$@"
