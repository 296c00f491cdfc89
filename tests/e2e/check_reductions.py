"""Whole-tensor reductions (norm p = 1, 2, inf; dot; total; count) against numpy, on tensors of
several 64K-element chunks, and byte-identical results for --threads 1, 2 and 3.

mergec sums in f64 per chunk and adds the chunks in order; the reference sums in f64 with
numpy's pairwise summation. Both round the sum to f32 once, so they agree to 1 f32 ulp on the
scalar (in practice exactly), and the tensors that use it to 1 ulp of bf16."""
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=70, hidden=256,
                             intermediate=512, vocab=1024)
    for name, seed in (("a", 71), ("b", 72)):
        models.make_llama(os.path.join(mdir, name), "bf16", seed=seed, base=base, hidden=256,
                          intermediate=512, vocab=1024)
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        merge {
          "*.mlp.*"       => base + tv(a) * (norm(tv(b)) / norm(tv(a)))
          "*.self_attn.*" => base * (dot(a, b) / (norm(a) * norm(b)))
          "*embed_tokens*" => base + norm(tv(a), p = inf) - norm(tv(b), p = 1) / count(base > 0)
          _               => base + total(tv(a)) / 1000
        }
        """)
    outs = runner.run_threads_identical(recipe, work, ("1", "2", "3"), "reductions")
    print("--threads 1, 2, 3: byte-identical")

    got = st.read_model(outs["2"])
    m = {name: st.read_model_f32(os.path.join(mdir, name)) for name in ("base", "a", "b")}

    def total(x):
        return F(np.sum(x.astype(np.float64)))

    def norm2(x):
        return F(np.sqrt(F(np.sum(x.astype(np.float64) ** 2))))

    worst, exact, count, chunks = 0, 0, 0, 0
    for n, (odtype, arr) in got.items():
        B, A, Bm = m["base"][n], m["a"][n], m["b"][n]
        ta, tb = A - B, Bm - B
        chunks = max(chunks, (B.size + 65535) // 65536)
        if ".mlp." in n:
            e = B + ta * (norm2(tb) / norm2(ta))
        elif ".self_attn." in n:
            e = B * (total(A * Bm) / (norm2(A) * norm2(Bm)))
        elif "embed_tokens" in n:
            e = B + F(np.max(np.abs(ta))) - total(np.abs(tb)) / F(np.count_nonzero(B > 0))
        else:
            e = B + total(ta) / F(1000)
        k, x, y = compare.assert_tensor(n, odtype, arr, np.asarray(e, dtype=F), max_ulp=1, quiet=True)
        worst, exact, count = max(worst, k), exact + x, count + y
    runner.expect(chunks >= 4, "tensors too small to span several chunks")
    print("reductions: max ulp %d, bit-exact %d/%d (largest tensor: %d chunks)" % (worst, exact, count, chunks))


if __name__ == "__main__":
    runner.main(body)
