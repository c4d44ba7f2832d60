#!/usr/bin/env bash
# Install Hearth with the given extras into a venv, then prove the llama.cpp build runs on this CPU.
# Usage: scripts/setup.sh VENV_BIN EXTRAS   (CMAKE_ARGS comes from the Makefile)
set -euo pipefail
bin="$1"
extras="$2"
llama_pin=$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)

quiet=--quiet
if ! "$bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "Building $llama_pin with AMX off (about 4 minutes on 2 cores; later runs reuse the wheel)..."
  quiet=""  # show pip's progress during the long build
fi
"$bin/pip" install $quiet -e ".[$extras]"

# A wheel cached from an earlier build with other CMAKE_ARGS is reused silently by pip, so test
# the installed build, and rebuild from source once if it crashes.
if "$bin/python" -m hearth.devtools.smoke; then
  exit 0
fi
echo "llama.cpp crashed in a one-token decode; rebuilding $llama_pin from source without the wheel cache..."
"$bin/pip" install --quiet --no-cache-dir --force-reinstall --no-deps "$llama_pin"
if ! "$bin/python" -m hearth.devtools.smoke; then
  echo "error: llama.cpp built here crashes on this CPU even after a clean rebuild with AMX off (CMAKE_ARGS in the Makefile); see docs/ARCHITECTURE.md" >&2
  exit 1
fi
