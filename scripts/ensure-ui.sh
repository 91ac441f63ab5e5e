#!/usr/bin/env bash
# Builds the web UI (ui/web, Vite + TypeScript) into ui/dist, the folder the collector serves at /
# and the wheel carries as hoptrace/ui/dist. Installs exactly what ui/web/package-lock.json pins
# (`npm ci`). Idempotent and quick: it installs only when the manifests changed since the last
# install, and builds only when a source file is newer than the last build.
set -euo pipefail
cd "$(dirname "$0")/../ui/web"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== ensure-ui: installing Node.js and npm (Debian packages)"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "ensure-ui: Node.js 20.19+ and npm are needed to build the web UI; install them" >&2
    exit 1
  fi
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "ensure-ui: Node.js $(node --version) is too old to build the web UI (Vite needs 20.19+)" >&2
  exit 1
fi

# npm writes node_modules/.package-lock.json on every install: newer than both manifests means
# nothing changed since the last install.
stamp=node_modules/.package-lock.json
if ! { [ -f "$stamp" ] && [ "$stamp" -nt package.json ] && [ "$stamp" -nt package-lock.json ]; }; then
  echo "== ensure-ui: installing ui/web dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

built=../dist/.hoptrace-build
if [ -f "$built" ] && [ -f ../dist/index.html ] && \
   [ -z "$(find src index.html package.json package-lock.json tsconfig.json vite.config.ts "$stamp" -newer "$built" -print -quit)" ]; then
  exit 0
fi
echo "== ensure-ui: building the web UI into ui/dist"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npm run --silent build >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-ui: the web UI did not build (output above)" >&2
  exit 1
fi
touch "$built"
# An in-tree wheel build (pip wheel .) copies through build/lib, which would keep the old
# content-hashed assets beside the new ones: let the next build copy ui/dist afresh.
rm -rf ../../build/lib/hoptrace/ui/dist
