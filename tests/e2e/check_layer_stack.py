"""Layer stacking: `layers [...]` builds the output's layers from slices of source layers.

Cases (--case):
  frankenmerge  mergekit's orcamini-platy-44layer in small: layers [a[0:4], b[2:6]] with
                `merge passthrough()`: 8 layers, each a byte copy of its source layer, the
                tensors outside the layers from a (the output model); config.json says 8.
  upscale       SOLAR-style depth up-scaling: layers [base[0:4], base[2:6]], `merge source`.
  merged-slice  layers [a[0:2], (a[2:5], b[1:4]), b[3:6]] with base declared: rules that read
                source, base, a and b, ramp over the OUTPUT layers, against numpy with the mapping
                worked out here (a model the slice does not name reads the first source's layer).
  config        per-layer config lists: layer_types sliced from the source models' own configs,
                an unknown list of num_layers items kept with a warning; the manifest's slices;
                executables (mergec compile --emit=exe) give the same bytes as mergec run.
  import        mergekit's orcamini-platy-44layer configuration (in small, hub names mapped with
                --model) run as YAML: the same bytes as the recipe.
  errors        plan-time errors naming the model file and tensor, nothing at the output path: a
                range past the model's layers, a mapped layer missing a tensor, a mapped tensor of
                another shape."""
import json
import os

import numpy as np

import compare
import models
import runner
import st

F = np.float32
KW = dict(hidden=32, intermediate=64, vocab=64)


def layer_of(name):
    p = name.split(".")
    if len(p) > 3 and p[0] == "model" and p[1] == "layers" and p[2].isdigit():
        return int(p[2])
    return -1


def renamed(name, layer):
    p = name.split(".")
    p[2] = str(layer)
    return ".".join(p)


def expected_names(out_model, first_source_of, n_out):
    """The output's tensor names in order: out_model's outside the layers, with its layer tensors
    replaced, where they were, by each output layer's (its first source's layer, renamed)."""
    names, done = [], False
    for n in out_model:
        if layer_of(n) < 0:
            names.append(n)
        elif not done:
            done = True
            for L in range(n_out):
                model, layer = first_source_of(L)
                names += [renamed(t, L) for t in model if layer_of(t) == layer]
    return names


def config_of(out):
    with open(os.path.join(out, "config.json")) as f:
        return json.load(f)


def frankenmerge(work):
    mdir = os.path.join(work, "models")
    a = models.make_llama(os.path.join(mdir, "a"), "bf16", seed=1, num_layers=6, **KW)
    b = models.make_llama(os.path.join(mdir, "b"), "bf16", seed=2, num_layers=6, **KW)
    recipe = runner.write_recipe(os.path.join(work, "franken.merge"), """
        model a = "models/a"
        model b = "models/b"
        layers [a[0:4], b[2:6]]
        merge passthrough()
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    got = st.read_model(out)
    src_a, src_b = st.read_model(os.path.join(mdir, "a")), st.read_model(os.path.join(mdir, "b"))

    def first(L):
        return (src_a, L) if L < 4 else (src_b, L - 4 + 2)
    order = expected_names(src_a, first, 8)
    runner.expect(list(got) == order, "tensor order %s, expected %s" % (list(got), order))
    for n in order:
        L = layer_of(n)
        model, layer = first(L) if L >= 0 else (src_a, -1)
        src = renamed(n, layer) if L >= 0 else n
        compare.assert_copy(n, got[n][0], got[n][1], model[src][0], model[src][1])
    cfg = config_of(out)
    runner.expect(cfg["num_hidden_layers"] == 8, "config.json: %r" % cfg)
    print("config.json: num_hidden_layers = %d" % cfg["num_hidden_layers"])
    print("%d tensors, every one a byte copy of its source tensor" % len(order))


def upscale(work):
    mdir = os.path.join(work, "models")
    models.make_llama(os.path.join(mdir, "base"), "f16", seed=3, num_layers=6, **KW)
    recipe = runner.write_recipe(os.path.join(work, "dus.merge"), """
        model base = "models/base"
        layers [base[0:4], base[2:6]]
        merge source
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    got = st.read_model(out)
    src = st.read_model(os.path.join(mdir, "base"))

    def first(L):
        return (src, L if L < 4 else L - 4 + 2)
    order = expected_names(src, first, 8)
    runner.expect(list(got) == order, "tensor order %s" % list(got))
    for n in order:
        L = layer_of(n)
        s = renamed(n, first(L)[1]) if L >= 0 else n
        compare.assert_copy(n, got[n][0], got[n][1], src[s][0], src[s][1])
    runner.expect(config_of(out)["num_hidden_layers"] == 8, "config.json")
    # Layers 2 and 3 of the base appear twice: as output layers 2, 3 and 4, 5.
    for t in ("self_attn.q_proj.weight", "mlp.down_proj.weight"):
        runner.expect(got["model.layers.2." + t][1].tobytes() == got["model.layers.4." + t][1].tobytes(),
                      "output layers 2 and 4 differ")
    print("8 layers from 6: output layers 2-3 and 4-5 are base's layers 2-3; config.json says 8")


def ramp(anchors, layer, num_layers):
    """t = layer / (num_layers - 1) over the OUTPUT layers (check_layers.py's reference)."""
    v = [F(x) for x in anchors]
    span = max(F(num_layers) - F(1), F(1))
    t = F(layer) / span if layer >= 0 else F(0)
    t = min(max(t, F(0)), F(1))
    k = len(v) - 1
    x = t * F(k)
    result = v[0]
    for j in range(k):
        if x >= F(j):
            result = v[j] + (x - F(j)) * (v[j + 1] - v[j])
    return F(result)


# layers [a[0:2], (a[2:5], b[1:4]), b[3:6]]: per output layer, the layer each model reads.
SLICES = [[("a", 0, 2)], [("a", 2, 5), ("b", 1, 4)], [("b", 3, 6)]]


def mapping():
    """-> per output layer: {model: layer} for base, a, b and 'source' (the first source's)."""
    out = []
    for sources in SLICES:
        first_model, first_begin, first_end = sources[0]
        for i in range(first_end - first_begin):
            named = {m: s + i for m, s, _ in sources}
            row = {m: named.get(m, first_begin + i) for m in ("base", "a", "b")}
            row["source"] = (first_model, first_begin + i)
            out.append(row)
    return out


def merged_slice(work):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=10, num_layers=6, **KW)
    vals = {"base": base,
            "a": models.make_llama(os.path.join(mdir, "a"), "bf16", seed=11, num_layers=6, base=base,
                                   noise=0.1, **KW),
            "b": models.make_llama(os.path.join(mdir, "b"), "bf16", seed=12, num_layers=6, base=base,
                                   noise=0.1, **KW)}
    recipe = runner.write_recipe(os.path.join(work, "slices.merge"), """
        model base = "models/base"
        model a = "models/a"
        model b = "models/b"
        layers [a[0:2], (a[2:5], b[1:4]), b[3:6]]
        merge {
          "*.mlp.*"       => base + ramp(0, 1) * tv(a) + 0.5 * tv(b)
          "*.self_attn.*" => source
          "*norm.weight"  => source + layer + num_layers
          _               => 0.5 * (a + b)
        }
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    got = st.read_model(out)
    rows = mapping()
    n_out = len(rows)
    runner.expect(n_out == 8, "mapping")
    raw = {m: st.read_model(os.path.join(mdir, m)) for m in ("base", "a", "b")}

    def first(L):
        model, layer = rows[L]["source"]
        return raw[model], layer
    order = expected_names(raw["base"], first, n_out)
    expected = {}
    for n in order:
        L = layer_of(n)

        def read(m):
            if m == "source":
                model, layer = rows[L]["source"] if L >= 0 else ("base", -1)
                return vals[model][renamed(n, layer) if L >= 0 else n]
            return vals[m][renamed(n, rows[L][m]) if L >= 0 else n]
        if ".mlp." in n:
            e = (read("base") + ramp([0, 1], L, n_out) * (read("a") - read("base"))) + \
                F(0.5) * (read("b") - read("base"))
        elif ".self_attn." in n:
            e = read("source")
        elif n.endswith("norm.weight"):
            e = (read("source") + F(L)) + F(n_out)
        else:
            e = F(0.5) * (read("a") + read("b"))
        expected[n] = e
    compare.assert_model(got, expected, max_ulp=1, order=order)
    # The mapping itself, spelled out for one tensor of each slice.
    for L in (1, 3, 6):
        print("output layer %d reads base %d, a %d, b %d, source %s[%d]" % (
            L, rows[L]["base"], rows[L]["a"], rows[L]["b"], rows[L]["source"][0], rows[L]["source"][1]))
    runner.expect(config_of(out)["num_hidden_layers"] == 8, "config.json")


def config_case(work):
    mdir = os.path.join(work, "models")
    cfg_a = dict(models.llama_config(6, 32, 64, 64, "BF16"),
                 layer_types=["full_attention"] * 6, my_per_layer=list(range(6)))
    cfg_b = dict(models.llama_config(6, 32, 64, 64, "BF16"),
                 layer_types=["sliding_attention", "full_attention"] * 3)
    models.make_llama(os.path.join(mdir, "a"), "bf16", seed=1, num_layers=6, config=cfg_a, **KW)
    models.make_llama(os.path.join(mdir, "b"), "bf16", seed=2, num_layers=6, config=cfg_b, **KW)
    recipe = runner.write_recipe(os.path.join(work, "franken.merge"), """
        model a = "models/a"
        model b = "models/b"
        layers [a[0:3], (b[2:5], a[2:5]), a[5:6]]
        merge passthrough()
        """)
    out = os.path.join(work, "out")
    r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    for w in warnings:
        print(w)
    runner.expect(len(warnings) == 1 and "'my_per_layer'" in warnings[0], "warnings:\n" + r.stderr)
    cfg = config_of(out)
    # a's layers 0-2, b's 2-4 (b is the slice's first source), a's 5.
    want = ["full_attention"] * 3 + ["sliding_attention", "full_attention", "sliding_attention"] + \
        ["full_attention"]
    runner.expect(cfg["num_hidden_layers"] == 7, "num_hidden_layers %r" % cfg["num_hidden_layers"])
    runner.expect(cfg["layer_types"] == want, "layer_types %r, expected %r" % (cfg["layer_types"], want))
    runner.expect(cfg["my_per_layer"] == list(range(6)), "my_per_layer changed")
    runner.expect(list(cfg) == list(cfg_a), "config.json keys reordered: %r" % list(cfg))
    print("layer_types: %s" % ", ".join(cfg["layer_types"]))
    with open(os.path.join(out, "mergec-manifest.json")) as f:
        manifest = json.load(f)
    layers = manifest["layers"]
    print("manifest layers: %s, num_layers %d" % (layers["recipe"], layers["num_layers"]))
    runner.expect(layers["recipe"] == "a[0:3], (b[2:5], a[2:5]), a[5:6]" and layers["num_layers"] == 7 and
                  layers["slices"][1] == {"output_layers": [3, 6],
                                          "sources": [{"model": "b", "layer_range": [2, 5]},
                                                      {"model": "a", "layer_range": [2, 5]}]},
                  "manifest: %r" % layers)
    # A merge executable plans the same stack (the slices travel in its program JSON).
    exe = os.path.join(work, "franken")
    runner.run_mergec(["compile", recipe, "--emit=exe", "-o", exe])
    out_exe = os.path.join(work, "out-exe")
    import subprocess
    p = subprocess.run([exe, "-o", out_exe, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runner.expect(p.returncode == 0, "executable: %s" % p.stderr.decode())
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors") or f == "config.json":
            same = open(os.path.join(out, f), "rb").read() == open(os.path.join(out_exe, f), "rb").read()
            runner.expect(same, "%s differs between mergec run and the executable" % f)
    print("the executable's output: the same bytes")


def import_case(work):
    mdir = os.path.join(work, "models")
    models.make_llama(os.path.join(mdir, "orca"), "bf16", seed=1, num_layers=6, **KW)
    models.make_llama(os.path.join(mdir, "platypus"), "bf16", seed=2, num_layers=6, **KW)
    config = os.path.join(work, "orcamini-platy.yml")
    with open(config, "w") as f:
        f.write("slices:\n"
                "  - sources:\n"
                "    - model: psmathur/orca_mini_v3_13b\n"
                "      layer_range: [0, 4]\n"
                "  - sources:\n"
                "    - model: garage-bAInd/Platypus2-13B\n"
                "      layer_range: [2, 6]\n"
                "merge_method: passthrough\n")
    maps = ["--model", "psmathur/orca_mini_v3_13b=" + os.path.join(mdir, "orca"),
            "--model", "garage-bAInd/Platypus2-13B=" + os.path.join(mdir, "platypus")]
    r = runner.run_mergec(["import", config] + maps)
    print([line for line in r.stdout.splitlines() if line.startswith("layers")][0])
    out_yaml = os.path.join(work, "out-yaml")
    runner.run_mergec(["run", config, "-o", out_yaml, "--quiet"] + maps)
    recipe = runner.write_recipe(os.path.join(work, "franken.merge"), """
        model a = "models/orca"
        model b = "models/platypus"
        layers [a[0:4], b[2:6]]
        merge {
          "model.norm.weight" | "lm_head.weight" => b   # mergekit: after the layers, the last slice's
          _ => source
        }
        """)
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"])
    for f in sorted(os.listdir(out)):
        if f.endswith(".safetensors") or f == "config.json":
            same = open(os.path.join(out, f), "rb").read() == open(os.path.join(out_yaml, f), "rb").read()
            runner.expect(same, "%s differs between the YAML and the recipe" % f)
    lm_head = st.read_model(out_yaml)["lm_head.weight"][1].tobytes()
    runner.expect(lm_head == st.read_model(os.path.join(mdir, "platypus"))["lm_head.weight"][1].tobytes(),
                  "lm_head.weight is not the last slice's model's")
    print("the YAML's output: the same bytes as the recipe's")


def errors(work):
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "a"), "bf16", seed=1, num_layers=6, **KW)
    models.make_llama(os.path.join(mdir, "short"), "bf16", seed=2, num_layers=4, **KW)
    models.make_llama(os.path.join(mdir, "holes"), "bf16", seed=3, num_layers=6, base=base,
                      drop=("model.layers.3.mlp.up_proj.weight",), **KW)
    models.make_llama(os.path.join(mdir, "wide"), "bf16", seed=4, num_layers=6,
                      reshape={"model.layers.4.mlp.up_proj.weight": (32, 32)}, **KW)
    cases = [
        ("past", 'layers [a[0:4], short[2:6]]\nmerge source',
         ["short[2:6] is past the layers of model 'short'", "which has 4 (layers 0 to 3)"]),
        ("missing", 'layers [a[0:2], (a[2:4], holes[2:4])]\nmerge a + holes',
         ["tensor 'model.layers.3.mlp.up_proj.weight': model 'holes'",
          "(output layer 3 reads its layer 3) has no tensor 'model.layers.3.mlp.up_proj.weight'"]),
        ("shape", 'layers [(a[0:3], wide[2:5])]\nmerge a + wide',
         ["tensor 'model.layers.2.mlp.up_proj.weight': shape mismatch: model 'wide'",
          "(output layer 2 reads its layer 4) has [32, 32]", "has [64, 32]"]),
    ]
    for name, body, wants in cases:
        recipe = runner.write_recipe(os.path.join(work, name + ".merge"),
                                     'model a = "models/a"\nmodel short = "models/short"\n'
                                     'model holes = "models/holes"\nmodel wide = "models/wide"\n' + body)
        out = os.path.join(work, "out-" + name)
        r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"], expect=1, echo=False)
        print(r.stderr.strip().splitlines()[0])
        for want in wants:
            runner.expect(want in r.stderr, "%s: %r not in:\n%s" % (name, want, r.stderr))
        runner.assert_no_output(out)
    # An adapter cannot hold other layers than the output model's.
    out = os.path.join(work, "out-lora")
    r = runner.run_mergec(["run", os.path.join(work, "past.merge"), "-o", out, "--quiet",
                           "--emit-lora", "8"], expect=1, echo=False)
    print(r.stderr.strip().splitlines()[0])
    runner.expect("a `layers` declaration (a[0:4], short[2:6])" in r.stderr, r.stderr)
    runner.assert_no_output(out)
    print("errors name the model and tensor; no output")


runner.main_cases({"frankenmerge": frankenmerge, "upscale": upscale, "merged-slice": merged_slice,
                   "config": config_case, "import": import_case, "errors": errors})
