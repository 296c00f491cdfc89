#!/usr/bin/env bash
# mergekit parity: installs the parity venv if needed (tests/parity/setup_venv.sh), runs every
# merge method through mergekit and mergec (tests/parity/run_parity.py) and writes the report to
# docs/parity.md. Not part of scripts/test.sh: the venv is a ~6 GB install (torch + CUDA wheels).
# Extra arguments go to run_parity.py (e.g. --methods ties,slerp, --mergekit-cli, --workdir DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${PARITY_VENV:-$ROOT/.venv-parity}"
REPORT="${PARITY_REPORT:-$ROOT/docs/parity.md}"

"$ROOT/tests/parity/setup_venv.sh"
if [[ ! -x "$ROOT/build/bin/mergec" ]]; then
  echo "run_parity.sh: build/bin/mergec is missing; run scripts/setup.sh first" >&2
  exit 1
fi
exec "$VENV/bin/python" "$ROOT/tests/parity/run_parity.py" --report "$REPORT" "$@"
