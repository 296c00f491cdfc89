#!/usr/bin/env python3
"""Times highpass (mergec_la_spectral_filter through mergec-linalg-driver: kissfft in f32 on
the library's threads) against numpy's f64 fft2 / mask / ifft2 on the same f32 matrices in the
same run, and prints a markdown table with the relative Frobenius error of mergec's result.

Usage: bench/spectral_bench.py [--driver build/bin/mergec-linalg-driver] [--scratch DIR]
                               [--shapes 4096x4096,4096x14336] [--ratios 0.9,0.5]

numpy (1.24: pocketfft, one thread, complex128) computes the reference formula directly:
np.real(np.fft.ifft2(np.fft.fft2(x) * mask)). The driver's time is its call alone, as numpy's.
On a square matrix ratio 0.9 keeps every frequency (the radius passes the farthest corner), and
mergec returns x without transforming; numpy still transforms."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e", "lib"))
import ref_spectral as R  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                     "bin", "mergec-linalg-driver"))
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--shapes", default="4096x4096,4096x14336")
    ap.add_argument("--ratios", default="0.9,0.5")
    ap.add_argument("--threads", default="0")
    args = ap.parse_args()
    scratch = args.scratch or tempfile.mkdtemp(prefix="mergec-spectral-bench-")
    os.makedirs(scratch, exist_ok=True)
    print("| matrix | ratio | mergec s | numpy s | mergec / numpy | rel. error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for shape in args.shapes.split(","):
        m, n = (int(v) for v in shape.split("x"))
        x = np.random.default_rng(m + n).standard_normal((m, n), dtype=np.float32)
        path = os.path.join(scratch, "x.f32")
        x.tofile(path)
        for ratio in (float(r) for r in args.ratios.split(",")):
            out = subprocess.run([args.driver, "highpass", str(m), str(n), path, scratch,
                                  str(int(round(ratio * 1000))), "--threads", args.threads],
                                 check=True, capture_output=True, text=True).stdout
            ours = float(out.split("seconds:")[1])
            got = np.fromfile(os.path.join(scratch, "out.f32"), dtype=np.float32).reshape(m, n)
            start = time.perf_counter()
            want = np.real(np.fft.ifft2(np.fft.fft2(x) * R.mask(m, n, ratio)))
            theirs = time.perf_counter() - start
            print("| %s | %g | %.2f | %.2f | %.2fx | %.1e |" % (
                shape, ratio, ours, theirs, ours / theirs, R.rel_error(got, want)), flush=True)


if __name__ == "__main__":
    main()
