#!/usr/bin/python3
"""Times mergec's merge methods on the benchmark checkpoints (bench/make_bench_models.py: a bf16
base + 3 fine-tunes) against the I/O floor and, when a mergekit virtual environment is given,
against `mergekit-yaml` on the same data in the same run. Prints a markdown table.

Usage: /usr/bin/python3 bench/methods_bench.py [--params 100M | --params 1B --shape llama2-7b]
           [--rounds 3] [--threads-compare] [--mergekit .venv-parity] [--methods ties,...]

Rounds alternate: each round measures the floor once and runs every chosen method once (and with
--threads-compare once more with `--threads 1`), so drift on a shared machine spreads over every
row; the table reports medians over rounds. The floor is `cat` of the files a method reads (warm
page cache) plus `cp` + fsync of one model: a merge that reads every input once and writes one
model. mergec's phases that need the whole tensor first (reductions, selections) read their
inputs again from the page cache, and a model-scope method streams the model once or twice more
before merging; the `passes` column counts the phases per tensor of the rule (from `mergec
compile --emit=fused`). Memory: the peak of RssAnon (sampled from /proc/PID/status every 2 ms:
what the process itself holds) and VmHWM (which also counts the resident pages of mmapped
inputs, i.e. page cache). mergekit's time is one run of the CLI per method (dtype float32
compute, bfloat16 out, as tests/parity uses), shown with and without its start-up (importing
torch, measured separately with `mergekit-yaml --help`)."""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTS = ["ft1", "ft2", "ft3"]
TVS = "[tv(ft1), tv(ft2), tv(ft3)]"

# name: (mergec expression, mergekit method or None, per-model parameters, global parameters,
#        target (x the floor, from the scale issue), models read). mergekit's slerp and nuslerp
# take two models: base and ft1.
ALL = ["base"] + FTS
TWO = ["base", "ft1"]
METHODS = {
    "task_arithmetic": ("base + task_arithmetic(%s)" % TVS, "task_arithmetic", {"weight": 1.0}, {},
                        1.25, ALL),
    "linear": ("linear([base, ft1, ft2, ft3])", "linear", {"weight": 1.0}, {}, 1.25, ALL),
    "slerp": ("slerp(base, ft1, 0.3)", "slerp", {}, {"t": 0.3}, 1.25, TWO),
    "nuslerp": ("nuslerp(base, ft1, 0.5)", "nuslerp", {"weight": 0.5}, {}, 1.25, TWO),
    "model_stock": ("model_stock(base, [ft1, ft2, ft3])", "model_stock", {}, {}, 1.25, ALL),
    "ties": ("base + ties(%s, density = 0.2)" % TVS, "ties", {"weight": 1.0, "density": 0.2},
             {"normalize": True}, 2.0, ALL),
    "breadcrumbs": ("base + breadcrumbs(%s, density = 0.9, gamma = 0.01)" % TVS, "breadcrumbs",
                    {"weight": 1.0, "density": 0.9, "gamma": 0.01}, {}, 2.0, ALL),
    "breadcrumbs_ties": ("base + breadcrumbs_ties(%s, density = 0.9, gamma = 0.01)" % TVS,
                         "breadcrumbs_ties", {"weight": 1.0, "density": 0.9, "gamma": 0.01}, {},
                         2.0, ALL),
    "sce": ("base + sce(%s, select_topk = 0.5)" % TVS, "sce", {"weight": 1.0},
            {"select_topk": 0.5}, 2.0, ALL),
    "dare_linear": ("base + dare_linear(%s, density = 0.5)" % TVS, "dare_linear",
                    {"weight": 1.0, "density": 0.5}, {}, 2.0, ALL),
    "dare_ties": ("base + dare_ties(%s, density = 0.5)" % TVS, "dare_ties",
                  {"weight": 1.0, "density": 0.5}, {}, 2.0, ALL),
    "della": ("base + della(%s, density = 0.5, epsilon = 0.15)" % TVS, "della",
              {"weight": 1.0, "density": 0.5, "epsilon": 0.15}, {}, 2.0, ALL),
    "della_linear": ("base + della_linear(%s, density = 0.5, epsilon = 0.15)" % TVS,
                     "della_linear", {"weight": 1.0, "density": 0.5, "epsilon": 0.15}, {}, 2.0,
                     ALL),
    "geomedian": ("base + geomedian(%s)" % TVS, None, {}, {}, 2.0, ALL),
    "karcher": ("karcher([ft1, ft2, ft3])", "karcher", {}, {}, 2.0, FTS),
    "multislerp": ("multislerp([ft1, ft2, ft3])", "multislerp", {"weight": 1.0}, {}, 2.0, FTS),
    "model_stock filter_wise": ("model_stock(base, [ft1, ft2, ft3], filter_wise = true)",
                                "model_stock", {}, {"filter_wise": True}, 2.0, ALL),
    "ties scope=model": ("base + ties(%s, density = 0.2, scope = model)" % TVS, None, {}, {},
                         3.0, ALL),
    "geomedian scope=model": ("base + geomedian(%s, scope = model)" % TVS, None, {}, {}, None,
                              ALL),
    # Not a method: what DELLA cannot do without, its three task vectors ranked within rows and
    # the output written (docs/benchmarks.md: why DELLA misses its target).
    "della's ranks alone": ("base + 0 * (row_rank(tv(ft1)) + row_rank(tv(ft2)) + "
                            "row_rank(tv(ft3)))", None, {}, {}, None, ALL),
}
# mergekit methods run without a base_model (their recipes above merge models, not task vectors)
NO_BASE = {"multislerp", "karcher", "linear", "nuslerp"}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd, fatal=True):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        message = "methods_bench: %s failed:\n%s%s" % (cmd[0], p.stdout, p.stderr[-2000:])
        if fatal:
            sys.exit(message)
        print(message, file=sys.stderr)
        return None
    return wall


def status_kb(pid, fields):
    """The given fields of /proc/PID/status in KB (missing once the process has exited)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def measured(cmd):
    """Runs cmd; returns (wall s, peak RssAnon KB, VmHWM KB), sampling /proc every 2 ms."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    anon = hwm = 0
    while p.poll() is None:
        got = status_kb(p.pid, ("RssAnon", "VmHWM"))
        anon = max(anon, got.get("RssAnon", 0))
        hwm = max(hwm, got.get("VmHWM", 0))
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit("methods_bench: %s failed:\n%s%s" % (" ".join(cmd), out, err))
    return wall, anon, hwm


def read_floor(files):
    """`cat` of the files to /dev/null: seconds."""
    t0 = time.perf_counter()
    subprocess.run(["cat"] + files, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def write_floor(base_file, scratch):
    """`cp` of one model + fsync: seconds."""
    target = os.path.join(scratch, "floor.safetensors")
    t0 = time.perf_counter()
    subprocess.run(["cp", base_file, target], check=True)
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t = time.perf_counter() - t0
    os.remove(target)
    return t


def passes(mergec, recipe):
    fused = sh([mergec, "compile", recipe, "--emit=fused"]).stdout
    phases = len(re.findall(r"merge\.(reduce_kernel|select_kernel|row_kernel) ", fused))
    model = len(re.findall(r"\{model_scope", fused))
    return phases + 1, model


def mergekit_yaml(method, data, params, global_params, models):
    lines = ["merge_method: %s" % method]
    if method not in NO_BASE and "base" in models:
        lines.append("base_model: %s" % os.path.join(data, "base"))
    lines.append("models:")
    # Without a base_model every model the recipe reads is listed; with one, the others (slerp
    # lists its base too: mergekit interpolates from the base_model to the other model).
    listed = models if method in NO_BASE or method == "slerp" else [m for m in models if m != "base"]
    for m in listed:
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
    ap.add_argument("--shape", help="make_bench_models.py --shape (llama2-7b)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads-compare", action="store_true",
                    help="also run every method with --threads 1 in each round")
    ap.add_argument("--mergekit", help="a virtual environment with mergekit (tests/parity/setup_venv.sh)")
    ap.add_argument("--methods", help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--data", default=os.path.join(ROOT, "bench", "data"))
    args = ap.parse_args()
    args.data = os.path.abspath(args.data)
    mergec = os.environ.get("MERGEC", os.path.join(ROOT, "build", "bin", "mergec"))
    chosen = args.methods.split(",") if args.methods else list(METHODS)
    for m in chosen:
        if m not in METHODS:
            sys.exit("methods_bench: unknown method %r" % m)

    gen = [sys.executable, os.path.join(ROOT, "bench", "make_bench_models.py"),
           "--params", args.params, "--models", "4", "--out", args.data]
    if args.shape:
        gen += ["--shape", args.shape]
    subprocess.run(gen, check=True, stdout=sys.stderr)
    scratch = os.path.join(args.data, "methods-out")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    path = {m: os.path.join(args.data, m, "model.safetensors") for m in ALL}
    in_bytes = sum(os.path.getsize(f) for f in path.values())
    subprocess.run(["cat"] + list(path.values()), stdout=subprocess.DEVNULL, check=True)  # warm

    recipes, phases = {}, {}
    for name in chosen:
        recipe = os.path.join(scratch, re.sub(r"\W+", "_", name) + ".merge")
        with open(recipe, "w") as f:
            for m in METHODS[name][5]:
                f.write('model %s = "%s"\n' % (m, os.path.join(args.data, m)))
            f.write("merge %s\n" % METHODS[name][0])
        recipes[name] = recipe
        phases[name] = passes(mergec, recipe)
        # One untimed run: compiles the kernels into the kernel cache, as a second run finds them.
        out = os.path.join(scratch, "merged")
        shutil.rmtree(out, ignore_errors=True)
        timed([mergec, "run", recipe, "-o", out, "--quiet"])

    reads = {}   # a tuple of models read -> [seconds per round]
    writes = []
    runs = {name: [] for name in chosen}
    runs1 = {name: [] for name in chosen}
    out = os.path.join(scratch, "merged")
    for r in range(args.rounds):
        writes.append(write_floor(path["base"], scratch))
        for models in {tuple(METHODS[n][5]) for n in chosen}:
            reads.setdefault(models, []).append(read_floor([path[m] for m in models]))
        for name in chosen:
            for threads, into in ((None, runs), ("1", runs1)):
                if threads and not args.threads_compare:
                    continue
                shutil.rmtree(out, ignore_errors=True)
                cmd = [mergec, "run", recipes[name], "-o", out, "--quiet"]
                if threads:
                    cmd += ["--threads", threads]
                into[name].append(measured(cmd))
        print("round %d of %d done" % (r + 1, args.rounds), file=sys.stderr)

    kit, startup, kit_s = None, None, {}
    if args.mergekit:
        kit = os.path.join(args.mergekit, "bin", "mergekit-yaml")
        startup = timed([kit, "--help"])
        for name in chosen:
            _, kit_method, params, global_params, _, models = METHODS[name]
            if not kit_method:
                continue
            cfg = os.path.join(scratch, "mergekit.yml")
            with open(cfg, "w") as f:
                f.write(mergekit_yaml(kit_method, args.data, params, global_params, models))
            kout = os.path.join(scratch, "mergekit-out")
            shutil.rmtree(kout, ignore_errors=True)
            kit_s[name] = timed([kit, cfg, kout, "--allow-crimes", "--out-shard-size", "5B",
                                 "--quiet", "--no-copy-tokenizer", "--no-write-model-card"],
                                fatal=False)
            shutil.rmtree(kout, ignore_errors=True)
            print("mergekit %s: %s s" % (name, kit_s[name]), file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)

    med = statistics.median
    write_s = med(writes)
    print("mergec methods bench: 4 bf16 models (base + 3 fine-tunes), %.1f MB in; %d cores; "
          "warm page cache; medians of %d alternating rounds" % (in_bytes / 1e6, os.cpu_count(),
                                                                 args.rounds))
    print("floor: write %.3f s (cp + fsync of one model); read (cat) of all four models %.3f s"
          % (write_s, med(reads.get(tuple(ALL), [float("nan")]))))
    if kit:
        print("mergekit-yaml start-up (--help): %.2f s" % startup)
    print()
    head = ["method", "target", "phases (model-scope)", "mergec s", "vs floor", "met"]
    if args.threads_compare:
        head += ["--threads 1 s", "2 threads / 1"]
    head += ["peak anon MiB", "VmHWM MiB"]
    if kit:
        head += ["mergekit s", "mergekit / mergec", "(mergekit - start-up) / mergec"]
    print("| " + " | ".join(head) + " |")
    print("| --- " + "| ---: " * (len(head) - 1) + "|")
    for name in chosen:
        target, models = METHODS[name][4], METHODS[name][5]
        floor = med(reads[tuple(models)]) + write_s
        wall = med(w for w, _, _ in runs[name])
        anon = max(a for _, a, _ in runs[name]) / 1024
        hwm = max(h for _, _, h in runs[name]) / 1024
        ratio = wall / floor
        met = "-" if target is None else ("yes" if ratio <= target else "no")
        row = [name, "-" if target is None else "%.2fx" % target,
               "%d (%d)" % phases[name], "%.3f" % wall, "%.2fx" % ratio, met]
        if args.threads_compare:
            w1 = med(w for w, _, _ in runs1[name])
            row += ["%.3f" % w1, "%.2fx" % (w1 / wall)]
        row += ["%.0f" % anon, "%.0f" % hwm]
        if kit:
            k = kit_s.get(name)
            row += ["-", "-", "-"] if k is None else [
                "%.2f" % k, "%.1fx" % (k / wall), "%.1fx" % ((k - startup) / wall)]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
