#!/usr/bin/env bash
# System packages the test suite uses, installed only when missing (safe to rerun).
# - postgresql: server binaries for the key and usage tests that run against a throwaway cluster
#   (tests/postgres.py).
# - docker-registry (a real OCI registry, /usr/bin/docker-registry) and apache2-utils (htpasswd,
#   for its bcrypt basic-auth file): the registry push/pull tests (tests/registry_server.py).
# - chromium (/usr/bin/chromium): the dashboard's browser tests (tests/ui/, driven by Playwright's
#   Python package with this browser; no `playwright install` download).
# - strace, iproute2 (ip) and util-linux (unshare): the privacy test runs the whole flow in a
#   loopback-only network namespace and records every connect() (tests/privacy/).
# Without them those tests skip; everything else still runs.
# Usage: scripts/install_system_deps.sh   (make setup-dev runs it)
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v strace >/dev/null || missing+=(strace)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "note: ${missing[*]} not found and no apt-get here; install them to run the tests that need them (they skip otherwise)" >&2
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "note: ${missing[*]} not installed and not root (no sudo): run 'apt-get install ${missing[*]}' as root to run the tests that need them (they skip otherwise)" >&2
    exit 0
  fi
  sudo=(sudo)
fi

echo "Installing ${missing[*]} (for the tests that need them)..."
export DEBIAN_FRONTEND=noninteractive
apt_install() { "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; }
if ! apt_install && ! { "${sudo[@]}" apt-get update && apt_install; }; then
  # Not fatal: the tests that need these skip with a reason, the rest of the suite runs.
  echo "warning: could not install ${missing[*]}; the tests that need them will be skipped" >&2
fi
