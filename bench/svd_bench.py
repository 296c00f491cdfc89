#!/usr/bin/python3
"""Times mergec's matrix phases (OpenBLAS/LAPACKE on the host) through the full pipeline against
numpy, and torch where a virtual environment with it is given, doing the same math on the same
matrices in the same run. Prints a markdown table.

Usage: /usr/bin/python3 bench/svd_bench.py [--sizes 4096x4096,4096x14336] [--runs 1]
           [--methods lowrank,tsv_merge] [--torch .venv-parity] [--work DIR] [--keep]

Checkpoints: an f32 base and 3 fine-tunes (base + 0.01 N(0,1)), one tensor per size (shapes as
Llama's o_proj 4096x4096 and down_proj 4096x14336 by default). Methods:
  lowrank    merge base + lowrank(tv(ft1), 64)        one thin SVD (sgesdd) per tensor
  tsv_merge  merge base + tsv_merge([tv(ft1), tv(ft2), tv(ft3)])
             3 SVDs per tensor, then the polar factors of the m x 3k and 3k x n bases (2 more)
mergec: the wall time of `mergec run` (kernel cache warm: one untimed run first), which
includes reading the inputs from the page cache and writing the output. `floor`: mergec on
the same inputs with the matrix phase replaced by elementwise arithmetic (base + tv(ft1);
base + the mean of the task vectors), i.e. the pipeline's I/O and start-up. numpy and torch:
the compute alone on arrays already in memory (task vectors in f32, the SVDs, the products,
+ base), with the thread count of the machine (torch.set_num_threads(nproc)); numpy is
Debian's, on the same OpenBLAS as mergec. The ratio columns divide by mergec's time less the
floor (the matrix phase itself)."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e", "lib"))
import st  # noqa: E402

FTS = ("ft1", "ft2", "ft3")
RECIPES = {
    "lowrank": ("base + lowrank(tv(ft1), 64)", "base + tv(ft1)"),
    "tsv_merge": ("base + tsv_merge([tv(ft1), tv(ft2), tv(ft3)])", "base + (tv(ft1) + tv(ft2) + tv(ft3)) / 3"),
}
NAMES = {(4096, 4096): "model.layers.0.self_attn.o_proj.weight",
         (4096, 14336): "model.layers.0.mlp.down_proj.weight"}

# The same math as stdlib/svd.merge, in numpy or torch (`xp` is the module, `svd` its thin SVD).
COMPUTE = r'''
def lowrank(xp, svd, base, fts):
    tv = fts[0] - base
    u, s, vt = svd(tv)
    return base + (u[:, :64] * s[:64]) @ vt[:64]

def polar(svd, m):
    u, _, vt = svd(m)
    return u @ vt

def tsv_merge(xp, svd, base, fts):
    k = min(base.shape) // len(fts)
    us, ss, vts = [], [], []
    for ft in fts:
        u, s, vt = svd(ft - base)
        us.append(u[:, :k]); ss.append(s[:k]); vts.append(vt[:k])
    return base + (polar(svd, xp.hstack(us)) * xp.concatenate(ss)) @ polar(svd, xp.vstack(vts))
'''

# Run in a process of its own (the thread count is fixed when the library loads):
# argv: lib dir, models dir, method, runs, library (numpy|torch), threads, fine-tunes...
BASELINE_SCRIPT = COMPUTE + r'''
import os, sys, time, json
lib, mdir, method, runs, which, threads = sys.argv[1:7]
fts = sys.argv[7:]
import numpy as np
sys.path.insert(0, lib)
import st
models = {m: st.read_model_f32(os.path.join(mdir, m)) for m in ["base"] + fts}
if which == "torch":
    import torch
    torch.set_num_threads(int(threads))
    xp, version = torch, torch.__version__
    svd = lambda m: torch.linalg.svd(m, full_matrices=False)
    wrap = lambda a: torch.from_numpy(a.copy())
else:
    xp, version = np, np.__version__
    svd = lambda m: np.linalg.svd(m, full_matrices=False)
    wrap = lambda a: a
fn = {"lowrank": lowrank, "tsv_merge": tsv_merge}[method]
svd(wrap(np.eye(64, dtype=np.float32)))  # untimed: loads the LAPACK backend (torch's is lazy)
best = None
for _ in range(int(runs)):
    total = 0.0
    for name in models["base"]:
        base, tvs = wrap(models["base"][name]), [wrap(models[m][name]) for m in fts]
        t0 = time.perf_counter()
        fn(xp, svd, base, tvs)
        total += time.perf_counter() - t0
    best = total if best is None else min(best, total)
print(json.dumps({"seconds": best, "version": version}))
'''


def make_models(mdir, sizes):
    rng = np.random.default_rng(0)
    base = {}
    for (m, n) in sizes:
        name = NAMES.get((m, n), "w_%dx%d" % (m, n))
        base[name] = (rng.standard_normal((m, n), dtype=np.float32) / np.float32(np.sqrt(n))).astype(np.float32)
    for model in ("base",) + FTS:
        tensors = {}
        for name, b in base.items():
            v = b if model == "base" else b + np.float32(0.01) * rng.standard_normal(b.shape, dtype=np.float32)
            tensors[name] = ("F32", v)
        d = os.path.join(mdir, model)
        os.makedirs(d, exist_ok=True)
        st.write_safetensors(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})


def mergec_time(mergec, work, expr, runs):
    recipe = os.path.join(work, "r.merge")
    with open(recipe, "w") as f:
        f.write('model base = "models/base"\n')
        for m in FTS:
            f.write('model %s = "models/%s"\n' % (m, m))
        f.write("merge %s\n" % expr)
    out = os.path.join(work, "out")
    tiny = ["--model=%s=%s" % (m, os.path.join(work, "tiny", m)) for m in ("base",) + FTS]
    best = None
    for i in range(runs + 1):  # the first run, on the tiny models, fills the kernel cache
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        p = subprocess.run([mergec, "run", recipe, "-o", out, "--quiet"] + (tiny if i == 0 else []),
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit("svd_bench: mergec failed:\n%s" % p.stderr)
        if i > 0:
            best = wall if best is None else min(best, wall)
    shutil.rmtree(out, ignore_errors=True)
    return best


def baseline_time(python, which, threads, mdir, method, runs):
    """Seconds of the compute alone in numpy or torch with `threads` BLAS/LAPACK threads."""
    import json
    fts = FTS if method == "tsv_merge" else FTS[:1]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(BASELINE_SCRIPT)
    try:
        p = subprocess.run([python, f.name, os.path.join(ROOT, "tests", "e2e", "lib"), mdir, method, str(runs),
                            which, str(threads)] + list(fts), capture_output=True, text=True, env=env)
    finally:
        os.unlink(f.name)
    if p.returncode != 0:
        sys.exit("svd_bench: %s failed:\n%s" % (which, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_tiny(mdir, tiny, sizes):
    """Checkpoints with the benchmark's tensor names and dtype but 8-row shapes: a run on them
    fills the kernel cache (kernels do not depend on shapes), so the timed run compiles nothing
    and the warm-up costs no SVD of the real size."""
    for model in ("base",) + FTS:
        tensors = {}
        for name, info in st.read_header(os.path.join(mdir, model, "model.safetensors"))[0].items():
            cols = max(8, info["shape"][-1] // 512)
            tensors[name] = ("F32", np.random.default_rng(len(tensors)).standard_normal((8, cols), dtype=np.float32))
        os.makedirs(os.path.join(tiny, model), exist_ok=True)
        st.write_safetensors(os.path.join(tiny, model, "model.safetensors"), tensors, {"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="4096x4096,4096x14336")
    ap.add_argument("--methods", default="lowrank,tsv_merge")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--baselines", default="numpy,torch",
                    help="numpy, numpy1 (one BLAS thread), torch, torch1; torch is skipped without a venv")
    ap.add_argument("--torch", default=os.path.join(ROOT, ".venv-parity"),
                    help="a virtual environment with torch")
    ap.add_argument("--mergec", default=os.path.join(ROOT, "build", "bin", "mergec"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    work = args.work or tempfile.mkdtemp(prefix="svd-bench-")
    os.makedirs(work, exist_ok=True)
    mdir = os.path.join(work, "models")
    venv_python = os.path.join(args.torch, "bin", "python")
    have_torch = os.path.exists(venv_python) and subprocess.run(
        [venv_python, "-c", "import torch"], capture_output=True).returncode == 0
    cores = os.cpu_count()
    baselines = []  # (label, python, library, threads)
    for b in args.baselines.split(","):
        lib, threads = (b[:-1], 1) if b.endswith("1") else (b, cores)
        if lib == "torch" and not have_torch:
            print("svd_bench: no torch in %s: %s skipped" % (args.torch, b))
            continue
        label = "%s (%d thread%s)" % (lib, threads, "" if threads == 1 else "s")
        baselines.append((label, venv_python if lib == "torch" else sys.executable, lib, threads))
    t0 = time.perf_counter()
    make_models(mdir, sizes)
    make_tiny(mdir, os.path.join(work, "tiny"), sizes)
    print("svd_bench: %s f32, base + 3 fine-tunes, %d cores, checkpoints written in %.1f s"
          % (", ".join("%dx%d" % s for s in sizes), cores, time.perf_counter() - t0), flush=True)
    rows = []
    versions = {}
    for method in args.methods.split(","):
        expr, floor_expr = RECIPES[method]
        mc = mergec_time(args.mergec, work, expr, args.runs)
        floor = mergec_time(args.mergec, work, floor_expr, args.runs)
        phase = max(mc - floor, 1e-9)
        times = []
        for label, python, lib, threads in baselines:
            r = baseline_time(python, lib, threads, mdir, method, args.runs)
            versions[lib] = r["version"]
            times.append(r["seconds"])
        rows.append((method, mc, floor, phase, times))
        print("svd_bench: %s: mergec %.2f s (floor %.2f s)%s" % (
            method, mc, floor, "".join(", %s %.2f s" % (b[0], t) for b, t in zip(baselines, times))), flush=True)
    print()
    print("| method | mergec run (s) | floor (s) | matrix phase (s) |%s" % "".join(
        " %s (s) | / phase |" % b[0] for b in baselines))
    print("|---|---|---|---|%s" % ("---|---|" * len(baselines)))
    for method, mc, floor, phase, times in rows:
        print("| %s | %.2f | %.2f | %.2f |%s" % (method, mc, floor, phase,
                                                 "".join(" %.2f | %s |" % (t, "%.2f" % (t / phase) if phase > 0.05
                                                                           else "n/a") for t in times)))
    print("\n%s" % ", ".join("%s %s" % kv for kv in sorted(versions.items())))
    if not args.keep and not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
