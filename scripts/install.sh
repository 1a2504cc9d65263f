# Sourced by run.sh and test.sh from the project root: the installs, skipped when nothing they depend
# on changed.   install_project EXTRAS    (EXTRAS: "" or "[dev]"; the [dev] install serves both)
TORCH_PIN=torch==2.13.0

_stamp_key() {  # what an install depends on: the torch pin, pyproject.toml, the extras, the interpreter
  { echo "$TORCH_PIN $1"; cat pyproject.toml; .venv/bin/python -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -d' ' -f1
}

_installed() {  # the packages resolve from outside the checkout (not through the working directory)
  local py="$PWD/.venv/bin/python"
  (cd / && "$py" -c 'import importlib.util as u, sys
sys.exit(0 if all(u.find_spec(m) for m in ("torch", "numba", "panel", "core", "explorer")) else 1)') 2>/dev/null
}

install_project() {
  local extras=$1 stamp key
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  stamp=".venv/.lowbit-install${extras:+-dev}"
  key=$(_stamp_key "$extras")
  if [ -z "$extras" ] && [ "$(cat .venv/.lowbit-install-dev 2>/dev/null)" = "$(_stamp_key "[dev]")" ]; then
    stamp=.venv/.lowbit-install-dev key=$(_stamp_key "[dev]")  # test.sh's install has everything run.sh needs
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ] || ! _installed; then
    .venv/bin/pip install -q "$TORCH_PIN"
    .venv/bin/pip install -q -e ".$extras"
    echo "$key" > "$stamp"
  fi
  # The kernels' machine code (Numba's cache, core/kernels/__pycache__ unless NUMBA_CACHE_DIR says
  # otherwise): compiled once, again when a kernel source, the warm-up list or Numba changed (Numba
  # itself recompiles exactly the kernels whose source changed) or the cache is gone.
  local kstamp=.venv/.lowbit-kernels kkey
  kkey=$({ cat core/kernels/*.py core/warm.py; echo "${NUMBA_CACHE_DIR:-}"
           .venv/bin/python -c 'from importlib.metadata import version; print(version("numba"))'; } \
         | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$kstamp" 2>/dev/null)" != "$kkey" ] \
      || { [ -z "${NUMBA_CACHE_DIR:-}" ] && ! compgen -G "core/kernels/__pycache__/*.nbi" >/dev/null; }; then
    echo "compiling the Numba kernels into their cache (once; about a minute on 2 cores) ..." >&2
    if .venv/bin/python -m core.warm; then
      echo "$kkey" > "$kstamp"
    else
      echo "warning: python -m core.warm failed; the kernels compile on first use" >&2
    fi
  fi
}
