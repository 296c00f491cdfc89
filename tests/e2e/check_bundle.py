"""`merge compress([a, b, c], rank = K | rate = R, exclude = [...])`: the RSVD-compressed
multi-model bundle (NeurIPS 2024 LLM-merging winner), against numpy.

  --case rank     three bf16 fine-tunes (base + a rank-4 task delta + noise) and a 3-D tensor:
                  the layout (names, shapes, dtypes, kinds) as bundle.json says; stored tensors
                  (norms, the excluded embeddings and lm_head, the 3-D one) the members' bytes;
                  scale = |W_i|_F; avg the mean of W_i / |W_i|_F within bf16 rounding; each
                  member's reconstruction error at most 1.1x the optimal rank-k error
                  (np.linalg.svd truncation of W_i' - avg) for iters = 2; the compression ratio
                  (bundle bytes / N model bytes) printed and checked against the layout; one
                  linear layer run straight from the bundle (lib/bundle_ref.py) equals x @ W_i^T
                  of the reconstruction; manifest
  --case rate     rate = 0.9: k = the largest with k (rows + cols) <= 0.1 rows cols per tensor;
                  --dtype f32 writes avg, U and V in f32; at full rank the members come back
                  to f32 rounding
  --case errors   bad recipes and inputs: exit status 1, message (printed), nothing written
  --case input    `bundle zoo = "out"`: merge zoo[1] is member 1 reconstructed (numpy's
                  scale (avg + U V) from the files, within 1 ulp of the output dtype; stored
                  tensors bit for bit; the source's dtypes and config.json); zoo[i] in a
                  merge like a model (base + tv(zoo[2], from = zoo[0])); bad bundles and
                  indices: exit status 1, message (printed), nothing written"""
import json
import os

import numpy as np

import bundle_ref
import compare
import models
import runner
import st

MEMBERS = ("a", "b", "c")


def make_members(work, dtype="bf16", extra3d=True):
    """Three fine-tunes of one base: base + 0.05 * (rank-4 delta) + 0.002 * noise per tensor,
    each member's own; plus a [4, 8, 8] tensor (stored, never compressed). Returns
    {member: {name: f32 array as stored}}."""
    base = models.make_llama(os.path.join(work, "base"), "f32", seed=70)
    out = {}
    for m, member in enumerate(MEMBERS):
        tensors, values = {}, {}
        for t, (name, b) in enumerate(base.items()):
            rng = np.random.default_rng([71, m, t])
            v = b.copy()
            if b.ndim == 2:
                left = rng.standard_normal((b.shape[0], 4)).astype(np.float32)
                right = rng.standard_normal((4, b.shape[1])).astype(np.float32)
                v = v + np.float32(0.05) * (left @ right) / np.float32(np.sqrt(b.shape[1]))
            v = (v + np.float32(0.002) * rng.standard_normal(b.shape).astype(np.float32)).astype(np.float32)
            stored = st.from_f32(models.DTYPE_NAMES[dtype], v)
            tensors[name] = (models.DTYPE_NAMES[dtype], stored)
            values[name] = st.to_f32(models.DTYPE_NAMES[dtype], stored)
        if extra3d:
            conv = np.random.default_rng([72, m]).standard_normal((4, 8, 8)).astype(np.float32)
            tensors["model.conv.weight"] = ("F32", conv)
            values["model.conv.weight"] = conv
        models.write_model_dir(os.path.join(work, member), tensors,
                               config=models.llama_config(2, 64, 128, 256, models.DTYPE_NAMES[dtype]))
        out[member] = values
    return out


RECIPE = """
    model a = "a"
    model b = "b"
    model c = "c"
    merge compress([a, b, c], %s)
    """


def run_bundle(work, settings, extra=()):
    recipe = runner.write_recipe(os.path.join(work, "r.merge"), RECIPE % settings)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--force"] + list(extra), cwd=work)
    return out, r


def model_bytes(work):
    return sum(os.path.getsize(os.path.join(work, m, f)) for m in MEMBERS
               for f in os.listdir(os.path.join(work, m)) if f.endswith(".safetensors"))


def bundle_bytes(out):
    return sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
               if f.endswith(".safetensors"))


def print_refusal(work, r, out, what):
    """A refused run (exit 1, already checked): nothing at `out`, its error line printed."""
    runner.assert_no_output(out)
    line = [l for l in r.stderr.splitlines() if "error:" in l][0]
    print("%s: %s" % (what, line.replace(work + "/", "")))


def optimal_error(residual, k):
    s = np.linalg.svd(residual, compute_uv=False)
    return float(np.sqrt(np.sum(s[k:] ** 2)))


def check_layout(b, values, expect_kind, expect_rank, factor_dtype):
    names = list(values["a"])
    runner.expect(list(b.layout["tensors"]) == names, "bundle.json lists the tensors in order")
    runner.expect([m["name"] for m in b.members] == list(MEMBERS), "members a, b, c in order")
    for name in names:
        e = b.layout["tensors"][name]
        shape = list(values["a"][name].shape)
        runner.expect(e["shape"] == shape, "%s: shape %s" % (name, e["shape"]))
        runner.expect(e["kind"] == expect_kind(name, shape), "%s: kind %s" % (name, e["kind"]))
        if e["kind"] == "stored":
            for i, m in enumerate(MEMBERS):
                got = b.f64("%s.model.%d" % (name, i))
                runner.expect(np.array_equal(got, values[m][name].astype(np.float64)),
                              "%s.model.%d is member %s's tensor" % (name, i, m))
            continue
        k = expect_rank(*shape)
        runner.expect(e["rank"] == k, "%s: rank %d, expected %d" % (name, e["rank"], k))
        rows, cols = shape
        hdr = {n: v for n, v in b._tensors.items() if n.startswith(name + ".")}
        runner.expect(hdr[name + ".avg"][0] == factor_dtype and hdr[name + ".avg"][1].shape == (rows, cols),
                      "%s.avg: %s %s" % (name, hdr[name + ".avg"][0], hdr[name + ".avg"][1].shape))
        runner.expect(hdr[name + ".scale"][0] == "F32" and hdr[name + ".scale"][1].shape == (3,),
                      "%s.scale: F32 [3]" % name)
        for i in range(3):
            runner.expect(hdr["%s.U.%d" % (name, i)][1].shape == (rows, k), "%s.U.%d: %d x %d" % (name, i, rows, k))
            runner.expect(hdr["%s.V.%d" % (name, i)][1].shape == (k, cols), "%s.V.%d: %d x %d" % (name, i, k, cols))
            runner.expect(hdr["%s.U.%d" % (name, i)][0] == factor_dtype, "%s.U.%d dtype" % (name, i))


def check_numbers(b, values, avg_tol):
    """Scales, the average, each member's reconstruction error against the optimum. Returns the
    largest error ratio."""
    worst = 0.0
    for name, e in b.layout["tensors"].items():
        if e["kind"] != "compressed":
            continue
        k = e["rank"]
        ws = [values[m][name].astype(np.float64) for m in MEMBERS]
        norms = [np.linalg.norm(w) for w in ws]
        normalised = [w / n for w, n in zip(ws, norms)]
        avg = sum(normalised) / len(ws)
        scale = b.f64(name + ".scale")
        runner.expect(np.allclose(scale, norms, rtol=1e-6, atol=0),
                      "%s.scale %s, |W_i| %s" % (name, scale, norms))
        got_avg = b.f64(name + ".avg")
        rel_avg = np.max(np.abs(got_avg - avg)) / np.max(np.abs(avg))
        runner.expect(rel_avg <= avg_tol, "%s.avg: relative error %.3g > %.3g" % (name, rel_avg, avg_tol))
        for i, w in enumerate(ws):
            optimum = optimal_error(normalised[i] - avg, k)
            err = np.linalg.norm(b.reconstruct(name, i) / norms[i] - normalised[i])
            ratio = err / optimum
            worst = max(worst, ratio)
            runner.expect(ratio <= 1.1, "%s member %d: error %.4g is %.4fx the optimal rank-%d error %.4g"
                          % (name, i, err, ratio, k, optimum))
    return worst


def case_rank(work):
    values = make_members(work)
    out, r = run_bundle(work, 'rank = 8, exclude = ["lm_head.weight", "*.embed_tokens.weight"]')
    print([l for l in r.stderr.splitlines() if "bundle:" in l][0])
    b = bundle_ref.Bundle(out)
    excluded = ("lm_head.weight", "model.embed_tokens.weight")
    check_layout(b, values, lambda n, s: "compressed" if len(s) == 2 and n not in excluded else "stored",
                 lambda rows, cols: min(8, rows, cols), "BF16")
    worst = check_numbers(b, values, avg_tol=2 ** -8)
    print("rank 8, iters 2: every member's reconstruction error <= 1.1x the optimal rank-8 error "
          "(np.linalg.svd), worst %s" % ("<= 1.05x" if worst <= 1.05 else "%.3fx" % worst))
    ratio = bundle_bytes(out) / model_bytes(work)
    runner.expect(abs(ratio - b.layout["compression_ratio"]) < 1e-9 * max(ratio, 1),
                  "bundle.json's compression_ratio %s, files %s" % (b.layout["compression_ratio"], ratio))
    # What the layout predicts, from the tensors' sizes alone (headers aside): each compressed
    # matrix's rows x cols becomes avg (shared) + 3 k (rows + cols) + 3 scales, bf16.
    size = {"BF16": 2, "F32": 4}
    member = sum(v.size * 2 if v.ndim == 2 or n != "model.conv.weight" else v.size * 4
                 for n, v in values["a"].items()) * 3
    predicted = 0
    for n, e in b.layout["tensors"].items():
        rows_cols = int(np.prod(e["shape"]))
        if e["kind"] == "stored":
            predicted += 3 * rows_cols * size[e["dtype"]]
        else:
            rows, cols = e["shape"]
            predicted += 2 * (rows * cols + 3 * e["rank"] * (rows + cols)) + 4 * 3
    print("compression ratio: bundle bytes / 3 model bytes = %.3f (the layout's payload: %.3f)"
          % (ratio, predicted / member))
    runner.expect(abs(ratio - predicted / member) < 0.02, "ratio %.3f, layout %.3f" % (ratio, predicted / member))
    runner.expect(ratio < 0.75, "the bundle is %.3f of the members" % ratio)
    # One linear layer of member 1 straight from the bundle, with a bias.
    name = "model.layers.1.mlp.down_proj.weight"
    x = np.random.default_rng(5).standard_normal((7, 128))
    bias = np.random.default_rng(6).standard_normal(64)
    y = b.linear(name, 1, x, bias)
    want = x @ b.reconstruct(name, 1).T + bias
    rel = np.linalg.norm(y - want) / np.linalg.norm(want)
    runner.expect(rel <= 1e-12, "linear from the factors vs the reconstructed weight: %.3g" % rel)
    print("linear layer from the bundle = x @ W_1^T + bias of the reconstruction (relative error <= 1e-12)")
    manifest = json.load(open(os.path.join(out, "mergec-manifest.json")))
    o = manifest["output"]
    print("manifest output: kind %s, %d compressed, %d stored" % (o["kind"], o["compressed_tensors"], o["stored_tensors"]))
    files = sorted(os.listdir(out))
    runner.expect({"bundle.json", "config.json", "mergec-manifest.json", "model.safetensors",
                   "tokenizer.json"} <= set(files), "output files: %s" % files)
    runner.expect(open(os.path.join(out, "config.json")).read() == open(os.path.join(work, "a", "config.json")).read(),
                  "the bundle's config.json is the first member's")


def case_rate(work):
    values = make_members(work, dtype="f32", extra3d=False)

    def rank_rule(rows, cols):
        k = int(np.floor(0.1 * rows * cols / (rows + cols)))
        return max(1, min(k, rows, cols))
    out, _ = run_bundle(work, "rate = 0.9", ["--dtype", "f32", "--quiet"])
    b = bundle_ref.Bundle(out)
    check_layout(b, values, lambda n, s: "compressed" if len(s) == 2 else "stored", rank_rule, "F32")
    ranks = sorted({(tuple(e["shape"]), e["rank"]) for e in b.layout["tensors"].values() if e["kind"] == "compressed"})
    print("rate 0.9: ranks %s" % ", ".join("%dx%d->%d" % (s[0], s[1], k) for s, k in ranks))
    worst = check_numbers(b, values, avg_tol=1e-6)
    print("rate 0.9: every reconstruction within 1.1x the optimum (worst %s)" % ("<= 1.05x" if worst <= 1.05 else "%.3fx" % worst))
    # rank >= min(rows, cols): the members come back to f32 rounding.
    out, _ = run_bundle(work, "rank = 1000", ["--dtype", "f32", "--quiet"])
    b = bundle_ref.Bundle(out)
    worst = 0.0
    for name, e in b.layout["tensors"].items():
        for i, m in enumerate(MEMBERS):
            w = values[m][name].astype(np.float64)
            worst = max(worst, np.linalg.norm(b.reconstruct(name, i) - w) / np.linalg.norm(w))
    runner.expect(worst <= 1e-5, "full rank: relative error %.3g" % worst)
    print("full rank (rank = 1000, clamped): every member back within relative error 1e-5")


def case_errors(work):
    make_members(work, extra3d=False)

    def refused(settings, what, extra=()):
        recipe = runner.write_recipe(os.path.join(work, "r.merge"), RECIPE % settings)
        out = os.path.join(work, "out")
        r = runner.run_mergec(["run", recipe, "-o", out] + list(extra), expect=1, cwd=work, echo=False)
        print_refusal(work, r, out, what)
    refused("rate = 1.5", "rate 1.5")
    refused("rate = 0", "rate 0")
    refused("rank = 0", "rank 0")
    refused("rank = 4, rate = 0.5", "both")
    refused("rank = 4", "emit-lora", ["--emit-lora", "4"])
    refused("rank = 4", "cuda", ["--device", "cuda"])
    refused("rank = 4", "resume", ["--resume"])
    refused("rank = 4", "max-memory", ["--max-memory", "1MB"])
    # A member without a tensor the first has, and one whose tensor has another shape.
    tensors = st.read_model(os.path.join(work, "c"))
    del tensors["model.layers.0.mlp.up_proj.weight"]
    models.write_model_dir(os.path.join(work, "c"), tensors)
    refused("rank = 4", "missing tensor")
    tensors = st.read_model(os.path.join(work, "b"))
    tensors["model.layers.1.mlp.up_proj.weight"] = ("BF16", np.zeros((64, 128), np.uint16))
    models.write_model_dir(os.path.join(work, "b"), tensors)
    make_c = st.read_model(os.path.join(work, "a"))
    models.write_model_dir(os.path.join(work, "c"), make_c)
    refused("rank = 4", "shape")


def case_input(work):
    values = make_members(work)
    out, _ = run_bundle(work, 'rank = 8, exclude = ["lm_head.weight"]', ["--quiet"])
    b = bundle_ref.Bundle(out)

    def run(text, expect=0, name="in.merge"):
        recipe = runner.write_recipe(os.path.join(work, name), text)
        dest = os.path.join(work, "o" if expect == 0 else "refused")
        r = runner.run_mergec(["run", recipe, "-o", dest, "--force", "--quiet"], expect=expect,
                              cwd=work, echo=False)
        return dest, r
    dest, _ = run('bundle zoo = "out"\nmerge zoo[1]\n')
    got = st.read_model(dest)
    want = {n: b.reconstruct(n, 1) for n in b.layout["tensors"]}
    dtypes = {n: st.read_model(os.path.join(work, "b"))[n][0] for n in want}
    print("merge zoo[1]:", end=" ")
    compare.assert_model(got, want, max_ulp=1, expected_dtypes=dtypes, order=list(values["b"]))
    stored = [n for n, e in b.layout["tensors"].items() if e["kind"] == "stored"]
    for n in stored:
        runner.expect(np.array_equal(got[n][1], st.read_model(os.path.join(work, "b"))[n][1]),
                      "stored %s is member b's bytes" % n)
    runner.expect(os.path.exists(os.path.join(dest, "config.json")), "config.json from the bundle")
    print("merge zoo[1]: %d stored tensors bit for bit, config.json kept" % len(stored))
    # A member in a merge like any model: the base's tensors plus member 2's change from member 0.
    models.make_llama(os.path.join(work, "base32"), "f32", seed=70)
    dest, _ = run('model base = "base32"\nbundle zoo = "out"\n'
                  'merge base + tv(zoo[2], from = zoo[0])\n')
    got = st.read_model(dest)
    base = {n: st.to_f32(*v) for n, v in st.read_model(os.path.join(work, "base32")).items()}
    worst = 0.0
    for n, (dt, arr) in got.items():
        want = base[n].astype(np.float64) + b.reconstruct(n, 2) - b.reconstruct(n, 0)
        err = np.abs(st.to_f32(dt, arr) - want).max() / max(np.abs(want).max(), 1e-30)
        worst = max(worst, err)
    runner.expect(worst <= 1e-6, "base + tv(zoo[2], from = zoo[0]): relative error %.3g" % worst)
    print("base + tv(zoo[2], from = zoo[0]) = numpy's base + rec_2 - rec_0 (relative error <= 1e-6)")

    def refused(text, what):
        dest, r = run(text, expect=1)
        print_refusal(work, r, dest, what)
    refused('bundle zoo = "out"\nmerge zoo[3]\n', "index 3 of 3")
    refused('bundle zoo = "a"\nmerge zoo[0]\n', "not a bundle")
    refused('bundle zoo = "out"\nmerge zoo[0.5]\n', "index 0.5")
    refused('bundle zoo = "out"\nmerge zoo\n', "no index")
    refused('model a = "a"\nmerge a[0]\n', "model indexed")
    layout = json.load(open(os.path.join(out, "bundle.json")))
    layout["tensors"]["model.layers.0.mlp.up_proj.weight"]["rank"] = 6
    json.dump(layout, open(os.path.join(out, "bundle.json"), "w"))
    refused('bundle zoo = "out"\nmerge zoo[0]\n', "rank disagrees")
    layout["tensors"]["model.layers.0.mlp.up_proj.weight"]["rank"] = 8
    layout["tensors"]["model.norm.weight"]["shape"] = [32]
    json.dump(layout, open(os.path.join(out, "bundle.json"), "w"))
    refused('bundle zoo = "out"\nmerge zoo[0]\n', "shape disagrees")
    open(os.path.join(out, "bundle.json"), "w").write("{")
    refused('bundle zoo = "out"\nmerge zoo[0]\n', "not JSON")


if __name__ == "__main__":
    runner.main_cases({"rank": case_rank, "rate": case_rate, "errors": case_errors,
                       "input": case_input})
