#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/ui): Playwright drives /usr/bin/chromium, since
# Playwright's own browser download cannot be used here. Quiet and idempotent: when the browser
# is there it returns at once (it runs on every test run). Installs with apt-get as root.
set -euo pipefail

browser=${HOPTRACE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: $browser is missing; the browser tests need it." >&2
  echo "  Run this script as root, or: sudo apt-get install chromium" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-chromium: no apt-get here; install Chromium with your package manager (or set HOPTRACE_CHROMIUM)" >&2
  exit 1
fi

echo "== installing Chromium (apt-get install chromium)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-chromium: installing chromium failed (output above)" >&2
  exit 1
fi
if [ ! -x "$browser" ]; then
  echo "ensure-chromium: chromium installed but $browser is not there" >&2
  exit 1
fi
echo "   $("$browser" --version 2>/dev/null || echo "$browser") ready"
