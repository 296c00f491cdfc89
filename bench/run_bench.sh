#!/usr/bin/env bash
# Times `mergec run` of a task-arithmetic recipe over a bf16 base and 3 fine-tunes (~100M params
# each by default) against an I/O floor, and prints a markdown table.
#
# Usage: bench/run_bench.sh [--params 100M] [--runs 3] [--threads N]
#   env: MERGEC (default build/bin/mergec), BENCH_DATA (default bench/data),
#        BENCH_OUT (scratch for outputs, default $BENCH_DATA/out)
#
# The floor is measured on a warm page cache (every input is read once before any timing; no
# cache is dropped): `cat` of all input files to /dev/null is the read floor, `cp` + fsync of the
# base's model.safetensors is the write floor (one model's worth of bytes out, made durable as
# mergec makes its output durable before renaming it into place), and their
# sum is the floor a merge that reads every input once and writes one model can approach.
# mergec runs on the same warm cache; the best of --runs runs is reported.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mergec=${MERGEC:-$root/build/bin/mergec}
data=${BENCH_DATA:-$root/bench/data}
scratch=${BENCH_OUT:-$data/out}
python=/usr/bin/python3
params=100M
runs=3
threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    --params) params=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "usage: $0 [--params 100M] [--runs 3] [--threads N]" >&2; exit 2 ;;
  esac
done
[ -x "$mergec" ] || { echo "run_bench: no mergec at $mergec (run scripts/setup.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "run_bench: needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }

"$python" "$root/bench/make_bench_models.py" --params "$params" --models 4 --out "$data" >&2

models=(base ft1 ft2 ft3)
inputs=()
for m in "${models[@]}"; do inputs+=("$data/$m/model.safetensors"); done
in_bytes=$(stat -c %s "${inputs[@]}" | awk '{s += $1} END {print s}')
out_bytes=$(stat -c %s "$data/base/model.safetensors")

recipe="$data/task_arithmetic.merge"
cat > "$recipe" <<'EOF'
# bench/run_bench.sh: task arithmetic over three fine-tunes (every tensor, embeddings included).
model base = "base"
model ft1  = "ft1"
model ft2  = "ft2"
model ft3  = "ft3"
param lam  = 0.8
merge base + lam * (tv(ft1) + tv(ft2) + tv(ft3)) / 3
EOF

rm -rf "$scratch"
mkdir -p "$scratch"
trap 'rm -rf "$scratch"' EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.9g\", $* }"; }   # floating-point arithmetic without bc
# Warm the page cache with every input (untimed).
cat "${inputs[@]}" > /dev/null

best() { printf '%s\n' "$@" | sort -g | head -1; }
read_times=() write_times=()
for _ in $(seq "$runs"); do
  t0=$(now); cat "${inputs[@]}" > /dev/null; t1=$(now)
  read_times+=("$(calc "$t1 - $t0")")
  rm -f "$scratch/floor.safetensors"
  # fsync too: mergec fsyncs its output before the atomic rename, so an honest floor does.
  t0=$(now); cp "$data/base/model.safetensors" "$scratch/floor.safetensors"
  sync "$scratch/floor.safetensors"; t1=$(now)
  write_times+=("$(calc "$t1 - $t0")")
  rm -f "$scratch/floor.safetensors"
done
read_s=$(best "${read_times[@]}")
write_s=$(best "${write_times[@]}")
floor_s=$(calc "$read_s + $write_s")

# One timed mergec configuration: prints "wall_s rss_kb" (best wall of $runs, its peak RSS).
time_mergec() {
  local best_wall="" best_rss=""
  for i in $(seq "$runs"); do
    local out="$scratch/merged"
    rm -rf "$out"
    /usr/bin/time -v -o "$scratch/time.txt" "$mergec" run "$recipe" -o "$out" --quiet "$@" \
      || { echo "run_bench: mergec failed" >&2; cat "$scratch/time.txt" >&2; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$scratch/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$scratch/time.txt")
    if [ -z "$best_wall" ] || [ "$(calc "$wall < $best_wall")" = 1 ]; then
      best_wall=$wall; best_rss=$rss
    fi
  done
  echo "$best_wall $best_rss"
}

if [ -n "$threads" ]; then
  read -r mt_s mt_rss < <(time_mergec --threads "$threads")
  mt_label="mergec run --threads $threads"
else
  read -r mt_s mt_rss < <(time_mergec)
  mt_label="mergec run (all $(nproc) cores)"
fi
read -r st_s st_rss < <(time_mergec --threads 1)

gbps() { calc "$1 / $2 / 1000000000"; }
row() {  # label wall bytes ratio rss_kb
  local rss="-"
  [ "$5" != "-" ] && rss=$(printf '%.0f' "$(calc "$5 / 1024")")
  printf '| %s | %.3f | %.2f | %s | %s |\n' "$1" "$2" "$(gbps "$3" "$2")" "$4" "$rss"
}
ratio() { printf '%.2fx' "$(calc "$1 / $floor_s")"; }

echo
echo "mergec bench: 4 bf16 models (base + 3 fine-tunes), $(printf '%.1f' "$(calc "$in_bytes / 1000000")") MB in," \
  "$(printf '%.1f' "$(calc "$out_bytes / 1000000")") MB out; $(nproc) cores; warm page cache; best of $runs"
echo "recipe: base + lam * (tv(ft1) + tv(ft2) + tv(ft3)) / 3"
echo
echo "| step | wall s | GB/s | vs floor | peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: |"
row "read floor: cat inputs > /dev/null" "$read_s" "$in_bytes" "-" "-"
row "write floor: cp base + fsync" "$write_s" "$out_bytes" "-" "-"
row "floor (read + write)" "$floor_s" "$in_bytes" "1.00x" "-"
row "$mt_label" "$mt_s" "$in_bytes" "$(ratio "$mt_s")" "$mt_rss"
row "mergec run --threads 1" "$st_s" "$in_bytes" "$(ratio "$st_s")" "$st_rss"
echo
echo "GB/s: input bytes (the write floor: output bytes) per second of wall time. Peak RSS is GNU"
echo "time's maximum resident set size: it counts the pages of mmap'd input files that are resident."
