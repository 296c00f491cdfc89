#!/usr/bin/env python3
"""Times the runtime's linear algebra (mergec-linalg-driver: svd, lowrank, rsvd) against numpy
on the same f32 matrices in the same run, and prints a markdown table.

Usage: bench/linalg_bench.py [--driver build/bin/mergec-linalg-driver] [--scratch DIR]
                             [--shapes 4096x4096,4096x14336] [--ranks 64,128]

numpy: np.linalg.svd(x, full_matrices=False) (sgesdd on f32, OpenBLAS threads as numpy starts
them), and a randomised SVD written as mergec's (Halko et al. Alg. 4.4: oversample 8, 2 power
iterations, QR after every product). numpy's lowrank is its SVD plus u_k·diag(s_k)·vt_k: the
SVD is the one timed for `svd` (not run twice) plus the product, timed. Each full SVD runs once
(they take a minute on 2 cores); the driver's time is its call alone (reading the matrix and
writing the factors are left out), as numpy's is."""
import argparse
import os
import subprocess
import tempfile
import time

import numpy as np


def ours(driver, op, path, m, n, scratch, *extra):
    out = subprocess.run([driver, op, str(m), str(n), path, scratch] + [str(e) for e in extra],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split("seconds:")[1])


def numpy_rsvd(x, k, oversample=8, iters=2, seed=0):
    m, n = x.shape
    l = min(min(m, n), k + oversample)
    omega = np.random.default_rng(seed).standard_normal((n, l), dtype=np.float32)
    q, _ = np.linalg.qr(x @ omega)
    for _ in range(iters):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    ub, s, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    return (q @ ub[:, :k]), s[:k], vt[:k]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                     "bin", "mergec-linalg-driver"))
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--shapes", default="4096x4096,4096x14336")
    ap.add_argument("--ranks", default="64,128")
    args = ap.parse_args()
    scratch = args.scratch or tempfile.mkdtemp(prefix="mergec-linalg-bench-")
    ranks = [int(r) for r in args.ranks.split(",")]
    print("| matrix | op | mergec s | numpy s | mergec / numpy |")
    print("| --- | --- | ---: | ---: | ---: |")
    rows = []
    for shape in args.shapes.split(","):
        m, n = (int(v) for v in shape.split("x"))
        x = np.random.default_rng(m + n).standard_normal((m, n), dtype=np.float32)
        path = os.path.join(scratch, "x.f32")
        x.tofile(path)
        mn = min(m, n)

        def row(op, a, b):
            print("| %s | %s | %.2f | %.2f | %.2fx |" % (shape, op, a, b, a / b), flush=True)

        t_svd = ours(args.driver, "svd", path, m, n, scratch, mn)
        np_svd, (u, s, vt) = timed(lambda: np.linalg.svd(x, full_matrices=False))
        row("svd (full, thin)", t_svd, np_svd)
        for k in ranks:
            t_low = ours(args.driver, "lowrank", path, m, n, scratch, k)
            np_prod, _ = timed(lambda: (u[:, :k] * s[:k]) @ vt[:k])
            row("lowrank k=%d" % k, t_low, np_svd + np_prod)
        for k in ranks:
            t_rsvd = ours(args.driver, "rsvd", path, m, n, scratch, k, 8, 2, 0)
            np_r, _ = timed(lambda: numpy_rsvd(x, k))
            row("rsvd k=%d (p=8, q=2)" % k, t_rsvd, np_r)


if __name__ == "__main__":
    main()
