#!/usr/bin/env bash
# Creates the mergekit parity environment: /work/main/.venv-parity (or $PARITY_VENV) with
# mergekit (latest from PyPI), torch, safetensors and numpy. Idempotent: when the venv already
# imports mergekit and torch it only prints the versions. Writes them to $VENV/versions.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PARITY_VENV:-$ROOT/.venv-parity}"
PY="$VENV/bin/python"

versions() {
  "$PY" - <<'PY'
import importlib.metadata as md
for name in ("mergekit", "torch", "transformers", "safetensors", "numpy"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} missing")
PY
}

if [[ -x "$PY" ]] && "$PY" -c 'import mergekit, torch, safetensors, numpy' 2>/dev/null \
   && [[ -x "$VENV/bin/mergekit-yaml" ]]; then
  echo "setup_venv: $VENV already has mergekit and torch; nothing to install" >&2
  versions | tee "$VENV/versions.txt"
  exit 0
fi

if [[ ! -x "$PY" ]]; then
  echo "setup_venv: creating $VENV" >&2
  python3 -m venv "$VENV" || {
    echo "setup_venv: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$PY" -m pip install --quiet --upgrade pip

# A CPU-only torch wheel is much smaller; use its index only when it answers quickly.
# Otherwise PyPI's torch (which pulls the CUDA runtime wheels, a few GB) is used.
CPU_INDEX="https://download.pytorch.org/whl/cpu"
if ! "$PY" -c 'import torch' 2>/dev/null; then
  if command -v curl >/dev/null && curl -s -o /dev/null --max-time 10 "$CPU_INDEX/torch/"; then
    echo "setup_venv: installing torch from the CPU wheel index" >&2
    "$PY" -m pip install --quiet torch --index-url "$CPU_INDEX" \
      || echo "setup_venv: CPU index failed; falling back to PyPI torch" >&2
  else
    echo "setup_venv: CPU wheel index unreachable; installing torch from PyPI" >&2
  fi
fi
"$PY" -m pip install --quiet --upgrade-strategy only-if-needed mergekit safetensors numpy torch

"$PY" -c 'import mergekit, torch, safetensors, numpy'
versions | tee "$VENV/versions.txt"
