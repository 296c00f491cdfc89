#!/usr/bin/env bash
# The Python module's tests: `pip install .` into a virtual environment under the build
# directory (kept between runs; reinstalled only when a source changed), then pytest
# tests/python. Prints "python: SKIPPED: REASON" and exits 0 when the environment cannot be made
# or the Python registry is unreachable (the build requirements, pytest and numpy come from
# it); a build or test failure fails.
# Usage: scripts/test-python.sh [BUILD_DIR] [pytest args...]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${MERGEC_BUILD_DIR:-$root/build}}
shift $(( $# > 0 ? 1 : 0 ))
build=$(cd "$build" && pwd) # absolute: the tests run from inside it
venv=$build/python-venv
stamp=$venv/.mergec-installed
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

skip() {
  echo "python: SKIPPED: $*"
  exit 0
}

if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" > "$build/python-venv.log" 2>&1 ||
    skip "cannot create a virtual environment with $python -m venv (install python3-venv): $(tail -1 "$build/python-venv.log")"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# Everything from the registry first, so that an unreachable one is told apart from a failed
# build. --no-build-isolation below then needs no network.
if [ ! -f "$stamp" ]; then
  log=$build/python-requirements.log
  if ! "${pip[@]}" install --timeout 30 --retries 1 "scikit-build-core>=0.8" pytest numpy > "$log" 2>&1; then
    if grep -qiE "connection|resolve|network|timed? ?out|No matching distribution|Could not find a version|proxy|SSL" "$log"; then
      skip "the Python registry is unreachable ($(grep -iE "connection|resolve|network|timed? ?out|No matching distribution|Could not find a version|proxy|SSL" "$log" | tail -1 | cut -c1-160))"
    fi
    cat "$log"
    echo "python: FAILED: installing the test requirements"
    exit 1
  fi
fi

# Reinstall when any source the module is built from is newer than the last install.
sources=("$root/compiler" "$root/runtime" "$root/tools" "$root/python" "$root/stdlib"
         "$root/grammar" "$root/CMakeLists.txt" "$root/pyproject.toml")
if [ ! -f "$stamp" ] || [ -n "$(find "${sources[@]}" -newer "$stamp" -print -quit)" ]; then
  echo "python: pip install . (the build is kept in $build/python-build)"
  source "$root/scripts/ccache-env.sh" # another clone on this machine (CI's) reuses this build
  log=$build/python-install.log
  if ! CMAKE_ARGS="${launcher[*]}" \
      "${pip[@]}" install --no-build-isolation --no-deps \
      --config-settings="build-dir=$build/python-build" "$root" > "$log" 2>&1; then
    tail -40 "$log"
    echo "python: FAILED: pip install . (log: $log)"
    exit 1
  fi
  touch "$stamp"
fi

# From another directory, so `import mergec` finds the installed package, not python/mergec.
cd "$build" && exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/python" "$@"
