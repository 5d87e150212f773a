#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, postgres) are installed.
# Root on Debian/Ubuntu: installs the `postgresql` package with apt-get.
# Anyone else: says what to install and fails.
set -euo pipefail

have_server() {
  if [ -n "${EVENTLINE_PG_BINDIR:-}" ]; then
    [ -x "$EVENTLINE_PG_BINDIR/initdb" ] && [ -x "$EVENTLINE_PG_BINDIR/postgres" ]
    return
  fi
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0
  done
  command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1
}

if have_server; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL server not found; installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package's own cluster (main, port 5432) is not needed: eventline runs
  # throwaway clusters. policy-rc.d keeps the install from starting it.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends postgresql >&2
  have_server || { echo "ensure-postgres: installed postgresql but found no initdb/postgres" >&2; exit 1; }
  echo "ensure-postgres: installed $(ls -d /usr/lib/postgresql/*/bin | tail -n1)" >&2
  exit 0
fi

cat >&2 <<'MSG'
ensure-postgres: PostgreSQL's server binaries (initdb, postgres) are not installed.
  Debian/Ubuntu:  sudo apt-get install postgresql
  Fedora/RHEL:    sudo dnf install postgresql-server
  macOS:          brew install postgresql
Or point EVENTLINE_PG_BINDIR at a directory holding initdb and postgres.
MSG
exit 1
