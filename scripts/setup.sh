#!/usr/bin/env bash
# Installs every dependency from Debian packages (idempotent) and builds build/bin/mergec.
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake ninja-build git
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22
  antlr4 libantlr4-runtime-dev uuid-dev default-jre-headless
  nlohmann-json3-dev googletest libgtest-dev libyaml-cpp-dev
  libclang-rt-22-dev
  python3 python3-numpy time
  libopenmpi-dev openmpi-bin
  libopenblas-dev liblapacke-dev libkissfft-dev libhwy-dev pybind11-dev python3-venv
  ccache
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "${1:-}" = "--no-build" ] && exit 0

# ccache (installed above): another clone on this machine reuses what this one compiled.
source "$root/scripts/ccache-env.sh"
cmake -S "$root" -B "$root/build" -G Ninja "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
  -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
  -DLLVM_DIR=/usr/lib/llvm-22/lib/cmake/llvm
cmake --build "$root/build" -j "$(nproc)"
echo "setup: built $root/build/bin/mergec" >&2
# Small bf16 checkpoints for examples/task_arithmetic.merge (idempotent, no downloads).
/usr/bin/python3 "$root/examples/make_models.py"
