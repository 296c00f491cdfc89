"""Merge executables (`mergec compile --emit=exe`).

  --case methods   one executable for a recipe with every stdlib method in its own rule, a ramp,
                   model scope and random methods: run from another directory with the recipe
                   gone and $MERGEC_STDLIB pointing nowhere, at --threads 1 and 3, its shards are
                   byte-identical to `mergec run`; no LLVM/MLIR/ANTLR library is linked; the
                   manifest records the build; --help lists the models and params
  --case errors    a signature it was not compiled for names the tensor; bad overrides are usage
                   errors (exit 2); an output over an input is refused"""
import glob
import os
import shutil
import subprocess

import models
import runner

METHODS = """
    model base = "models/base"
    model a    = "models/a"
    model b    = "models/b"
    param lam  = 0.8
    param d    = 0.4
    merge {
      "*.layers.0.self_attn.q_proj.*" => base + ties([tv(a), tv(b)], density = d)
      "*.layers.0.self_attn.k_proj.*" => base + dare_linear([tv(a), tv(b)], density = 0.5, seed = 3)
      "*.layers.0.self_attn.v_proj.*" => base + dare_ties([tv(a), tv(b)], density = 0.5, seed = 4)
      "*.layers.0.self_attn.o_proj.*" => base + breadcrumbs([tv(a), tv(b)], density = 0.8, gamma = 0.05)
      "*.layers.0.mlp.gate_proj.*"    => base + breadcrumbs_ties([tv(a), tv(b)], density = 0.8)
      "*.layers.0.mlp.up_proj.*"      => base + della([tv(a), tv(b)], density = 0.5, seed = 5)
      "*.layers.0.mlp.down_proj.*"    => base + della_linear([tv(a), tv(b)], density = 0.5, seed = 6)
      "*.layers.1.self_attn.q_proj.*" => geomedian([a, b, base])
      "*.layers.1.self_attn.k_proj.*" => karcher([a, b])
      "*.layers.1.self_attn.v_proj.*" => linear([a, b], weights = [0.3, 0.7])
      "*.layers.1.self_attn.o_proj.*" => base + lam * task_arithmetic([tv(a), tv(b)], weights = 0.5)
      "*.layers.1.mlp.gate_proj.*"    => median([a, b, base])
      "*.layers.1.mlp.up_proj.*"      => nearswap(base, a, 0.01)
      "*.layers.1.mlp.down_proj.*"    => base + sce([tv(a), tv(b)], select_topk = 0.5)
      "*.input_layernorm.*"           => slerp(base, a, t = 0.3)
      "*.post_attention_layernorm.*"  => nuslerp(base, a, 0.4)
      "*.embed_tokens.*"              => multislerp([a, b])
      "model.norm.weight"             => model_stock(base, [a, b])
      "lm_head.weight"                => base + tv(a) * ramp(0, 1)
      _                               => base + ties([tv(a), tv(b)], density = 0.2, scope = model)
    }
    """


def make_models(work, dtype="bf16", b_dtype=None):
    base = models.make_llama(os.path.join(work, "models", "base"), dtype, 1)
    models.make_llama(os.path.join(work, "models", "a"), dtype, 2, base=base)
    models.make_llama(os.path.join(work, "models", "b"), b_dtype or dtype, 3, base=base)


def shards(out):
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(out, "*.safetensors")) +
                            glob.glob(os.path.join(out, "*.index.json")))}


def run_exe(exe, args, cwd, expect=0):
    env = dict(os.environ, MERGEC_STDLIB="/nonexistent")
    p = subprocess.run([exe] + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != expect:
        raise runner.TestFailure("%s %s: exit %d (expected %d)\n%s" % (exe, " ".join(args),
                                 p.returncode, expect, p.stderr))
    return p


def case_methods(work):
    make_models(work)
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), METHODS)
    recipe_text = open(recipe).read()
    ref = os.path.join(work, "ref")
    runner.run_mergec(["run", recipe, "-o", ref, "--quiet", "--threads", "2"], cwd=work)
    exe = os.path.join(work, "merge-all")
    runner.run_mergec(["compile", recipe, "--emit=exe", "-o", exe], cwd=work)
    size = os.path.getsize(exe)
    # Elsewhere, with the recipe gone: the executable needs neither.
    elsewhere = os.path.join(work, "elsewhere")
    os.makedirs(elsewhere)
    moved = os.path.join(elsewhere, "merge-all")
    shutil.move(exe, moved)
    os.unlink(recipe)
    ldd = subprocess.run(["ldd", moved], capture_output=True, text=True).stdout
    libs = sorted(line.split()[0] for line in ldd.splitlines() if line.strip())
    runner.expect(not any(x in ldd.lower() for x in ("llvm", "mlir", "antlr", "stdc++")), ldd)
    print("ldd: " + " ".join(l for l in libs if not l.startswith("linux-vdso")))
    reference = shards(ref)
    for threads in ("1", "3"):
        out = os.path.join(elsewhere, "out" + threads)
        run_exe(moved, ["-o", out, "--quiet", "--threads", threads], cwd=elsewhere)
        runner.expect(shards(out) == reference, "--threads %s: executable output differs" % threads)
    manifest = open(os.path.join(elsewhere, "out1", "mergec-manifest.json")).read()
    runner.expect('"build": "aot"' in manifest and moved in manifest, manifest[:400])
    print("20 rules, every stdlib method: executable output byte-identical to mergec run "
          "(--threads 1 and 3), %d file(s) compared" % len(reference))
    # A param that only scales values is read when the kernels run: --set gives the same bytes
    # as `mergec run --set`.
    ref35 = os.path.join(work, "ref35")
    with open(os.path.join(work, "r2.merge"), "w") as f:
        f.write(recipe_text)
    runner.run_mergec(["run", os.path.join(work, "r2.merge"), "-o", ref35, "--quiet", "--set",
                       "lam=0.35"], cwd=work)
    out35 = os.path.join(elsewhere, "out35")
    run_exe(moved, ["-o", out35, "--quiet", "--set", "lam=0.35"], cwd=elsewhere)
    runner.expect(shards(out35) == shards(ref35), "--set lam=0.35: executable output differs")
    runner.expect(shards(out35) != reference, "--set lam=0.35 changed nothing")
    manifest = open(os.path.join(out35, "mergec-manifest.json")).read()
    runner.expect('"lam": 0.35' in manifest, manifest[:600])
    print("--set lam=0.35 at run time: byte-identical to mergec run --set lam=0.35")
    help_text = run_exe(moved, ["--help"], cwd=elsewhere).stdout
    for line in ("base = " + os.path.join(work, "models", "base"), "lam = 0.8\n", "d = 0.4   (fixed)",
                 "rule 20:"):
        runner.expect(line in help_text, "--help lacks %r:\n%s" % (line, help_text))
    print("--help lists models, params and kernels; size %.1f MB" % (size / 1e6))


def case_errors(work):
    # Compiled while the models do not exist yet: only the uniform signatures are compiled.
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), """
        model base = "models/base"
        model a    = "models/a"
        model b    = "models/b"
        param lam  = 0.8
        param d    = 0.5
        merge base + lam * ties([tv(a), tv(b)], density = d)
        """)
    exe = os.path.join(work, "merge-ta")
    runner.run_mergec(["compile", recipe, "--emit=exe", "-o", exe], cwd=work)
    make_models(work, "bf16", b_dtype="f16")
    r = run_exe(exe, ["-o", os.path.join(work, "out"), "--quiet"], cwd=work, expect=1)
    print(r.stderr.strip().splitlines()[0])
    runner.expect("has no kernel for inputs BF16,BF16,F16 -> BF16" in r.stderr, r.stderr)
    runner.expect(not os.path.exists(os.path.join(work, "out")), "output left")
    for args, message in (
            (["--set", "d=0.3"], "was compiled into this executable as 0.5"),
            (["--set", "lam=0.8x"], "not a number"),
            # The recipe's number grammar, as mergec run --set reads it.
            (["--set", "lam=0x10"], "not a number"),
            (["--set", "lam=+0.8"], "not a number"),
            (["--set", "lam=1e999"], "not a number"),
            (["--set", "nope=1"], "the recipe has no param 'nope'"),
            (["--model", "c=models/a"], "the recipe has no model 'c'"),
            (["--threads", "0"], "--threads: '0' is not a number from 1 to 1024")):
        r = run_exe(exe, ["-o", os.path.join(work, "out")] + args, cwd=work, expect=2)
        runner.expect(message in r.stderr, r.stderr)
        print(r.stderr.strip())
    # The same value as compiled is accepted; an output over a model is refused.
    r = run_exe(exe, ["-o", os.path.join(work, "models", "a"), "--force", "--model",
                      "b=models/a"], cwd=work, expect=1)
    runner.expect("the output is model 'a'" in r.stderr, r.stderr)
    make_models(work)
    run_exe(exe, ["-o", os.path.join(work, "out"), "--quiet", "--set", "lam=8e-1", "--strict"], cwd=work)
    print("errors: missing signature names the tensor; overrides checked; inputs protected")


CASES = {"methods": case_methods, "errors": case_errors}


if __name__ == "__main__":
    runner.main_cases(CASES)
