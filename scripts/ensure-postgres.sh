#!/usr/bin/env bash
# PostgreSQL server binaries for the integration tests: tests/pg.py starts a throwaway server
# from /usr/lib/postgresql/<version>/bin for each test session. This script only installs the
# binaries (Debian's `postgresql`, version 15 on bookworm); it never starts a server, and it
# keeps the package from creating and starting its own "main" cluster.
# Quiet and idempotent: when the binaries are there it returns at once (it runs on every test run).
set -euo pipefail

have_server() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_server; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: PostgreSQL server binaries present; nothing to do (not root, nothing installed)"
  fi
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-postgres: PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb)." >&2
  echo "  Run this script as root, or: sudo apt-get install postgresql" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-postgres: no apt-get here; install the PostgreSQL 15 server with your package manager" >&2
  exit 1
fi

echo "== installing the PostgreSQL server (apt-get install postgresql)"
log=$(mktemp)
cleanup=()
trap 'rm -f "$log" "${cleanup[@]}"' EXIT

# No "main" cluster, and no service started by the package scripts: the tests run their own.
mkdir -p /etc/postgresql-common/createcluster.d
conf=/etc/postgresql-common/createcluster.d/hoptrace-no-main-cluster.conf
[ -e "$conf" ] || echo "create_main_cluster = false" >"$conf"
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  cleanup+=(/usr/sbin/policy-rc.d)
fi

export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "ensure-postgres: installing postgresql failed (output above)" >&2
  exit 1
fi
if ! have_server; then
  echo "ensure-postgres: postgresql installed but no /usr/lib/postgresql/*/bin/initdb appeared" >&2
  exit 1
fi
echo "   $(ls -d /usr/lib/postgresql/*/bin | head -n1) ready"
