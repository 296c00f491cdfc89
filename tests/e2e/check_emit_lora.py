"""`mergec run R -o OUT --emit-lora RANK`: the merge's task vector as a PEFT LoRA adapter,
against numpy (np.linalg.svd in f64 of the full f32 merge minus the base).

  --case truncation  B @ A of every targeted module equals the rank-RANK truncation of the full
                     merge's task vector (relative Frobenius error <= 1e-5); at RANK 16, the
                     rank of tv(math) + tv(code) for two r = 8 adapters, the merge itself (the
                     exact lora_cat case); changed tensors that are not targets (embeddings,
                     norms) saved in full, bit for bit; unchanged ones (lm_head) absent;
                     adapter_config.json; manifest and model card; --lora-targets
  --case epsilon     --sv-epsilon E keeps the singular values above E (mergekit's absolute
                     threshold): per-module ranks in rank_pattern/alpha_pattern, r the largest
  --case roundtrip   the written adapter read back as a mergec `lora`: base + tv(out) equals
                     the truncation (and the saved tensors exactly)
  --case errors      bad options and recipes: exit status, message (printed), no output
  --case make        writes the models, adapters and recipe (for emit-lora-aot.test)"""
import json
import os

import numpy as np

import lora
import models
import runner
import st

F = np.float32
RECIPE = """
    model base = "models/base"
    model ft = "models/ft"
    lora math = "adapters/math" on base
    lora code = "adapters/code" on base
    merge {
      "*.embed_tokens.weight" | "*norm.weight" => ft
      "model.layers.0.*" => base + 0.5 * tv(ft) + tv(math)
      _ => base + tv(math) + tv(code)
    }
    """
PREFIX = "base_model.model."


def make(work):
    """Models (f32), two r = 8 adapters on base, the recipe. Returns (recipe, base)."""
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "f32", seed=40)
    models.make_llama(os.path.join(mdir, "ft"), "f32", seed=41, base=base, noise=0.01)
    adir = os.path.join(work, "adapters")
    lora.write_adapter(os.path.join(adir, "math"), base, r=8, alpha=16, dtype="f32", seed=1)
    lora.write_adapter(os.path.join(adir, "code"), base, r=8, alpha=8, dtype="f32", seed=2)
    return runner.write_recipe(os.path.join(work, "r.merge"), RECIPE), base


def full_merge(recipe, work):
    out = os.path.join(work, "full")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--force"], cwd="/")
    return {n: st.to_f32(*v) for n, v in st.read_model(out).items()}


def truncation(delta, k):
    u, s, vt = np.linalg.svd(delta.astype(np.float64), full_matrices=False)
    return (u[:, :k] * s[:k]) @ vt[:k], s


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def is_target(name, shape):
    module = name[:-len(".weight")]
    return (name.endswith(".weight") and len(shape) == 2 and "embed" not in module.split(".")[-1]
            and module.split(".")[-1] != "lm_head")


def read_adapter(out):
    config = json.load(open(os.path.join(out, "adapter_config.json")))
    tensors = {n: st.to_f32(*v) for n, v in
               st.read_safetensors(os.path.join(out, "adapter_model.safetensors")).items()}
    return config, tensors


def check_adapter(out, base, full, rank, label, eps=0.0):
    """Every tensor of the merge against the adapter: targets by truncation, others in full.
    Returns (worst relative error, per-module ranks)."""
    config, tensors = read_adapter(out)
    worst, ranks, saved = 0.0, {}, []
    for n in base:
        delta = (full[n].astype(np.float64) - base[n].astype(np.float64))
        module = n.rsplit(".", 1)[0]
        a, b = tensors.get(PREFIX + module + ".lora_A.weight"), tensors.get(PREFIX + module + ".lora_B.weight")
        if not delta.any():
            runner.expect(a is None and PREFIX + n not in tensors, "%s: %s is unchanged, yet in "
                          "the adapter" % (label, n))
            continue
        if is_target(n, base[n].shape):
            runner.expect(a is not None and b is not None, "%s: no LoRA pair for %s" % (label, n))
            k = min(rank, *delta.shape)
            want, s = truncation(delta, k)
            if eps > 0:
                kept = int(np.count_nonzero(s[:k] > eps))
                near = np.any(np.abs(s[:k] - eps) <= 1e-3 * eps)
                runner.expect(a.shape[0] == kept or near, "%s: %s has rank %d, %d singular values "
                              "are above %g" % (label, n, a.shape[0], kept, eps))
                want, _ = truncation(delta, a.shape[0])
            else:
                runner.expect(a.shape == (k, delta.shape[1]) and b.shape == (delta.shape[0], k),
                              "%s: %s: A %s, B %s for rank %d" % (label, n, a.shape, b.shape, k))
            got = b.astype(np.float64) @ a.astype(np.float64)
            worst = max(worst, rel(got, want))
            ranks[module] = a.shape[0]
        else:
            runner.expect(PREFIX + n in tensors, "%s: %s changed and is not saved" % (label, n))
            runner.expect(np.array_equal(tensors[PREFIX + n], full[n]),
                          "%s: saved %s differs from the merge" % (label, n))
            saved.append(module)
    runner.expect(worst <= 1e-5, "%s: relative Frobenius error %.3g > 1e-5" % (label, worst))
    runner.expect(sorted(config["target_modules"]) == sorted(ranks), "%s: target_modules %s" %
                  (label, config["target_modules"]))
    runner.expect(sorted(config["modules_to_save"] or []) == sorted(saved), "%s: modules_to_save %s"
                  % (label, config["modules_to_save"]))
    r = max(ranks.values())
    runner.expect(config["peft_type"] == "LORA" and config["r"] == r and config["lora_alpha"] == r,
                  "%s: config %s" % (label, config))
    pattern = {m: k for m, k in ranks.items() if k != r}
    runner.expect(config["rank_pattern"] == pattern and config["alpha_pattern"] == pattern,
                  "%s: rank_pattern %s, expected %s" % (label, config["rank_pattern"], pattern))
    runner.expect(config["base_model_name_or_path"] == os.path.join(os.path.dirname(out), "models", "base"),
                  "%s: base_model_name_or_path %s" % (label, config["base_model_name_or_path"]))
    return worst, ranks, saved


def case_truncation(work):
    recipe, base = make(work)
    full = full_merge(recipe, work)
    for rank in (4, 16):
        out = os.path.join(work, "ad%d" % rank)
        runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--emit-lora", rank], cwd="/")
        worst, ranks, saved = check_adapter(out, base, full, rank, "rank %d" % rank)
        print("rank %d: %d modules, %d saved in full (%s), lm_head unchanged and absent; B @ A vs "
              "the f64 truncation: relative Frobenius error %s 1e-5" %
              (rank, len(ranks), len(saved), ", ".join(sorted(set(m.split(".")[-1] for m in saved))),
               "<=" if worst <= 1e-5 else ">"))
    # Rank 16 is the rank of tv(math) + tv(code) (two r = 8 adapters): the adapter is the merge.
    config, tensors = read_adapter(os.path.join(work, "ad16"))
    worst = 0.0
    for n in base:
        module = n.rsplit(".", 1)[0]
        if n.startswith("model.layers.1.") and is_target(n, base[n].shape):
            got = tensors[PREFIX + module + ".lora_B.weight"] @ tensors[PREFIX + module + ".lora_A.weight"]
            worst = max(worst, rel(got.astype(np.float64), full[n].astype(np.float64) - base[n]))
    runner.expect(worst <= 1e-5, "rank 16 is not exact: %.3g" % worst)
    print("rank 16 = sum of the adapters' ranks: B @ A equals the full merge's task vector "
          "(relative error %s 1e-5)" % ("<=" if worst <= 1e-5 else ">"))
    # The manifest says what the output is; the card is an adapter's.
    out = os.path.join(work, "ad4")
    manifest = json.load(open(os.path.join(out, "mergec-manifest.json")))
    o = manifest["output"]
    runner.expect(o["kind"] == "lora" and o["rank"] == 4 and o["unchanged_tensors"] == 1 and
                  len(o["module_ranks"]) == 14 and len(o["modules_to_save"]) == 6, "manifest: %s" % o)
    card = open(os.path.join(out, "README.md")).read()
    runner.expect("library_name: peft" in card and "--emit-lora 4" in card, "card:\n" + card)
    runner.expect(sorted(os.listdir(out)) == ["README.md", "adapter_config.json",
                                              "adapter_model.safetensors", "mergec-manifest.json"],
                  "files: %s" % os.listdir(out))
    print("manifest output: kind lora, rank 4, 14 module ranks, 6 modules to save, 1 unchanged")
    # --lora-targets: only the globs' tensors are decomposed; the other changed ones are saved.
    out = os.path.join(work, "targets")
    r = runner.run_mergec(["run", recipe, "-o", out, "--emit-lora", 4, "--lora-targets",
                           "*.{q,v}_proj.weight,*.nothing"], cwd="/")
    print(r.stderr.strip().splitlines()[0])
    config, tensors = read_adapter(out)
    runner.expect(sorted(config["target_modules"]) == sorted(
        "model.layers.%d.self_attn.%s_proj" % (i, p) for i in range(2) for p in "qv"),
        "--lora-targets: %s" % config["target_modules"])
    runner.expect(PREFIX + "model.layers.1.mlp.up_proj.weight" in tensors, "up_proj not saved")
    print("--lora-targets: %d modules as LoRA, %d saved in full" %
          (len(config["target_modules"]), len(config["modules_to_save"])))


def case_epsilon(work):
    recipe, base = make(work)
    full = full_merge(recipe, work)
    out = os.path.join(work, "eps")
    eps = 0.05
    r = runner.run_mergec(["run", recipe, "-o", out, "--emit-lora", 64, "--sv-epsilon", eps], cwd="/")
    worst, ranks, saved = check_adapter(out, base, full, 64, "--sv-epsilon", eps=eps)
    config, _ = read_adapter(out)
    layer1 = sorted(set(k for m, k in ranks.items() if m.startswith("model.layers.1.")))
    layer0 = sorted(set(k for m, k in ranks.items() if m.startswith("model.layers.0.")))
    print("--sv-epsilon %g: r %d, %d modules in rank_pattern; layer 1 ranks %s (tv(math) + "
          "tv(code): at most 16), layer 0 ranks %s" %
          (eps, config["r"], len(config["rank_pattern"]), layer1, layer0))
    runner.expect(max(layer1) <= 16 and len(config["rank_pattern"]) > 0, "ranks %s" % ranks)
    print([l for l in r.stderr.splitlines() if "adapter:" in l][0])


def case_roundtrip(work):
    recipe, base = make(work)
    full = full_merge(recipe, work)
    out = os.path.join(work, "ad")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--emit-lora", 6], cwd="/")
    back = runner.write_recipe(os.path.join(work, "back.merge"), """
        model base = "models/base"
        lora out = "ad" on base
        merge base + tv(out)
        """)
    runner.run_mergec(["run", back, "-o", os.path.join(work, "back"), "--quiet"], cwd="/")
    got = {n: st.to_f32(*v) for n, v in st.read_model(os.path.join(work, "back")).items()}
    worst = 0.0
    for n in base:
        delta = full[n].astype(np.float64) - base[n]
        if is_target(n, base[n].shape):
            want, _ = truncation(delta, min(6, *delta.shape))
            worst = max(worst, rel(got[n].astype(np.float64) - base[n], want))
        else:
            runner.expect(np.array_equal(got[n], full[n]), "round trip: %s differs" % n)
    runner.expect(worst <= 1e-5, "round trip: relative error %.3g" % worst)
    print("round trip: merge base + tv(out) = base + the rank-6 truncation (relative error %s "
          "1e-5), saved tensors and lm_head exact" % ("<=" if worst <= 1e-5 else ">"))


def case_errors(work):
    recipe, base = make(work)
    out = os.path.join(work, "out")
    for args, status in (
            (["--emit-lora", 0], 2), (["--emit-lora", "eight"], 2), (["--emit-lora", "4.5"], 2),
            (["--emit-lora"], 2), (["--emit-lora", 4, "--sv-epsilon", "-1"], 2),
            (["--emit-lora", 4, "--sv-epsilon", "x"], 2), (["--sv-epsilon", "0.1"], 2),
            (["--lora-targets", "*.q_proj.weight"], 2), (["--emit-lora", 4, "--lora-targets", "[q"], 2),
            (["--emit-lora", 4, "--lora-targets", "a,,b"], 2),
            (["--emit-lora", 4, "--resume"], 2), (["--emit-lora", 4, "--device", "cuda"], 2),
            (["--emit-lora", 4, "--lora-targets", "*.nothing"], 1)):
        r = runner.run_mergec(["run", recipe, "-o", out] + args, expect=status, cwd="/", echo=False)
        runner.assert_no_output(out)
        error = [l for l in r.stderr.splitlines() if "error:" in l][0]
        print("%s: %s" % (" ".join(str(a) for a in args), error))
    for name, text in (
            ("unchanged", 'model base = "models/base"\nmodel ft = "models/ft"\n'
                          'merge base + 0 * tv(ft)\n'),
            ("other-base", 'model base = "models/base"\nmodel ft = "models/ft"\n'
                           'lora x = "adapters/math" on ft\nmerge base + tv(x)\n')):
        path = os.path.join(work, name + ".merge")
        open(path, "w").write(text)
        r = runner.run_mergec(["run", path, "-o", out, "--emit-lora", 4], expect=1, cwd="/",
                              echo=False)
        runner.assert_no_output(out)
        print("%s: %s" % (name, r.stderr.strip().splitlines()[-1].replace(work + "/", "")))


def case_make(work):
    make(work)


if __name__ == "__main__":
    runner.main_cases({"truncation": case_truncation, "epsilon": case_epsilon,
                       "roundtrip": case_roundtrip, "errors": case_errors, "make": case_make})
