"""Library methods written in the language (stdlib/) against numpy written from their
definitions: linear (list and scalar weights, normalize on and off), task_arithmetic and
nearswap, on bf16 models; 1 ulp of bf16 after f32 compute."""
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
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=60)
    for name, seed in (("a", 61), ("b", 62), ("c", 63)):
        models.make_llama(os.path.join(mdir, name), "bf16", seed=seed, base=base)
    recipe = runner.write_recipe(os.path.join(work, "stdlib.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        model c    = "models/c"
        merge {
          "*.q_proj.weight"    => linear([a, b, c], weights = [0.2, 0.3, 0.5])
          "*.k_proj.weight"    => linear([a, b], weights = [2, 1], normalize = false)
          "*.v_proj.weight"    => linear([a, b, c])
          "*.o_proj.weight"    => base + task_arithmetic([tv(a), tv(b), tv(c)], weights = [0.7, -0.2, 0.4])
          "*.gate_proj.weight" => base + task_arithmetic([tv(a), tv(b)], weights = 0.5, normalize = true)
          _                    => nearswap(base, a, 0.01)
        }
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    got = st.read_model(out)
    m = {name: st.read_model_f32(os.path.join(mdir, name)) for name in ("base", "a", "b", "c")}

    def weighted(xs, ws, normalize):
        acc = ws[0] * xs[0]
        for x, w in zip(xs[1:], ws[1:]):
            acc = acc + w * x
        if normalize:
            total = ws[0]
            for w in ws[1:]:
                total = total + w
            acc = acc / total
        return acc

    counts = {}
    for n, (odtype, arr) in got.items():
        B, A, Bm, C = m["base"][n], m["a"][n], m["b"][n], m["c"][n]
        if n.endswith(".q_proj.weight"):
            e, kind = weighted([A, Bm, C], [F(0.2), F(0.3), F(0.5)], True), "linear"
        elif n.endswith(".k_proj.weight"):
            e, kind = weighted([A, Bm], [F(2), F(1)], False), "linear"
        elif n.endswith(".v_proj.weight"):
            e, kind = weighted([A, Bm, C], [F(1), F(1), F(1)], True), "linear"
        elif n.endswith(".o_proj.weight"):
            e = B + weighted([A - B, Bm - B, C - B], [F(0.7), F(-0.2), F(0.4)], False)
            kind = "task_arithmetic"
        elif n.endswith(".gate_proj.weight"):
            e, kind = B + weighted([A - B, Bm - B], [F(0.5), F(0.5)], True), "task_arithmetic"
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                w = F(0.01) / np.abs(B - A)
            w = np.clip(np.nan_to_num(w, nan=1.0, posinf=1.0, neginf=1.0), 0, 1).astype(F)
            e, kind = w * A + (F(1) - w) * B, "nearswap"
        k, x, y = compare.assert_tensor(n, odtype, arr, np.asarray(e, dtype=F), max_ulp=1, quiet=True)
        tk, tx, ty = counts.get(kind, (0, 0, 0))
        counts[kind] = (max(tk, k), tx + x, ty + y)
    for kind in sorted(counts):
        k, x, y = counts[kind]
        print("%s: max ulp %d, bit-exact %d/%d" % (kind, k, x, y))


if __name__ == "__main__":
    runner.main(body)
