#!/usr/bin/env bash
# The demo on a fresh machine: make a virtualenv, install, and send orders through an emulated
# serverless shop, printing each order's trace. Extra arguments go to the demo (--orders N).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[dev]" -c constraints.txt
bash scripts/ensure-ui.sh || echo "demo: the web UI was not built (see above); the collector serves the API without it" >&2
exec .venv/bin/python -m examples.order_pipeline "$@"
