#!/usr/bin/env bash
# Install, then start the main job: the Explorer on the embedded digits dataset.
#   bash scripts/run.sh             (what the README's run command does)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e .
PORT=${PORT:-5006}
exec .venv/bin/panel serve apps/explorer.py --address 127.0.0.1 --port "$PORT" \
  --allow-websocket-origin="127.0.0.1:$PORT" --allow-websocket-origin="localhost:$PORT" "$@"
