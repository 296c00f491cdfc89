#!/usr/bin/python3
"""Where a method's time goes: `perf record -e cpu-clock` (software sampling, which works on
VMs without hardware counters) of `mergec run` on the benchmark checkpoints, summarized as the
share of samples in the compiled kernels (perf shows JIT code as [JIT]), in mergec's runtime
functions (by symbol), and in the kernel (page faults, copies to the page cache, writeback).

Usage: /usr/bin/python3 bench/profile_methods.py [--data bench/data] [--methods ties,della]
           [--top 6]
Methods and recipes are bench/methods_bench.py's."""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import methods_bench as MB  # noqa: E402


def profile(mergec, recipe, out, data_file, top):
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["perf", "record", "-q", "-F", "2000", "-e", "cpu-clock", "-o", data_file,
                    mergec, "run", recipe, "-o", out, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(out, ignore_errors=True)
    report = subprocess.run(["perf", "report", "-i", data_file, "--no-children", "--stdio",
                             "--sort", "dso,symbol", "-t", "|"], check=True, capture_output=True,
                            text=True).stdout
    groups = collections.Counter()
    symbols = collections.Counter()
    for line in report.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 3 or not fields[0].endswith("%"):
            continue
        share, dso, symbol = float(fields[0][:-1]), fields[1], fields[2][4:]
        if dso.startswith("[JIT]"):
            groups["compiled kernels"] += share
        elif dso == "[kernel.kallsyms]":
            groups["Linux kernel"] += share
        elif dso == "mergec" or dso.startswith("libMergec"):
            groups["mergec runtime"] += share
            # The function a lambda or template helper works for: the first lower-case
            # function of mergec::rt named in the symbol, past the generic helpers; for a
            # pass over chunks, with the pass's state type (which pass of it).
            helpers = ("overChunks", "overChunkIndices", "parallelFor", "runChunks")
            names = [n for n in re.findall(r"mergec::rt::(?:\(anonymous namespace\)::)?(\w+)", symbol)
                     if n[:1].islower() and n not in helpers]
            name = names[0] if names else symbol[:40]
            # Highway's vqsort (row ranks, runtime/lib/RowSortTarget.cpp): its function and level.
            hwy = re.match(r"hwy::N_(\w+)::detail::(\w+)", symbol)
            if hwy:
                name = "vqsort %s (%s)" % (hwy.group(2), hwy.group(1))
            state = re.search(r"overChunk\w*<mergec::rt::(?:\(anonymous namespace\)::)?(\w+)",
                              symbol)
            if state and state.group(1) != "ScratchOnly":
                name += " (%s)" % state.group(1)
            symbols[name] += share
        else:
            groups["other libraries"] += share
    os.remove(data_file)
    return groups, symbols.most_common(top)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, "bench", "data"))
    ap.add_argument("--methods", default="ties,ties scope=model,sce,dare_ties,della,"
                                         "model_stock filter_wise,breadcrumbs")
    ap.add_argument("--top", type=int, default=4)
    args = ap.parse_args()
    data = os.path.abspath(args.data)
    mergec = os.environ.get("MERGEC", os.path.join(ROOT, "build", "bin", "mergec"))
    scratch = os.path.join(data, "profile-out")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    print("| method | compiled kernels | mergec runtime (top symbols) | Linux kernel | other |")
    print("| --- | ---: | --- | ---: | ---: |")
    for name in args.methods.split(","):
        recipe = os.path.join(scratch, "recipe.merge")
        with open(recipe, "w") as f:
            for m in MB.METHODS[name][5]:
                f.write('model %s = "%s"\n' % (m, os.path.join(data, m)))
            f.write("merge %s\n" % MB.METHODS[name][0])
        # once untimed: the kernel cache, so the profile is the merge, not the compiler
        subprocess.run([mergec, "run", recipe, "-o", os.path.join(scratch, "o"), "--quiet"],
                       check=True)
        shutil.rmtree(os.path.join(scratch, "o"))
        groups, symbols = profile(mergec, recipe, os.path.join(scratch, "o"),
                                  os.path.join(scratch, "perf.data"), args.top)
        runtime = "%.0f %%" % groups["mergec runtime"]
        if symbols:
            runtime += ": " + "; ".join("%s %.0f %%" % (s, v) for s, v in symbols if v >= 1)
        print("| %s | %.0f %% | %s | %.0f %% | %.0f %% |" % (
            name, groups["compiled kernels"], runtime, groups["Linux kernel"],
            groups["other libraries"]), flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
