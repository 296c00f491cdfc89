#!/usr/bin/env bash
# Runs every test: GoogleTest (runtime), lit (frontend, dialect, passes, lowering, end to end)
# and pytest (the Python module; scripts/test-python.sh).
# Usage: scripts/test.sh [--sanitize] [lit args...]     e.g. scripts/test.sh --filter e2e
#   --sanitize  builds build-asan/ with ASan+UBSan (clang-22) and runs the same tests with it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MERGEC_BUILD_DIR:-$root/build}
lit=/usr/lib/llvm-22/bin/lit
source "$root/scripts/ccache-env.sh" # for the builds below, as setup.sh's

if [ "${1:-}" = "--sanitize" ]; then
  shift
  build=$root/build-asan
  # -fno-sanitize=function: that check reads a type hash just before every function called
  # through a pointer; compiled kernels (JIT or ahead of time) have none, and a kernel that
  # starts a page faults on the read.
  sanitize="-fsanitize=address,undefined -fno-sanitize=function"
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
      -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
      -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
      -DCMAKE_CXX_FLAGS="$sanitize -fno-sanitize-recover=all -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="$sanitize" > /dev/null || exit 1
  fi
  # Leaks are checked in our code; the suppressions name what LLVM and ANTLR keep for the
  # process lifetime on purpose.
  # allow_user_poisoning=0: LLVM's BumpPtrAllocator poisons and unpoisons its slabs only in
  # code compiled with ASan (its inline header code in our files), not in the libLLVM/libMLIR
  # we link, so MLIR storage allocated by the library reads as poisoned to our code: a false
  # use-after-poison. handle_sigbus=0: MappedInputGuard chains a SIGBUS it does not own to the
  # previous action, which must be the default one, as in a normal run.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allow_user_poisoning=0:handle_sigbus=0:suppressions=$root/scripts/asan.supp
  export LSAN_OPTIONS=suppressions=$root/scripts/lsan.supp
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  echo "test: sanitizer build in $build"
fi

if [ ! -f "$build/build.ninja" ]; then
  echo "test: no build in $build; run scripts/setup.sh first" >&2
  exit 1
fi
cmake --build "$build" -j "$(nproc)" || { echo "test: build failed" >&2; exit 1; }

passed=0
failed=0

# run_suite TITLE PASSED_SED FAILED_SED COMMAND...: runs a suite, echoing its output, and adds
# its counts (read from its summary with the two sed expressions) to the totals. A suite that
# fails without reporting a failed count (a crash, a build error) counts as one failure.
run_suite() {
  local title=$1 passed_sed=$2 failed_sed=$3 log status n_passed n_failed
  shift 3
  echo "== $title =="
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  n_passed=$(sed -n "$passed_sed" "$log" | tail -1)
  n_failed=$(sed -n "$failed_sed" "$log" | tail -1)
  rm -f "$log"
  passed=$((passed + ${n_passed:-0}))
  failed=$((failed + ${n_failed:-0}))
  if [ "$status" -ne 0 ] && [ "${n_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
}

run_suite "unit tests (GoogleTest)" \
  's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' \
  "$build/bin/mergec-unit-tests" --gtest_brief=1
run_suite "lit tests (frontend, dialect, passes, lowering, end to end)" \
  's/^ *Passed *: *\([0-9]*\).*/\1/p' 's/^ *Failed *: *\([0-9]*\).*/\1/p' \
  "$lit" -sv "$build/tests" "$@"

# The Python module (pip install . into a virtual environment under the build directory). Not
# under --sanitize: pip builds the module without the sanitizers.
if [ "$build" = "$root/build-asan" ]; then
  echo "== Python module (pytest) =="
  echo "python: SKIPPED: the sanitizer run does not build the Python module"
elif [ $# -gt 0 ]; then
  echo "== Python module (pytest) =="
  echo "python: not run with lit arguments (scripts/test-python.sh runs it alone)"
else
  run_suite "Python module (pytest)" \
    's/.* \([0-9]*\) passed.*/\1/p' 's/.* \([0-9]*\) failed.*/\1/p' \
    "$root/scripts/test-python.sh" "$build"
fi

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
