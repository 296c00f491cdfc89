#!/usr/bin/env bash
# Runs every test: GoogleTest (runtime) and lit (frontend, dialect, passes, lowering, end to end).
# Usage: scripts/test.sh [--sanitize] [lit args...]     e.g. scripts/test.sh --filter e2e
#   --sanitize  builds build-asan/ with ASan+UBSan (clang-22) and runs the same tests with it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MERGEC_BUILD_DIR:-$root/build}
lit=/usr/lib/llvm-22/bin/lit

if [ "${1:-}" = "--sanitize" ]; then
  shift
  build=$root/build-asan
  if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
      -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
      -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" > /dev/null || exit 1
  fi
  # Leaks are checked in our code; the suppressions name what LLVM and ANTLR keep for the
  # process lifetime on purpose.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:suppressions=$root/scripts/asan.supp
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

echo "== unit tests (GoogleTest) =="
unit_log=$(mktemp)
"$build/bin/mergec-unit-tests" --gtest_brief=1 2>&1 | tee "$unit_log"
unit_status=${PIPESTATUS[0]}
unit_passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$unit_log" | tail -1)
unit_failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$unit_log" | tail -1)
passed=$((passed + ${unit_passed:-0}))
failed=$((failed + ${unit_failed:-0}))
if [ "$unit_status" -ne 0 ] && [ "${unit_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
rm -f "$unit_log"

echo "== lit tests (frontend, dialect, passes, lowering, end to end) =="
lit_log=$(mktemp)
"$lit" -sv "$build/tests" "$@" 2>&1 | tee "$lit_log"
lit_status=${PIPESTATUS[0]}
lit_passed=$(sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p' "$lit_log" | tail -1)
lit_failed=$(sed -n 's/^ *Failed *: *\([0-9]*\).*/\1/p' "$lit_log" | tail -1)
passed=$((passed + ${lit_passed:-0}))
failed=$((failed + ${lit_failed:-0}))
if [ "$lit_status" -ne 0 ] && [ "${lit_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
rm -f "$lit_log"

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
