#!/usr/bin/env bash
# System packages the test suite uses, installed only when missing (safe to rerun).
# Now: PostgreSQL's server binaries, for the key and usage tests that run against a throwaway
# cluster (tests/postgres.py). Without them those tests skip; everything else still runs.
# Usage: scripts/install_system_deps.sh   (make setup-dev runs it)
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null
}

if have_postgres; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "note: PostgreSQL server binaries not found and no apt-get here; install PostgreSQL to run the PostgreSQL tests (they skip otherwise)" >&2
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "note: PostgreSQL not installed and not root (no sudo): run 'apt-get install postgresql' as root to run the PostgreSQL tests (they skip otherwise)" >&2
    exit 0
  fi
  sudo=(sudo)
fi

echo "Installing PostgreSQL (for the PostgreSQL tests)..."
export DEBIAN_FRONTEND=noninteractive
apt_install() { "${sudo[@]}" apt-get install -y --no-install-recommends postgresql; }
if ! apt_install && ! { "${sudo[@]}" apt-get update && apt_install; } || ! have_postgres; then
  # Not fatal: the PostgreSQL tests skip with this reason, the rest of the suite runs.
  echo "warning: could not install PostgreSQL; the PostgreSQL tests will be skipped" >&2
fi
