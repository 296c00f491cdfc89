#!/usr/bin/env python3
"""Cross-checks mergec's linear algebra (runtime/lib/LinearAlgebra.cpp, through
mergec-linalg-driver) against numpy's f64 SVD on random matrices: 64x48, 48x64, 1x40, 40x1.

Usage: check_linalg.py DRIVER WORKDIR. Prints one line per shape and operation with the
relative Frobenius errors (sign and order conventions cannot matter: singular values,
reconstructions and projectors are compared) and "ok" when all are <= 1e-4."""
import os
import subprocess
import sys

import numpy as np

TOLERANCE = 1e-4


def rel(x, ref):
    norm = np.linalg.norm(ref)
    return np.linalg.norm(x - ref) / (norm if norm > 0 else 1.0)


def run(driver, workdir, op, x, *extra):
    m, n = x.shape
    path = os.path.join(workdir, "x.f32")
    x.astype(np.float32).tofile(path)
    subprocess.run([driver, op, str(m), str(n), path, workdir] + [str(e) for e in extra],
                   check=True, stdout=subprocess.DEVNULL)
    load = lambda name: np.fromfile(os.path.join(workdir, name), dtype=np.float32).astype(np.float64)
    if op in ("svd", "rsvd"):
        k = extra[0]
        return load("u.f32").reshape(m, k), load("s.f32"), load("vt.f32").reshape(k, n)
    return load("out.f32").reshape(m, n)


def decaying(rng, m, n):
    """A matrix with singular values 0.5^i: rsvd with k + p = 16 and 2 power iterations is
    then accurate far below the tolerance."""
    mn = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, mn)))
    v, _ = np.linalg.qr(rng.standard_normal((n, mn)))
    return ((u * 0.5 ** np.arange(mn)) @ v.T).astype(np.float32)


def report(name, errors):
    worst = max(errors.values())
    text = " ".join("%s %.1e" % (k, v) for k, v in errors.items())
    print("%s: %s %s" % (name, text, "ok" if worst <= TOLERANCE else "FAILED"))
    return worst <= TOLERANCE


def main():
    driver, workdir = sys.argv[1], sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.default_rng(2024)
    ok = True
    for m, n in [(64, 48), (48, 64), (1, 40), (40, 1)]:
        mn = min(m, n)
        x = rng.standard_normal((m, n)).astype(np.float32)
        x64 = x.astype(np.float64)
        U, S, Vt = np.linalg.svd(x64, full_matrices=False)
        shape = "%dx%d" % (m, n)
        for k in sorted({mn, max(1, mn // 4)}):
            u, s, vt = run(driver, workdir, "svd", x, k)
            ref = (U[:, :k] * S[:k]) @ Vt[:k]
            ok &= report("%s svd k=%d" % (shape, k), {
                "s": rel(s, S[:k]), "recon": rel((u * s) @ vt, ref),
                "u-proj": rel(u @ u.T, U[:, :k] @ U[:, :k].T),
                "v-proj": rel(vt.T @ vt, Vt[:k].T @ Vt[:k])})
            low = run(driver, workdir, "lowrank", x, k)
            ok &= report("%s lowrank k=%d" % (shape, k), {"out": rel(low, ref)})
        polar = run(driver, workdir, "orth", x)
        ok &= report("%s orth" % shape, {"out": rel(polar, U @ Vt)})
        xd = decaying(rng, m, n)
        Ud, Sd, Vtd = np.linalg.svd(xd.astype(np.float64), full_matrices=False)
        k = max(1, min(8, mn))
        u, s, vt = run(driver, workdir, "rsvd", xd, k, 8, 2, 7)
        ok &= report("%s rsvd k=%d" % (shape, k), {
            "s": rel(s, Sd[:k]), "recon": rel((u * s) @ vt, (Ud[:, :k] * Sd[:k]) @ Vtd[:k])})
    print("linalg: all within %.0e of numpy's f64 SVD" % TOLERANCE if ok else "linalg: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
