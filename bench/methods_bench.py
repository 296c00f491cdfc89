#!/usr/bin/python3
"""Times mergec's merge methods on the benchmark checkpoints (bench/make_bench_models.py: a bf16
base + 3 fine-tunes) against the I/O floor and, when a mergekit virtual environment is given,
against `mergekit-yaml` on the same data in the same run. Prints a markdown table.

Usage: /usr/bin/python3 bench/methods_bench.py [--params 100M] [--runs 2]
           [--mergekit .venv-parity] [--methods ties,geomedian,...]

The floor is `cat` of the inputs a method reads (warm page cache) plus `cp` + fsync of one
model: a merge that reads every input once and writes one model. mergec's phases that need the
whole tensor first (reductions, selections) read their inputs again from the page cache, and a
model-scope method streams the model once or twice more before merging; the `passes` column
counts the phases per tensor of the rule (from `mergec compile --emit=fused`). mergekit's time
is one run of the CLI (dtype float32 compute, bfloat16 out, as tests/parity uses) and includes
its start-up (importing torch, measured separately with `mergekit-yaml --help` and shown)."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTS = ["ft1", "ft2", "ft3"]
TVS = "[tv(ft1), tv(ft2), tv(ft3)]"

# name: (mergec expression, mergekit method or None, per-model parameters, global parameters)
METHODS = {
    "task_arithmetic": ("base + task_arithmetic(%s)" % TVS, "task_arithmetic", {"weight": 1.0}, {}),
    "ties": ("base + ties(%s, density = 0.2)" % TVS, "ties", {"weight": 1.0, "density": 0.2},
             {"normalize": True}),
    "ties scope=model": ("base + ties(%s, density = 0.2, scope = model)" % TVS, None, {}, {}),
    "dare_ties": ("base + dare_ties(%s, density = 0.5)" % TVS, "dare_ties",
                  {"weight": 1.0, "density": 0.5}, {}),
    "della": ("base + della(%s, density = 0.5, epsilon = 0.15)" % TVS, "della",
              {"weight": 1.0, "density": 0.5, "epsilon": 0.15}, {}),
    "sce": ("base + sce(%s, select_topk = 0.5)" % TVS, "sce", {"weight": 1.0},
            {"select_topk": 0.5}),
    "multislerp": ("multislerp([ft1, ft2, ft3])", "multislerp", {"weight": 1.0}, {}),
    "model_stock": ("model_stock(base, [ft1, ft2, ft3])", "model_stock", {}, {}),
    "model_stock filter_wise": ("model_stock(base, [ft1, ft2, ft3], filter_wise = true)",
                                "model_stock", {}, {"filter_wise": True}),
    "geomedian": ("base + geomedian(%s)" % TVS, None, {}, {}),
    "geomedian scope=model": ("base + geomedian(%s, scope = model)" % TVS, None, {}, {}),
}
NO_BASE = {"multislerp"}  # mergekit methods that take no base_model


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("methods_bench: %s failed:\n%s%s" % (cmd[0], p.stdout, p.stderr))
    return wall


def io_floor(files, base_file, scratch, runs):
    best_read, best_write = float("inf"), float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for f in files:
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        best_read = min(best_read, time.perf_counter() - t0)
        target = os.path.join(scratch, "floor.safetensors")
        t0 = time.perf_counter()
        shutil.copyfile(base_file, target)
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        best_write = min(best_write, time.perf_counter() - t0)
        os.remove(target)
    return best_read, best_write


def passes(mergec, recipe):
    fused = sh([mergec, "compile", recipe, "--emit=fused"]).stdout
    phases = len(re.findall(r"merge\.(reduce_kernel|select_kernel|row_kernel) ", fused))
    model = len(re.findall(r"\{model_scope", fused))
    return phases + 1, model


def mergekit_yaml(method, data, params, global_params):
    lines = ["merge_method: %s" % method]
    if method not in NO_BASE:
        lines.append("base_model: %s" % os.path.join(data, "base"))
    lines.append("models:")
    for m in FTS:
        lines.append("  - model: %s" % os.path.join(data, m))
        if params:
            lines.append("    parameters: {%s}" % ", ".join("%s: %s" % kv for kv in params.items()))
    if global_params:
        lines.append("parameters: {%s}" % ", ".join(
            "%s: %s" % (k, str(v).lower() if isinstance(v, bool) else v)
            for k, v in global_params.items()))
    lines += ["dtype: float32", "out_dtype: bfloat16"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="100M")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--mergekit", help="a virtual environment with mergekit (tests/parity/setup_venv.sh)")
    ap.add_argument("--methods", help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--data", default=os.path.join(ROOT, "bench", "data"))
    args = ap.parse_args()
    mergec = os.environ.get("MERGEC", os.path.join(ROOT, "build", "bin", "mergec"))
    chosen = args.methods.split(",") if args.methods else list(METHODS)
    for m in chosen:
        if m not in METHODS:
            sys.exit("methods_bench: unknown method %r" % m)

    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_bench_models.py"),
                    "--params", args.params, "--models", "4", "--out", args.data], check=True,
                   stdout=sys.stderr)
    scratch = os.path.join(args.data, "methods-out")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    files = [os.path.join(args.data, m, "model.safetensors") for m in ["base"] + FTS]
    in_bytes = sum(os.path.getsize(f) for f in files)
    read_s, write_s = io_floor(files, files[0], scratch, max(args.runs, 2))
    floor = read_s + write_s

    kit = None
    if args.mergekit:
        kit = os.path.join(args.mergekit, "bin", "mergekit-yaml")
        startup = timed([kit, "--help"])

    rows = []
    for name in chosen:
        expr, kit_method, params, global_params = METHODS[name]
        recipe = os.path.join(scratch, "recipe.merge")
        with open(recipe, "w") as f:
            for m in ["base"] + FTS:
                f.write('model %s = "%s"\n' % (m, os.path.join(args.data, m)))
            f.write("merge %s\n" % expr)
        n_passes, n_model = passes(mergec, recipe)
        out = os.path.join(scratch, "merged")
        best = float("inf")
        for _ in range(args.runs):
            shutil.rmtree(out, ignore_errors=True)
            best = min(best, timed([mergec, "run", recipe, "-o", out, "--quiet"]))
        kit_s = None
        if kit and kit_method:
            cfg = os.path.join(scratch, "mergekit.yml")
            with open(cfg, "w") as f:
                f.write(mergekit_yaml(kit_method, args.data, params, global_params))
            kout = os.path.join(scratch, "mergekit-out")
            shutil.rmtree(kout, ignore_errors=True)
            kit_s = timed([kit, cfg, kout, "--allow-crimes", "--out-shard-size", "5B", "--quiet",
                           "--no-copy-tokenizer", "--no-write-model-card"])
            shutil.rmtree(kout, ignore_errors=True)
        rows.append((name, n_passes, n_model, best, kit_s))
        print("%s: %.3f s" % (name, best), file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)

    print("mergec methods bench: 4 bf16 models (base + 3 fine-tunes), %.1f MB in; %d cores; "
          "warm page cache; mergec best of %d" % (in_bytes / 1e6, os.cpu_count(), args.runs))
    print("floor: read %.3f s + write %.3f s = %.3f s" % (read_s, write_s, floor))
    if kit:
        print("mergekit-yaml start-up (--help): %.2f s, included in its column" % startup)
    print()
    print("| method | phases per tensor (model-scope) | mergec s | vs floor | mergekit s | mergekit / mergec |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, n_passes, n_model, best, kit_s in rows:
        k = "-" if kit_s is None else "%.2f" % kit_s
        r = "-" if kit_s is None else "%.1fx" % (kit_s / best)
        print("| %s | %d (%d) | %.3f | %.2fx | %s | %s |" % (name, n_passes, n_model, best,
                                                            best / floor, k, r))


if __name__ == "__main__":
    main()
