#!/usr/bin/env bash
# Install everything from the project's own files, lint and type-check, then run the whole test suite.
#   bash scripts/test.sh            (what .ci/run and the README run)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install.sh  # the installs (skipped when pyproject.toml and the torch pin are unchanged), kernel cache
install_project "[dev]"
# Lint and type checks first (configured in pyproject.toml); either failing fails the script.
.venv/bin/ruff check .
.venv/bin/mypy
# Browser tests drive Debian's Chromium (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -q && apt-get install -y -q chromium) >/dev/null
  else
    sudo apt-get update -q && sudo apt-get install -y -q chromium >/dev/null
  fi
fi
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exit 5 means "no tests collected": that must fail CI, never pass silently.
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
