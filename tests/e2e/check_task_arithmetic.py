"""Task arithmetic, base + lam * (tv(a) + tv(b)) / 2, against a float32 numpy reference.

  --dtype bf16|f16|f32   the dtype of all three models; `mixed`: base bf16, a f16, b f32
  --set X                run with --set lam=X (the recipe says 0.7)
  --model-override       replace b with a third fine-tune through --model b=PATH (relative to
                         the working directory)

mergec runs from another working directory than the recipe's, so the recipe's relative model
paths must resolve against the recipe's directory."""
import json
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32


def body(args):
    work = runner.fresh_dir(args.work)
    dtypes = {"bf16": ("bf16",) * 3, "f16": ("f16",) * 3, "f32": ("f32",) * 3,
              "mixed": ("bf16", "f16", "f32")}[args.dtype]
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), dtypes[0], seed=10)
    a = models.make_llama(os.path.join(mdir, "a"), dtypes[1], seed=11, base=base)
    b = models.make_llama(os.path.join(mdir, "b"), dtypes[2], seed=12, base=base)
    recipe = runner.write_recipe(os.path.join(work, "task.merge"), """
        # task arithmetic over two fine-tunes
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        param lam  = 0.7
        merge base + lam * (tv(a) + tv(b)) / 2
        """)
    out = os.path.join(work, "out")
    cli = ["run", recipe, "-o", out, "--quiet"]
    lam = F(0.7)
    if args.set is not None:
        cli += ["--set", "lam=%s" % args.set]
        lam = F(float(args.set))
    cwd = "/"
    if args.model_override:
        c = models.make_llama(os.path.join(work, "other"), dtypes[2], seed=13, base=base)
        cli += ["--model", "b=other"]
        cwd = work
        b = c
    r = runner.run_mergec(cli, cwd=cwd)
    runner.expect(r.stderr == "", "--quiet printed to stderr:\n" + r.stderr)

    expected = {}
    for n in base:
        expected[n] = base[n] + (lam * ((a[n] - base[n]) + (b[n] - base[n]))) / F(2)
    actual = st.read_model(out)
    out_dtype = models.DTYPE_NAMES[dtypes[0]]
    compare.assert_model(actual, expected, max_ulp=1, expected_dtypes=out_dtype, order=list(base))

    # A lam that does not change the model would make the check vacuous.
    runner.expect(any(not np.array_equal(st.to_f32(*actual[n]), base[n]) for n in base),
                  "the output equals the base")
    # Files beside the weights come from the base.
    files = runner.output_files(out)
    runner.expect(files == ["config.json", "generation_config.json", "model.safetensors",
                            "tokenizer.json", "tokenizer_config.json"], "output files: %s" % files)
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(out, f), "rb") as x, open(os.path.join(mdir, "base", f), "rb") as y:
            runner.expect(x.read() == y.read(), "%s is not a copy of the base's" % f)
    runner.expect(json.load(open(os.path.join(out, "config.json")))["num_hidden_layers"] == 2, "config.json")


def add_args(p):
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32", "mixed"])
    p.add_argument("--set", default=None)
    p.add_argument("--model-override", action="store_true")


if __name__ == "__main__":
    runner.main(body, add_args)
