#!/usr/bin/env bash
# The demo on a fresh machine: make a virtualenv, install, build the UI, then `hoptrace demo`: a
# serverless shopping cart on emulated AWS, traced into a local collector, until Ctrl-C.
# Extra arguments go to `hoptrace demo` (--port P, --orders N, --interval S, --seed N, --exit).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[dev]" -c constraints.txt
bash scripts/ensure-ui.sh || echo "demo: the web UI was not built (see above); the collector serves the API without it" >&2
exec .venv/bin/hoptrace demo "$@"
