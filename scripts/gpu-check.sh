#!/bin/bash
# Prepares the GPU check bundle: every tests/gpu/recipes/*.merge compiled into a merge
# executable (with --device cuda where the compiler has it), mergec-cuda-tests when built, the
# scripts and run.sh. Then prints the one command to run on the GPU machine.
#   scripts/gpu-check.sh [BUILD_DIR (default build)] [BUNDLE_DIR (default gpu-bundle)]
# Environment: MERGEC (the compiler, default BUILD/bin/mergec), MAX_MIB (default 60), CPU (the
# x86-64 CPU the executables' host kernels are built for, default x86-64-v3: the GPU machine's
# processor is not this one, and kernels tuned for this one's features could stop it with SIGILL).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
BUNDLE=${2:-$ROOT/gpu-bundle}
MERGEC=${MERGEC:-$BUILD/bin/mergec}
MAX_MIB=${MAX_MIB:-60}
CPU=${CPU:-x86-64-v3}
[ -x "$MERGEC" ] || { echo "gpu-check: no compiler at $MERGEC (build first, or set MERGEC)" >&2; exit 1; }
# every public stdlib method must be exercised by some recipe (a lit test fails without;
# here a warning names it)
python3 "$ROOT/tests/gpu/stdlib_coverage.py" --root "$ROOT" --warn > /dev/null
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/recipes"
device_flag=(--device cuda)
probe=$("$MERGEC" compile "$ROOT/tests/gpu/recipes/bench-ta.merge" --emit=exe --device cuda \
          -o "$BUNDLE/.probe" 2>&1) || true
rm -f "$BUNDLE/.probe"
if grep -q "unknown option '--device'" <<<"$probe"; then
  echo "gpu-check: WARNING: $MERGEC has no --device option: compiling CPU-only executables" \
       "(the cuda steps will be reported as skipped)" >&2
  device_flag=()
fi
exes="["
sep=""
for r in "$ROOT"/tests/gpu/recipes/*.merge; do
  name=$(basename "$r" .merge)
  t0=$(date +%s.%N)
  "$MERGEC" compile "$r" --emit=exe "${device_flag[@]}" --cpu "$CPU" -o "$BUNDLE/$name"
  kind=check; case $name in bench-*) kind=bench;; esac
  awk -v n="$name" -v b="$(stat -c %s "$BUNDLE/$name")" -v t0="$t0" -v t1="$(date +%s.%N)" \
    'BEGIN { printf "gpu-check: %-18s %6.1f MB  (%.1f s)\n", n, b / 1e6, t1 - t0 }'
  exes+="$sep{\"name\": \"$name\", \"kind\": \"$kind\"}"
  sep=", "
  cp "$r" "$BUNDLE/recipes/"
done
echo "$exes]" > "$BUNDLE/exes.json"
# Every recipe's kernels, bf16 and f32, through ptxas -v for sm_90 (the driver's assembler, for
# the H200): a kernel over a device limit (48 KiB of static shared memory, registers) fails here
# and not on the GPU machine's 15 minutes; the summary (registers, shared memory, spills) goes
# into build-info.json and so into the report.
# The ptxas the build was configured with (SelectionKernels.cmake; lit's %ptxas is the same).
PTXAS=${PTXAS:-$(sed -n 's/^MERGEC_PTXAS_EXECUTABLE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)}
PTXAS=${PTXAS:-$(command -v ptxas || true)}
PTXAS_DIR=$(mktemp -d)
trap 'rm -rf "$PTXAS_DIR"' EXIT
if [ ${#device_flag[@]} -gt 0 ] && [ -x "$PTXAS" ]; then
  for r in "$ROOT"/tests/gpu/recipes/*.merge; do
    for dtype in bf16 f32; do
      log=$PTXAS_DIR/$(basename "$r" .merge)-$dtype.log
      ( "$MERGEC" compile "$r" --emit=ptx --dtype "$dtype" -o "${log%.log}.ptx" &&
        "$PTXAS" -arch=sm_90 -v "${log%.log}.ptx" -o /dev/null ) > "$log" 2>&1 || echo failed >> "$log.failed" &
    done
  done
  wait
  if ls "$PTXAS_DIR"/*.failed > /dev/null 2>&1; then
    for f in "$PTXAS_DIR"/*.failed; do
      echo "gpu-check: ptxas: $(basename "${f%.log.failed}"):" >&2
      grep -iE 'error|fatal' "${f%.failed}" | head -5 >&2
    done
    exit 1
  fi
else
  echo "gpu-check: WARNING: no ptxas (set PTXAS) or no CUDA target: the PTX is not assembled here" >&2
fi
if [ -x "$BUILD/bin/mergec-cuda-tests" ]; then
  cp "$BUILD/bin/mergec-cuda-tests" "$BUNDLE/"
  echo "gpu-check: mergec-cuda-tests links:" $(ldd "$BUNDLE/mergec-cuda-tests" | awk '{print $1}' | grep -v vdso)
  glibcxx=$(objdump -T "$BUNDLE/mergec-cuda-tests" 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1 || true)
  [ -n "$glibcxx" ] && echo "gpu-check: WARNING: mergec-cuda-tests needs the system's libstdc++ ($glibcxx);" \
    "link it with -static-libstdc++ -static-libgcc to run anywhere" >&2
else
  echo "gpu-check: no $BUILD/bin/mergec-cuda-tests: the gtest step will be skipped" >&2
fi
cp "$ROOT"/tests/gpu/*.py "$ROOT/tests/gpu/run.sh" "$ROOT/tests/gpu/README.md" "$BUNDLE/"
# what the GPU machine needs to know about this build: the CPU features the kernels were compiled
# for, the newest glibc symbol version the executables need
first=$(ls "$BUNDLE"/bench-ta)
glibc=$(objdump -T "$first" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)
python3 - "$BUNDLE" "$glibc" "${#device_flag[@]}" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo ?)" \
  "$("$MERGEC" --version 2>&1 | head -1)" "$(realpath "$BUILD")" "$PTXAS_DIR" <<'PY'
import glob, json, os, re, sys
bundle, glibc, cuda, rev, version, bundle_build, ptxas_dir = sys.argv[1:]
# ptxas -v's lines per kernel: "Compiling entry function 'K'", "N bytes spill stores", "Used R
# registers, ..., S bytes smem"
kernels = {}
for log in sorted(glob.glob(os.path.join(ptxas_dir, "*.log"))):
    name = None
    for line in open(log):
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            name = os.path.basename(log)[:-4] + ":" + m.group(1)
            kernels[name] = {"registers": 0, "smem": 0, "spill": 0}
        elif name:
            m = re.search(r"(\d+) bytes spill stores", line)
            if m:
                kernels[name]["spill"] = int(m.group(1))
            m = re.search(r"Used (\d+) registers", line)
            if m:
                kernels[name]["registers"] = int(m.group(1))
                s = re.search(r"(\d+) bytes smem", line)
                kernels[name]["smem"] = int(s.group(1)) if s else 0
ptxas = None
if kernels:
    most = max(kernels, key=lambda k: kernels[k]["registers"])
    shared = max(kernels, key=lambda k: kernels[k]["smem"])
    ptxas = {"arch": "sm_90", "kernels": len(kernels),
             "max_registers": [kernels[most]["registers"], most],
             "max_smem_bytes": [kernels[shared]["smem"], shared],
             "spilling": {k: v["spill"] for k, v in kernels.items() if v["spill"]}}
    print("gpu-check: ptxas sm_90: %d kernels assembled; most registers %d (%s); most shared memory "
          "%d bytes (%s); %d spill" % (len(kernels), kernels[most]["registers"], most,
                                       kernels[shared]["smem"], shared, len(ptxas["spilling"])))
flags = []
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            break
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({"harness_git": rev, "build_dir": bundle_build, "mergec": version, "cuda_compiled": cuda != "0", "glibc_needed": glibc,
           "ptxas": ptxas,
           "build_cpu": model, "cpu_flags": flags}, open(bundle + "/build-info.json", "w"), indent=1)
PY
echo "gpu-check: ldd $BUNDLE/bench-ta:"
ldd "$BUNDLE/bench-ta" | sed 's/^/    /'
if ldd "$BUNDLE/bench-ta" | grep -qiE 'stdc\+\+|llvm|mlir|not found'; then
  echo "gpu-check: the executables link libraries the GPU machine may not have" >&2
  exit 1
fi
echo "gpu-check: the executables need glibc >= ${glibc#GLIBC_} (this machine: $(ldd --version | head -1 | grep -o '[0-9.]*$'))"
bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "gpu-check: bundle $BUNDLE: $(ls "$BUNDLE" | wc -l) entries, $mib MiB (limit $MAX_MIB MiB)"
if [ "$mib" -ge "$MAX_MIB" ]; then
  echo "gpu-check: the bundle is too large" >&2
  exit 1
fi
rel=$(realpath --relative-to="$ROOT" "$BUNDLE" 2>/dev/null || echo "$BUNDLE")
echo "gpu-check: on the GPU machine, from the repository root:"
echo "    bash $rel/run.sh $rel"
