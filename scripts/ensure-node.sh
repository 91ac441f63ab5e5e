#!/usr/bin/env bash
# Installs the OpenTelemetry JavaScript SDK that tests/integration/test_real_clients.py drives
# (tests/js, pinned with integrity hashes by its package-lock.json). Idempotent: when
# node_modules already holds exactly what the lockfile says it returns at once; otherwise
# `npm ci` wipes node_modules and installs the lockfile's packages from the npm registry,
# checking each one's hash.
set -euo pipefail
cd "$(dirname "$0")/../tests/js"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== ensure-node: installing Node.js and npm (Debian packages)"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "ensure-node: Node.js (18.19+ or 20.6+) and npm are needed for the JavaScript client tests; install them" >&2
    exit 1
  fi
fi

# npm records what it installed in node_modules/.package-lock.json. Compare its packages with
# the lockfile's (content, not file times: a checkout or a copied node_modules changes those).
# This trusts what npm recorded; `npm ci` below is the step that verified the files themselves.
installed_matches_lockfile() {
  [ -f node_modules/.package-lock.json ] || return 1
  node -e '
    const fs = require("fs");
    const canon = (v) => Array.isArray(v) ? v.map(canon) : v && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
    const want = { ...JSON.parse(fs.readFileSync("package-lock.json", "utf8")).packages };
    delete want[""];
    const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json", "utf8")).packages;
    process.exit(JSON.stringify(canon(want)) === JSON.stringify(canon(have)) ? 0 : 1);
  ' 2>/dev/null
}

if [ -f package-lock.json ] && installed_matches_lockfile; then
  exit 0
fi
echo "== ensure-node: installing tests/js dependencies"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
