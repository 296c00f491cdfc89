"""def functions (positional, keyword and default arguments, defaults that name a model or a
param), sum / mean / len over lists of tensors and of scalars, unary minus, tv(m, from = x):
bf16 models against a float32 numpy reference. Runs with --verbose (one jit line per rule)."""
import os
import re

import numpy as np

import compare
import models
import runner
import st

F = np.float32


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=30)
    a = models.make_llama(os.path.join(mdir, "a"), "bf16", seed=31, base=base)
    b = models.make_llama(os.path.join(mdir, "b"), "bf16", seed=32, base=base)
    c = models.make_llama(os.path.join(mdir, "c"), "bf16", seed=33, base=base, noise=0.05)
    recipe = runner.write_recipe(os.path.join(work, "functions.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        model c    = "models/c"
        param k    = 0.5
        param neg  = -0.75
        def scaled(x, s = 2) = x * s
        def avg(xs) = sum(xs) / len(xs)
        def delta(m, ref = base, w = k) = tv(m, from = ref) * w
        merge {
          "*.mlp.*"                      => base + avg([tv(a), tv(b), tv(c)])
          "*.self_attn.[qk]_proj.weight" => base + mean([tv(a), tv(b), tv(c)]) * scaled(k)
          "*.self_attn.*"                => base + delta(a) + delta(b, w = neg, ref = c)
          "*norm.weight"                 => scaled(a, s = -0.5) - -b
          "model.embed_tokens.weight"    => base + tv(a, from = b) * len([1, 2, 3]) / 4
          _                              => -base + scaled(tv(c, from = a)) + sum([1, k, 2]) * mean([b, c])
        }
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--verbose"])
    runner.expect(r.stdout == "", "mergec run wrote to stdout:\n" + r.stdout)
    # --verbose: one `jit: rule_N (DTYPES): compiled|loaded from the cache in X ms` line per rule
    # (docs/cli.md).
    jit = re.findall(r"^jit: rule[ _](\d+) \(([^)]*)\): (?:compiled|loaded from the cache) in [0-9.]+ ms$",
                     r.stderr, re.M)
    print("jit lines: %s" % sorted(int(n) for n, _ in jit))
    runner.expect(sorted(int(n) for n, _ in jit) == list(range(6)),
                  "--verbose: expected one jit line for each of rules 0-5:\n" + r.stderr)
    runner.expect(all("BF16" in d for _, d in jit), "--verbose: dtypes not shown:\n" + r.stderr)

    k, neg = F(0.5), F(-0.75)

    def tv(m, n, frm=None):
        return m[n] - (frm if frm is not None else base)[n]

    expected = {}
    for n in base:
        if ".mlp." in n:
            e = base[n] + ((tv(a, n) + tv(b, n)) + tv(c, n)) / F(3)
        elif n.endswith("q_proj.weight") or n.endswith("k_proj.weight"):
            e = base[n] + ((tv(a, n) + tv(b, n)) + tv(c, n)) / F(3) * (k * F(2))
        elif ".self_attn." in n:
            e = (base[n] + tv(a, n) * k) + tv(b, n, c) * neg
        elif n.endswith("norm.weight"):
            e = a[n] * F(-0.5) - (-b[n])
        elif n == "model.embed_tokens.weight":
            e = base[n] + (tv(a, n, b) * F(3)) / F(4)
        else:
            e = (-base[n] + tv(c, n, a) * F(2)) + F(3.5) * ((b[n] + c[n]) / F(2))
        expected[n] = e
    compare.assert_model(st.read_model(out), expected, max_ulp=1, expected_dtypes="BF16", order=list(base))


if __name__ == "__main__":
    runner.main(body)
