#!/bin/bash
# The GPU check's one command, for the GPU machine:
#   bash gpu-bundle/run.sh gpu-bundle [--devices cpu,cuda] [gpu_check.py options...]
# Writes $OUT (default ./gpu-report): report.md, report.json, log.txt, compare.json,
# torch_bench.json. Every step is guarded and timed out on its own; the whole run stays
# under --budget seconds (default 450) and this script under 8 minutes.
set -u
BUNDLE=${1:-$(dirname "$0")}
shift || true
OUT=${OUT:-./gpu-report}
export OUT
mkdir -p "$OUT"
PY=${PYTHON:-$(command -v python3 || command -v python)}
start=$(date +%s)
echo "run.sh: bundle $BUNDLE, report in $OUT, python $PY" >&2
# --budget applies to the driver; the outer timeout is the hard stop 20 s later.
budget=450
prev=""
for a in "$@"; do
  [ "$prev" = "--budget" ] && budget=${a%.*}
  case $a in --budget=*) budget=${a#--budget=}; budget=${budget%.*};; esac
  prev=$a
done
timeout -k 5 $((budget + 20)) "$PY" "$BUNDLE/gpu_check.py" --bundle "$BUNDLE" --out "$OUT" "$@" \
  > "$OUT/driver.out" 2>&1
rc=$?
cat "$OUT/driver.out" >&2
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
  # the driver itself died or was stopped: say so in the report (it rewrites it after each step)
  {
    echo
    echo "## run.sh: the driver exited with status $rc after $(( $(date +%s) - start )) s"
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "(stopped by the outer timeout of $((budget + 20)) s)"
    echo '```'
    tail -n 40 "$OUT/driver.out"
    echo '```'
  } >> "$OUT/report.md"
fi
# keep what comes back to a few files: the driver's own output goes into log.txt
{ echo; echo "===== driver output ====="; tail -c 100000 "$OUT/driver.out"; } >> "$OUT/log.txt"
rm -f "$OUT/driver.out"
echo "run.sh: done in $(( $(date +%s) - start )) s (driver status $rc); see $OUT/report.md" >&2
exit $rc
