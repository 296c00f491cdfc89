"""Output dtype overrides and thread-count independence.

  --case dtype-f32    bf16 models, --dtype f32: an f32 output holding the unrounded f32 results
                      (copies widened exactly)
  --case dtype-bf16   f32 models, --dtype bf16: results rounded once to bf16
  --case dtype-f16    bf16 models, --dtype f16
  --case threads      --threads 1, --threads 2, --threads 7 and the default give byte-identical
                      files (a model large enough to be split across workers)"""
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    param lam  = 0.35
    merge {
      "lm_head.weight" | "*.embed_tokens.weight" => base
      "*norm.weight"                             => a
      _                                          => base + lam * (tv(a) + tv(b)) / 2
    }
    """


def reference(base, a, b):
    lam = F(0.35)
    out = {}
    for n in base:
        if n in ("lm_head.weight", "model.embed_tokens.weight"):
            out[n] = base[n]
        elif n.endswith("norm.weight"):
            out[n] = a[n]
        else:
            out[n] = base[n] + (lam * ((a[n] - base[n]) + (b[n] - base[n]))) / F(2)
    return out


def make(work, dtype, **kw):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), dtype, seed=60, **kw)
    a = models.make_llama(os.path.join(mdir, "a"), dtype, seed=61, base=base, **kw)
    b = models.make_llama(os.path.join(mdir, "b"), dtype, seed=62, base=base, **kw)
    return base, a, b, runner.write_recipe(os.path.join(work, "r.merge"), RECIPE)


def body(args):
    work = runner.fresh_dir(args.work)
    if args.case.startswith("dtype-"):
        in_dtype, out_flag = {"dtype-f32": ("bf16", "f32"), "dtype-bf16": ("f32", "bf16"),
                              "dtype-f16": ("bf16", "f16")}[args.case]
        base, a, b, recipe = make(work, in_dtype)
        out = os.path.join(work, "out")
        runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--dtype", out_flag])
        want = models.DTYPE_NAMES[out_flag]
        actual = st.read_model(out)
        compare.assert_model(actual, reference(base, a, b), max_ulp=1, expected_dtypes=want, order=list(base))
        # Copies change dtype like everything else, and here without rounding (bf16 fits f32 and f16
        # only when in range; the values are small).
        for n in ("lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"):
            got = st.to_f32(*actual[n])
            src = base[n] if "norm" not in n else a[n]
            if want == "F32" or in_dtype == want:
                runner.expect(np.array_equal(got, src), n + ": copy not exact")
        return

    # threads
    kw = dict(num_layers=2, hidden=256, intermediate=704, vocab=512)
    base, a, b, recipe = make(work, "bf16", **kw)
    outputs = {}
    for label, extra in (("default", []), ("1", ["--threads", "1"]), ("2", ["--threads", "2"]),
                         ("7", ["--threads", "7"])):
        out = os.path.join(work, "out-" + label)
        runner.run_mergec(["run", recipe, "-o", out, "--quiet"] + extra)
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            outputs[label] = f.read()
    sizes = {k: len(v) for k, v in outputs.items()}
    print("model.safetensors sizes: %s" % sizes)
    for label, data in outputs.items():
        runner.expect(data == outputs["default"], "--threads %s output differs from the default's" % label)
    print("--threads 1, 2, 7 and the default: byte-identical")
    compare.assert_model(st.read_model(os.path.join(work, "out-1")), reference(base, a, b),
                         max_ulp=1, expected_dtypes="BF16", order=list(base))


def add_args(p):
    p.add_argument("--case", required=True, choices=["dtype-f32", "dtype-bf16", "dtype-f16", "threads"])


if __name__ == "__main__":
    runner.main(body, add_args)
