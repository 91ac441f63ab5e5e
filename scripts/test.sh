#!/usr/bin/env bash
# The one test command (README, CI): make a virtualenv, install, lint, type-check, run every test.
# Works on a fresh machine: everything the tests need is installed here, and the servers they
# talk to (moto over HTTP) are started by the tests themselves on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing hoptrace with the dev extra"
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e ".[dev]" -c constraints.txt

# System packages and npm modules some tests drive for real (PostgreSQL, the OpenTelemetry JS SDK).
for need in scripts/ensure-*.sh; do
  [ -f "$need" ] && bash "$need"
done

echo "== ruff"
.venv/bin/python -m ruff check .
echo "== mypy"
PYTHON=.venv/bin/python scripts/typecheck.sh
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
