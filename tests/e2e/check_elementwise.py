"""Elementwise primitives against numpy: abs, sign, sqrt, exp, max / min / median / variance
across lists (odd and even counts), clamp, where and the six comparisons, on bf16 and f32 models.

Tolerance: 1 ulp of the output dtype after f32 compute. Everything here is exactly rounded in
both mergec and numpy except exp (libm's expf vs numpy's, each within 1 f32 ulp), which is why
exp is only checked on a bf16 output, where that difference almost never survives rounding."""
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32


def body(args):
    work = runner.fresh_dir(args.work)
    for dtype in ("bf16", "f32"):
        mdir = os.path.join(work, dtype)
        base = models.make_llama(os.path.join(mdir, "base"), dtype, seed=50)
        a = models.make_llama(os.path.join(mdir, "a"), dtype, seed=51, base=base)
        b = models.make_llama(os.path.join(mdir, "b"), dtype, seed=52, base=base)
        c = models.make_llama(os.path.join(mdir, "c"), dtype, seed=53, base=base, noise=0.05)
        exp_rule = '"*.o_proj.weight" => base + exp(tv(a) * 10) - 1' if dtype == "bf16" else ""
        recipe = runner.write_recipe(os.path.join(mdir, "r.merge"), """
            model base = "base"
            model a = "a"
            model b = "b"
            model c = "c"
            merge {
              "*.q_proj.weight"    => base + median([tv(a), tv(b), tv(c)])
              "*.k_proj.weight"    => base + median([tv(a), tv(b), tv(c), -tv(a)])
              "*.v_proj.weight"    => max([a, b, c]) - min([a, b, c])
              %s
              "*.gate_proj.weight" => base + sign(tv(a)) * sqrt(abs(tv(b)))
              "*.up_proj.weight"   => base + clamp(tv(a) + tv(b), -0.02, 0.01)
              "*.down_proj.weight" => base + where(abs(tv(a)) >= abs(tv(b)), tv(a), tv(b))
              "*norm.weight"       => (a < b) + (a > b) * 2 + (a <= c) * 4 + (a >= c) * 8 + (b == b) * 16 + (a != c) * 32
              "*.embed_tokens.weight" => variance([tv(a), tv(b), tv(c), -tv(a)])
              "lm_head.weight"     => variance([a, b, c])
              _                    => base
            }
            """ % exp_rule)
        out = os.path.join(mdir, "out")
        runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
        got = st.read_model(out)
        m = {name: st.read_model_f32(os.path.join(mdir, name)) for name in ("base", "a", "b", "c")}
        checked = 0
        for n, (odtype, arr) in got.items():
            B, A, Bm, C = m["base"][n], m["a"][n], m["b"][n], m["c"][n]
            ta, tb, tc = A - B, Bm - B, C - B
            if n.endswith(".q_proj.weight"):
                e = B + np.median(np.stack([ta, tb, tc]), axis=0)
            elif n.endswith(".k_proj.weight"):
                e = B + np.median(np.stack([ta, tb, tc, -ta]), axis=0)
            elif n.endswith(".v_proj.weight"):
                e = np.maximum(np.maximum(A, Bm), C) - np.minimum(np.minimum(A, Bm), C)
            elif n.endswith(".o_proj.weight") and exp_rule:
                e = B + np.exp(ta * F(10)) - F(1)
            elif n.endswith(".gate_proj.weight"):
                e = B + np.sign(ta) * np.sqrt(np.abs(tb))
            elif n.endswith(".up_proj.weight"):
                e = B + np.minimum(np.maximum(ta + tb, F(-0.02)), F(0.01))
            elif n.endswith(".down_proj.weight"):
                e = B + np.where(np.abs(ta) >= np.abs(tb), ta, tb)
            elif n.endswith("norm.weight"):
                e = ((A < Bm) + (A > Bm) * F(2) + (A <= C) * F(4) + (A >= C) * F(8) +
                     (Bm == Bm) * F(16) + (A != C) * F(32))
            elif n.endswith(".embed_tokens.weight"):
                # mergec: Welford in f64; numpy: two-pass in f64; each rounded once to f32
                e = np.var(np.stack([ta, tb, tc, -ta]).astype(np.float64), axis=0)
            elif n == "lm_head.weight":
                e = np.var(np.stack([A, Bm, C]).astype(np.float64), axis=0)
            else:
                e = B
            compare.assert_tensor(n, odtype, arr, np.asarray(e, dtype=F), max_ulp=1, quiet=True)
            checked += 1
        print("%s: %d tensors within 1 ulp" % (dtype, checked))


if __name__ == "__main__":
    runner.main(body)
