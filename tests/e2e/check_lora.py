"""LoRA adapters as inputs (`lora NAME = "PATH" on MODEL`) against numpy references.

  --case exact      `merge base + tv(x)` and `merge x` equal base + (alpha/r) B @ A computed in
                    f32 (within 1 ulp of the output dtype) for adapters in bf16 and f32 with
                    several r/alpha, rslora, rank_pattern/alpha_pattern, the `.default` infix,
                    an embedding LoRA and modules_to_save; --model overrides the adapter's path
  --case conv1d     fan_in_fan_out on a GPT-2-like model (Conv1D weights stored in x out)
  --case geomedian  base + geomedian([tv(math), tv(code), tv(base)]) against ref_methods.geomedian
  --case errors     each bad adapter: exit 1, the message (printed for FileCheck), no output
  --case files      manifest, model card and plan event list the lora; --resume refuses a
                    changed adapter
  --dtype bf16|f32  the base model's (and so the output's) dtype"""
import json
import os
import shutil

import numpy as np

import compare
import lora
import models
import ref_methods as R
import runner
import st

F = np.float32


def make_base(work, dtype):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), dtype, seed=30)
    return mdir, base


def check(out, base, deltas, dtype, label):
    expected = {n: (base[n] + lora.delta_of(deltas, base, n)).astype(F) for n in base}
    actual = st.read_model(out)
    print("%s:" % label)
    worst, exact, total = compare.assert_model(actual, expected, max_ulp=1,
                                               expected_dtypes=models.DTYPE_NAMES[dtype],
                                               order=list(base))
    changed = sum(not np.array_equal(st.to_f32(*actual[n]), base[n]) for n in base)
    runner.expect(changed == len(deltas), "%s: %d tensors changed, the adapter changes %d" %
                  (label, changed, len(deltas)))
    return worst


def case_exact(args):
    work = runner.fresh_dir(args.work)
    mdir, base = make_base(work, args.dtype)
    adir = os.path.join(work, "adapters")
    math_d = lora.write_adapter(os.path.join(adir, "math"), base, r=8, alpha=16, dtype="bf16",
                                seed=1, embedding="model.embed_tokens", infix=True)
    code_d = lora.write_adapter(os.path.join(adir, "code"), base, r=4, alpha=8, dtype="f32",
                                seed=2, rslora=True, targets=("q_proj", "v_proj", "down_proj"),
                                rank_pattern={"down_proj": 2, "model.layers.1.self_attn.q_proj": 6},
                                alpha_pattern={"v_proj": 3}, modules_to_save=("lm_head",))
    other_d = lora.write_adapter(os.path.join(work, "elsewhere"), base, r=16, alpha=4,
                                 dtype="bf16", seed=3, targets=("o_proj", "up_proj"))
    worst = 0
    for name, deltas in (("math", math_d), ("code", code_d)):
        for expr in ("base + tv(%s)" % name, name):
            recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
                model base = "models/base"
                lora math = "adapters/math" on base
                lora code = "adapters/code" on base
                merge %s
                """ % expr)
            out = os.path.join(work, "out")
            runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--force"], cwd="/")
            worst = max(worst, check(out, base, deltas, args.dtype, "merge " + expr))
    # --model replaces an adapter's path like a model's (relative to the working directory).
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--force", "--model",
                       "code=elsewhere"], cwd=work)
    worst = max(worst, check(out, base, other_d, args.dtype, "merge code, --model code=elsewhere"))
    print("lora exact: max ulp %d against (alpha/r) B @ A in f32 + base" % worst)


def case_conv1d(args):
    work = runner.fresh_dir(args.work)
    names = []
    for i in range(2):
        p = "transformer.h.%d." % i
        names += [(p + "attn.c_attn.weight", (64, 192)), (p + "attn.c_attn.bias", (192,)),
                  (p + "attn.c_proj.weight", (64, 64)), (p + "mlp.c_fc.weight", (64, 256)),
                  (p + "mlp.c_proj.weight", (256, 64))]
    rng = np.random.default_rng(7)
    dt = models.DTYPE_NAMES[args.dtype]
    tensors, base = {}, {}
    for n, shape in names:
        stored = st.from_f32(dt, (rng.standard_normal(shape, dtype=F) * F(0.1)).astype(F))
        tensors[n] = (dt, stored)
        base[n] = st.to_f32(dt, stored)
    models.write_model_dir(os.path.join(work, "gpt2"), tensors, config={"model_type": "gpt2"})
    deltas = lora.write_adapter(os.path.join(work, "ad"), base, r=4, alpha=8, dtype="bf16",
                                seed=5, targets=("c_attn", "c_proj", "c_fc"), fan_in_fan_out=True)
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
        model base = "gpt2"
        lora x = "ad" on base
        merge x
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"], cwd="/")
    worst = check(out, base, deltas, args.dtype, "merge x (fan_in_fan_out)")
    print("lora conv1d: max ulp %d" % worst)


def case_geomedian(args):
    work = runner.fresh_dir(args.work)
    mdir, base = make_base(work, args.dtype)
    adir = os.path.join(work, "adapters")
    dm = lora.write_adapter(os.path.join(adir, "math"), base, r=8, alpha=16, seed=11)
    dc = lora.write_adapter(os.path.join(adir, "code"), base, r=8, alpha=16, seed=12,
                            targets=("q_proj", "k_proj", "v_proj", "o_proj"))
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
        model base = "models/base"
        lora math = "adapters/math" on base
        lora code = "adapters/code" on base
        merge base + geomedian([tv(math), tv(code), tv(base)])
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"], cwd="/")
    actual = st.read_model(out)
    dtype = models.DTYPE_NAMES[args.dtype]
    worst, within2, total = 0, 0, 0
    for n in base:
        zero = np.zeros_like(base[n])
        ref = R.geomedian([lora.delta_of(dm, base, n), lora.delta_of(dc, base, n), zero])
        expected = (base[n] + ref).astype(F)
        got, want = actual[n][1], st.from_f32(dtype, expected)
        a, e = compare.raw_bits(dtype, got).reshape(-1), compare.raw_bits(dtype, want).reshape(-1)
        dist = np.abs(compare.ordered(dtype, a) - compare.ordered(dtype, e))
        worst = max(worst, int(dist.max()))
        within2 += int(np.count_nonzero(dist <= 2))
        total += dist.size
    print("lora geomedian: max ulp %d, within 2 ulp %d/%d" % (worst, within2, total))
    runner.expect(within2 >= 0.9995 * total, "too many elements beyond 2 ulp")


def case_errors(args):
    work = runner.fresh_dir(args.work)
    mdir, base = make_base(work, args.dtype)
    good = os.path.join(work, "good")
    lora.write_adapter(good, base, r=4, alpha=8, seed=1)

    def variant(name, edit):
        d = os.path.join(work, name)
        shutil.copytree(good, d)
        edit(d)
        return d

    def set_config(d, **changes):
        path = os.path.join(d, "adapter_config.json")
        c = json.load(open(path))
        c.update(changes)
        json.dump(c, open(path, "w"), indent=2)

    def rewrite(d, fn):
        path = os.path.join(d, "adapter_model.safetensors")
        tensors = st.read_safetensors(path)
        st.write_safetensors(path, fn(tensors))

    cases = [
        ("missing-config", lambda d: os.remove(os.path.join(d, "adapter_config.json"))),
        ("malformed-config", lambda d: open(os.path.join(d, "adapter_config.json"), "w").write(
            '{\n  "r": 4,\n  "lora_alpha": 8,,\n}\n')),
        ("missing-weights", lambda d: os.remove(os.path.join(d, "adapter_model.safetensors"))),
        ("rank-zero", lambda d: set_config(d, r=0)),
        ("rank-text", lambda d: set_config(d, r="eight")),
        ("dora", lambda d: set_config(d, use_dora=True)),
        ("prefix-tuning", lambda d: set_config(d, peft_type="PREFIX_TUNING")),
        ("rank-mismatch", lambda d: set_config(d, r=5)),
        ("wrong-shape", lambda d: rewrite(d, lambda t: {
            k: ((v[0], np.ascontiguousarray(v[1][:, :32])) if k.endswith(
                "layers.0.self_attn.q_proj.lora_A.weight") else v) for k, v in t.items()})),
        ("unknown-module", lambda d: rewrite(d, lambda t: {
            k.replace("layers.1.mlp.up_proj", "layers.7.mlp.up_proj"): v for k, v in t.items()})),
        ("nothing-targeted", lambda d: rewrite(d, lambda t: {})),
    ]
    for name, edit in cases:
        d = variant(name, edit)
        recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
            model base = "models/base"
            lora x = "%s" on base
            merge x
            """ % name)
        out = os.path.join(work, "out")
        r = runner.run_mergec(["run", recipe, "-o", out], expect=1, cwd=work)
        runner.assert_no_output(out)
        print("%s: %s" % (name, r.stderr.strip().replace(work + "/", "")))
    # Recipe errors: located at the declaration.
    for name, text in (
            ("on-lora", 'model base = "models/base"\nlora x = "good" on base\n'
                        'lora y = "good" on x\nmerge base\n'),
            ("on-unknown", 'model base = "models/base"\nlora x = "good" on nothing\nmerge base\n'),
            ("not-on", 'model base = "models/base"\nlora x = "good" at base\nmerge base\n'),
            ("tv-from", 'model base = "models/base"\nmodel a = "models/base"\n'
                        'lora x = "good" on base\nmerge base + tv(x, from = a)\n')):
        recipe = os.path.join(work, name + ".merge")
        open(recipe, "w").write(text)
        r = runner.run_mergec(["run", recipe, "-o", os.path.join(work, "out")], expect=1, cwd=work)
        runner.assert_no_output(os.path.join(work, "out"))
        print("%s: %s" % (name, r.stderr.strip().splitlines()[0].replace(work + "/", "")))


def case_files(args):
    work = runner.fresh_dir(args.work)
    mdir, base = make_base(work, args.dtype)
    d = lora.write_adapter(os.path.join(work, "adapters", "math"), base, r=4, alpha=8, seed=1)
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
        model base = "models/base"
        lora math = "adapters/math" on base
        merge math
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"], cwd="/")
    manifest = json.load(open(os.path.join(out, "mergec-manifest.json")))
    entry = [i for i in manifest["inputs"] if i["name"] == "math"][0]
    runner.expect(entry["kind"] == "lora" and entry["on"] == "base", "manifest: %s" % entry)
    runner.expect([os.path.basename(f["path"]) for f in entry["files"]] ==
                  ["adapter_config.json", "adapter_model.safetensors"], "manifest files: %s" % entry)
    card = open(os.path.join(out, "README.md")).read()
    runner.expect("(a LoRA adapter on `base`)" in card, "model card:\n" + card)
    print("manifest and model card list the lora")
    # --json's plan event.
    r = runner.run_mergec(["run", recipe, "-o", out, "--force", "--json"], cwd="/")
    plan = [json.loads(l) for l in r.stderr.splitlines() if '"plan"' in l][0]
    runner.expect({"name": "math", "path": os.path.join(work, "adapters/math"), "kind": "lora",
                   "on": "base"} in plan["models"], "plan event: %s" % plan["models"])
    print("plan event lists the lora")
    # --resume: the journal of a run killed after some tensors records the adapter; the same
    # adapter resumes, one whose bytes changed (same size, same tensors) is refused.
    import check_resume as resume
    out2 = os.path.join(work, "out2")
    got = resume.kill_at(recipe, out2, work, entries=3)
    print("killed after %d tensors" % got)
    path = os.path.join(work, "adapters", "math", "adapter_model.safetensors")
    saved = open(path, "rb").read()
    mtime = os.stat(path).st_mtime_ns
    tensors = st.read_safetensors(path)
    first = next(iter(tensors))
    dtype, arr = tensors[first]
    arr = arr.copy()
    arr.reshape(-1)[0] ^= 1
    tensors[first] = (dtype, arr)
    st.write_safetensors(path, tensors)
    # Same size and modification time: only the adapter's checksum in the journal tells.
    os.utime(path, ns=(mtime, mtime))
    runner.expect(len(open(path, "rb").read()) == len(saved), "the changed adapter's size")
    r = runner.run_mergec(["run", recipe, "-o", out2, "--resume", "--shard-size", resume.SHARD],
                          expect=1, cwd=work)
    print("changed adapter: " + r.stderr.strip().splitlines()[-1])
    open(path, "wb").write(saved)
    os.utime(path, ns=(mtime, mtime))
    r = runner.run_mergec(["run", recipe, "-o", out2, "--resume", "--shard-size", resume.SHARD],
                          cwd=work)
    print("same adapter: " + r.stderr.strip().splitlines()[0])
    check(out2, base, d, args.dtype, "resumed with the same adapter")


def case_make(args):
    """Writes models/base, adapters/math and adapters/code and the recipe geo.merge (the
    geometric median of the LoRA task vectors, with tv(base)) into --work, for the executable
    tests (lora-aot.test)."""
    work = runner.fresh_dir(args.work)
    mdir, base = make_base(work, args.dtype)
    adir = os.path.join(work, "adapters")
    lora.write_adapter(os.path.join(adir, "math"), base, r=8, alpha=16, seed=11,
                       embedding="model.embed_tokens")
    lora.write_adapter(os.path.join(adir, "code"), base, r=4, alpha=8, seed=12, rslora=True,
                       dtype="f32", targets=("q_proj", "k_proj", "v_proj", "o_proj"),
                       modules_to_save=("lm_head",))
    runner.write_recipe(os.path.join(work, "geo.merge"), """
        model base = "models/base"
        lora math = "adapters/math" on base
        lora code = "adapters/code" on base
        merge {
          "*.mlp.*" => math
          _ => base + geomedian([tv(math), tv(code), tv(base)])
        }
        """)


def add_args(p):
    p.add_argument("--case", required=True,
                   choices=["exact", "conv1d", "geomedian", "errors", "files", "make"])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])


def body(args):
    {"exact": case_exact, "conv1d": case_conv1d, "geomedian": case_geomedian,
     "errors": case_errors, "files": case_files, "make": case_make}[args.case](args)


if __name__ == "__main__":
    runner.main(body, add_args)
