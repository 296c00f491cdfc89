#!/usr/bin/env python3
"""Targets: the kernel cache and merge executables, measured (docs/benchmarks.md).

1. Per kernel: compile time with a cold cache vs load time with a warm one (--verbose lines), and
   the wall time of `mergec run` of a 10-rule recipe on the small example models
   (examples/models, bf16), cold vs warm, best of --runs.
2. `mergec compile --emit=exe` of the task-arithmetic benchmark recipe (bench/run_bench.sh's
   data, ~100M bf16 parameters x 4): the executable's size, and its wall time against
   `mergec run` (warm kernel cache) on the same warm page cache, best of --runs.

Usage: bench/targets_bench.py [--runs 3] [--params 100M]"""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MERGEC = os.environ.get("MERGEC", os.path.join(ROOT, "build", "bin", "mergec"))
TEN_RULES = """
model base = "%(m)s/base"
model math = "%(m)s/math"
model code = "%(m)s/code"
param lam = 0.8
merge {
  "lm_head.weight"         => base
  "*.embed_tokens.weight"  => linear([base, math, code])
  "*.q_proj.weight"        => base + ties([tv(math), tv(code)], density = 0.3)
  "*.k_proj.weight"        => base + dare_ties([tv(math), tv(code)], density = 0.5, seed = 1)
  "*.v_proj.weight"        => slerp(base, math, t = 0.4)
  "*.o_proj.weight"        => geomedian([base, math, code])
  "*.gate_proj.weight"     => base + della([tv(math), tv(code)], density = 0.5, seed = 2)
  "*.up_proj.weight"       => model_stock(base, [math, code])
  "*.down_proj.weight"     => base + breadcrumbs([tv(math), tv(code)], density = 0.8)
  _                        => base + lam * task_arithmetic([tv(math), tv(code)])
}
"""


def run(cmd, **kw):
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit("failed: %s\n%s" % (" ".join(cmd), p.stderr))
    return wall, p


def kernel_times(stderr):
    return [(m.group(1), m.group(2), float(m.group(3))) for m in re.finditer(
        r"^jit: (rule_\d+) \([^)]*\): (compiled|loaded from the cache) in ([0-9.]+) ms$", stderr, re.M)]


def cache_bench(runs, scratch):
    recipe = os.path.join(scratch, "ten-rules.merge")
    with open(recipe, "w") as f:
        f.write(TEN_RULES % {"m": os.path.join(ROOT, "examples", "models")})
    out = os.path.join(scratch, "out")
    cold, warm, compiled, loaded = [], [], [], []
    for _ in range(runs):
        cache = os.path.join(scratch, "cache")
        shutil.rmtree(cache, ignore_errors=True)
        for kind in ("cold", "warm"):
            shutil.rmtree(out, ignore_errors=True)
            wall, p = run([MERGEC, "run", recipe, "-o", out, "--quiet", "--verbose", "--cache-dir", cache])
            times = kernel_times(p.stderr)
            (cold if kind == "cold" else warm).append(wall)
            (compiled if kind == "cold" else loaded).append([t for _, _, t in times])
    n = len(compiled[0])
    per = lambda xs: sorted(sum(x) / len(x) for x in xs)[0]
    print("## Kernel cache: 10-rule recipe on examples/models (%d kernels), best of %d" % (n, runs))
    print("| | wall s | kernels: mean ms each | kernels: total ms |")
    print("| --- | ---: | ---: | ---: |")
    print("| cold cache (every kernel compiled) | %.3f | %.1f | %.0f |" % (min(cold), per(compiled), min(sum(x) for x in compiled)))
    print("| warm cache (every kernel loaded) | %.3f | %.1f | %.0f |" % (min(warm), per(loaded), min(sum(x) for x in loaded)))
    print()


def exe_bench(runs, params, scratch):
    data = os.environ.get("BENCH_DATA", os.path.join(ROOT, "bench", "data"))
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "make_bench_models.py"), "--params",
                    params, "--models", "4", "--out", data], check=True, stdout=subprocess.DEVNULL)
    recipe = os.path.join(data, "task_arithmetic.merge")
    with open(recipe, "w") as f:
        f.write('model base = "base"\nmodel ft1 = "ft1"\nmodel ft2 = "ft2"\nmodel ft3 = "ft3"\n'
                'param lam = 0.8\nmerge base + lam * (tv(ft1) + tv(ft2) + tv(ft3)) / 3\n')
    exe = os.path.join(scratch, "merge-ta")
    compile_wall, _ = run([MERGEC, "compile", recipe, "--emit=exe", "-o", exe])
    for m in ("base", "ft1", "ft2", "ft3"):  # warm the page cache
        with open(os.path.join(data, m, "model.safetensors"), "rb") as f:
            while f.read(1 << 24):
                pass
    cache = os.path.join(scratch, "cache")
    out = os.path.join(scratch, "out")
    timings = {"mergec run (warm kernel cache)": [], "executable": []}
    for _ in range(runs):
        for name, cmd in (("mergec run (warm kernel cache)", [MERGEC, "run", recipe, "--cache-dir", cache]),
                          ("executable", [exe])):
            shutil.rmtree(out, ignore_errors=True)
            wall, _ = run(cmd + ["-o", out, "--quiet"])
            timings[name].append(wall)
    print("## Merge executable: task arithmetic, 4 x %s bf16 parameters, best of %d" % (params, runs))
    print("`mergec compile --emit=exe`: %.2f s (5 signatures per rule, linked); executable %.1f MB" %
          (compile_wall, os.path.getsize(exe) / 1e6))
    print()
    print("| run | wall s |")
    print("| --- | ---: |")
    for name, t in timings.items():
        print("| %s | %.3f |" % (name, min(t)))
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--params", default="100M")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="mergec-targets-bench-")
    try:
        cache_bench(args.runs, scratch)
        exe_bench(args.runs, args.params, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
