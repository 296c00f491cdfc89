#!/usr/bin/env bash
# The NeurIPS 2024 LLM-merging entry's method at scale: the geometric median of the task vectors
# of 4 LoRA adapters (r = 16 on every linear layer) and tv(base) = 0, added to a ~1B-parameter
# bf16 Llama base, against the I/O floor (read every input byte once with `cat`, write and fsync
# one model with `cp`), on a warm page cache. Prints a markdown table (docs/benchmarks.md).
# Usage: bench/lora_geomedian_bench.sh [--params 1B] [--data bench/data-lora] [--runs 3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
params=1B data=$root/bench/data-lora runs=3
while [ $# -gt 0 ]; do
  case $1 in
    --params) params=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--params N] [--data DIR] [--runs N]" >&2; exit 2 ;;
  esac
done
mergec=${MERGEC:-$root/build/bin/mergec}
/usr/bin/python3 "$root/bench/make_bench_models.py" --params "$params" --models 1 --out "$data" >&2
for i in 1 2 3 4; do
  [ -f "$data/lora$i/adapter_model.safetensors" ] ||
    /usr/bin/python3 "$root/bench/make_bench_lora.py" --data "$data" --rank 16 --seed $((100 + i)) --name lora$i >&2
done
cat > "$data/geomedian.merge" <<'R'
model base = "base"
lora l1 = "lora1" on base
lora l2 = "lora2" on base
lora l3 = "lora3" on base
lora l4 = "lora4" on base
merge base + geomedian([tv(l1), tv(l2), tv(l3), tv(l4), tv(base)])
R
scratch=$(mktemp -d "$data/scratch.XXXX")
trap 'rm -rf "$scratch"' EXIT
now() { date +%s.%N; }
inputs=("$data/base/model.safetensors" "$data"/lora*/adapter_model.safetensors)
cat "${inputs[@]}" > /dev/null   # warm the page cache
best() { sort -g | head -1; }
floors=() merges=()
for r in $(seq "$runs"); do
  t0=$(now); cat "${inputs[@]}" > /dev/null; t1=$(now)
  cp "$data/base/model.safetensors" "$scratch/floor.safetensors"; sync "$scratch/floor.safetensors"; t2=$(now)
  rm -f "$scratch/floor.safetensors"
  floors+=("$(echo "$t2 - $t0" | bc -l)")
  t0=$(now); "$mergec" run "$data/geomedian.merge" -o "$scratch/out" --quiet --force; t1=$(now)
  merges+=("$(echo "$t1 - $t0" | bc -l)")
done
floor=$(printf '%s\n' "${floors[@]}" | best)
merge=$(printf '%s\n' "${merges[@]}" | best)
bytes=0
for f in "${inputs[@]}"; do bytes=$((bytes + $(stat -c %s "$f"))); done
printf '| workload | input bytes | floor s | mergec s | ratio |\n| --- | --- | --- | --- | --- |\n'
printf '| base %s + geomedian of 4 LoRA tvs (r = 16) and tv(base) | %.2f GB | %.2f | %.2f | %.2fx |\n' \
  "$params" "$(echo "$bytes / 1000000000" | bc -l)" "$floor" "$merge" "$(echo "$merge / $floor" | bc -l)"
