"""Input errors: mergec must exit 1, print `mergec: error: ...` naming the file (or model path)
and the tensor, and leave nothing at the output path (no temporary directory either).

  --case CASE   one of the CASES below

The script asserts all of that itself, then prints mergec's stderr after a `stderr:` line so
that the .test can FileCheck the message."""
import os
import shutil

import numpy as np

import models
import runner
import st

CASES = ["missing-model", "missing-tensor", "shape-mismatch", "truncated", "truncated-header",
         "tiny-file", "garbage-header",
         "huge-header", "missing-shard", "unmatched-tensor", "integer-arithmetic", "existing-output", "recipe-error",
         "set-error", "usage-error"]

RECIPE = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    merge {
      "lm_head.weight" => base
      _ => base + (tv(a) + tv(b)) / 2
    }
    """


def rewrite(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(fn(data))


def body(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    case = args.case
    recipe_text = RECIPE
    base_kw, a_kw, b_kw = {}, {}, {}
    # What stderr must mention besides "mergec: error:".
    must = []
    if case == "missing-tensor":
        b_kw["drop"] = ("model.layers.1.mlp.up_proj.weight",)
        must = ["models/b", "model.layers.1.mlp.up_proj.weight"]
    elif case == "shape-mismatch":
        a_kw["reshape"] = {"model.layers.1.self_attn.k_proj.weight": (64, 64)}
        must = ["models/a", "model.layers.1.self_attn.k_proj.weight"]
    elif case == "missing-shard":
        base_kw["shards"] = 3
        must = ["models/base", "model-00002-of-00003.safetensors"]
    elif case == "integer-arithmetic":
        ids = {"model.position_ids": ("I64", np.arange(8, dtype=np.int64))}
        base_kw["extra"] = a_kw["extra"] = b_kw["extra"] = ids
        must = ["model.position_ids"]
    elif case == "unmatched-tensor":
        recipe_text = """
            model base = "models/base"
            model a    = "models/a"
            merge {
              "lm_head.weight" | "*.embed_tokens.weight" => base
              "model.layers.*"                           => a
            }
            """
        must = ["model.norm.weight"]
    elif case == "recipe-error":
        # Reported before any model is opened: the missing model directory is never looked at.
        recipe_text = """
            model base = "models/base"
            model gone = "models/not-there"
            merge base + tv(gone) + tv(typo)
            """
    elif case == "set-error":
        recipe_text = """
            model base = "models/base"
            model a    = "models/a"
            param lam  = 0.5
            merge base + lam * tv(a)
            """

    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=70, **base_kw)
    models.make_llama(os.path.join(mdir, "a"), "bf16", seed=71, base=base, **a_kw)
    models.make_llama(os.path.join(mdir, "b"), "bf16", seed=72, base=base, **b_kw)
    recipe = runner.write_recipe(os.path.join(work, "errors.merge"), recipe_text)
    out = os.path.join(work, "out")

    if case == "missing-model":
        shutil.rmtree(os.path.join(mdir, "b"))
        must = ["models/b"]
    elif case == "truncated":
        # The file ends inside the data of its last tensor, the second-to-last of the output:
        # earlier tensors are merged (and written) before the error.
        rewrite(os.path.join(mdir, "a", "model.safetensors"), lambda d: d[:-1000])
        must = ["models/a/model.safetensors", "lm_head.weight"]
    elif case == "truncated-header":  # the file ends inside the JSON header
        rewrite(os.path.join(mdir, "a", "model.safetensors"), lambda d: d[:40])
        must = ["models/a/model.safetensors"]
    elif case == "tiny-file":  # not even the 8-byte header length
        rewrite(os.path.join(mdir, "a", "model.safetensors"), lambda d: d[:5])
        must = ["models/a/model.safetensors"]
    elif case == "garbage-header":
        rewrite(os.path.join(mdir, "b", "model.safetensors"),
                lambda d: d[:8] + b"{garbage: !" + d[19:])
        must = ["models/b/model.safetensors"]
    elif case == "huge-header":
        rewrite(os.path.join(mdir, "b", "model.safetensors"), lambda d: (1 << 40).to_bytes(8, "little") + d[8:])
        must = ["models/b/model.safetensors"]
    elif case == "missing-shard":
        os.remove(os.path.join(mdir, "base", "model-00002-of-00003.safetensors"))
    elif case == "existing-output":
        os.makedirs(out)
        with open(os.path.join(out, "keep.txt"), "w") as f:
            f.write("not mergec's\n")
        must = [out]

    cli, status, prefix = ["run", recipe, "-o", out], 1, "mergec: error: "
    if case == "recipe-error":
        prefix = recipe + ":3:"
        must = ["typo"]
    elif case == "set-error":
        cli += ["--set", "lam=half"]
        prefix = recipe + ":"
        must = ["lam", "half"]
    elif case == "usage-error":
        cli, status = ["run", recipe, "--threads"], 2
        must = ["--threads"]
    r = runner.run_mergec(cli, expect=status, cwd=work)
    print("stderr:")
    print(r.stderr, end="" if r.stderr.endswith("\n") else "\n")
    errors = [line for line in r.stderr.splitlines() if line.startswith(prefix) and "error:" in line]
    runner.expect(errors, "no `%s...error:` line" % prefix)
    for m in must:
        runner.expect(m in errors[0], "the error does not mention %r: %s" % (m, errors[0]))

    if case == "existing-output":
        runner.expect(sorted(os.listdir(out)) == ["keep.txt"], "the existing output was changed: %s" % os.listdir(out))
        parent, name = os.path.split(out)
        runner.expect(not [f for f in os.listdir(parent) if f.startswith("." + name + ".mergec-tmp-")],
                      "temporary output left behind")
        # --force does not replace a directory mergec did not write...
        r = runner.run_mergec(["run", recipe, "-o", out, "--force", "--quiet"], expect=1, cwd=work)
        runner.expect("--force replaces only a directory that mergec wrote" in r.stderr, r.stderr)
        runner.expect(sorted(os.listdir(out)) == ["keep.txt"], "--force changed a user's directory")
        # ...but replaces mergec's own output.
        shutil.rmtree(out)
        runner.run_mergec(["run", recipe, "-o", out, "--quiet"], cwd=work)
        with open(os.path.join(out, "keep.txt"), "w") as f:
            f.write("added by the user\n")
        runner.run_mergec(["run", recipe, "-o", out, "--force", "--quiet"], cwd=work)
        files = runner.output_files(out)
        runner.expect("keep.txt" not in files and "model.safetensors" in files, "--force output: %s" % files)
        runner.expect(list(st.read_model(out)) == list(base), "--force output tensors")
        print("--force: replaced")
    else:
        runner.assert_no_output(out)
        print("no output left at %s" % out)


def add_args(p):
    p.add_argument("--case", required=True, choices=CASES)


if __name__ == "__main__":
    runner.main(body, add_args)
