#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-22, ASan+UBSan) and runs each for SECONDS (default 60).
# New inputs go to a scratch corpus; crashes are written to build-fuzz/crashes/ and fail the run.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     targets: recipe safetensors index config cli
#   e.g. scripts/fuzz.sh 3600 index               (docs/reliability.md records long runs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=(recipe safetensors index config cli)
[ $# -gt 0 ] && targets=("$@")
build=$root/build-fuzz
mkdir -p "$build"
source "$root/scripts/ccache-env.sh" # as setup.sh's: reused across clones on this machine
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
  -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir -DMERGEC_FUZZ=ON -DMERGEC_ENABLE_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/%/-fuzzer}"
mkdir -p "$build/crashes"
status=0
for target in "${targets[@]}"; do
  work=$build/corpus-$target
  mkdir -p "$work"
  echo "== fuzzing $target for ${seconds}s =="
  # Dictionaries help the fuzzers past the lexers: tokens for recipes, JSON keys for the files
  # (safetensors headers, indexes, config.json), options for the command line.
  case $target in
    recipe) dict=recipe.dict ;;
    cli) dict=cli.dict ;;
    *) dict=json.dict ;;
  esac
  # Seeds are committed in tests/fuzz/corpus/TARGET.
  if ! ASAN_OPTIONS=detect_leaks=1 "$build/bin/$target-fuzzer" "$work" "$root/tests/fuzz/corpus/$target" \
      -dict="$root/tests/fuzz/$dict" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$build/crashes/$target-" -print_final_stats=1 \
      2> "$build/$target.log"; then
    status=1
    echo "fuzz: $target found a problem; see $build/$target.log and $build/crashes/" >&2
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$build/$target.log" | tail -3
done
exit $status
