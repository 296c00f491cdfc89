"""mergekit configurations run as they are: `mergec run config.yml` on generated checkpoints
writes the same bytes as `mergec run` of what `mergec import config.yml` prints (with the
--dtype its comments name), and matches the numpy references of lib/ref_methods.py evaluated
the way mergekit reads the configuration (per-model parameters, gradients interpolated at
t = layer / (layers - 1), filter/value lists by substring, first match wins).

--case ties: ties with a density gradient (one rule per layer), a weight gradient, a
weight filter/value list, a Hugging Face name mapped with --model, out_dtype bfloat16.
--case slerp: mergekit's gradient-slerp example (one slice, t filter lists of gradients)."""
import hashlib
import os
import re

import numpy as np

import compare
import models
import ref_methods as R
import runner
import st

F = np.float32
LAYERS = 3

TIES_YML = """\
models:
  - model: models/a
    parameters:
      density: [0.5, 0.2] # density gradient
      weight: 0.5
  - model: org/Model-B
    parameters:
      density: 0.3
      weight: [0.2, 0.6] # weight gradient
  - model: models/c
    parameters:
      density: 0.7
      weight:
        - filter: mlp
          value: 0.4
        - value: 0.1
merge_method: ties
base_model: models/base
parameters:
  normalize: true
  int8_mask: true
dtype: float32
out_dtype: bfloat16
"""

SLERP_YML = """\
slices:
  - sources:
      - model: models/a
        layer_range: [0, 3]
      - model: models/b
        layer_range: [0, 3]
merge_method: slerp
base_model: models/a
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: bfloat16
"""


def layer_t(name):
    """mergekit's t for a tensor: layer / (layers - 1), 0 outside the layers."""
    m = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
    return int(m.group(1)) / (LAYERS - 1) if m else 0.0


def interp(v, t):
    """mergekit's evaluate_setting for a list of numbers."""
    if not isinstance(v, list):
        return v
    scaled = t * (len(v) - 1)
    i0 = int(scaled)
    i1 = min(len(v) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * v[i0] + frac * v[i1]


def make(work):
    mdir = os.path.join(work, "models")
    kw = dict(hidden=64, intermediate=128, vocab=256, num_layers=LAYERS)
    vals = {"base": models.make_llama(os.path.join(mdir, "base"), "bf16", seed=80, **kw)}
    for n, s in (("a", 81), ("b", 82), ("c", 83)):
        vals[n] = models.make_llama(os.path.join(mdir, n), "bf16", seed=s, base=vals["base"], **kw)
    return vals


def run_both(work, yml_text, maps, dtype):
    """Runs the configuration directly and as its imported recipe; requires identical bytes.
    Returns the output's tensors."""
    cfg = os.path.join(work, "config.yml")
    with open(cfg, "w") as f:
        f.write(yml_text)
    margs = []
    for ref, path in maps:
        margs += ["--model", "%s=%s" % (ref, path)]
    out_yml = os.path.join(work, "out-yml")
    runner.run_mergec(["run", cfg, "-o", out_yml, "--quiet"] + margs, cwd=work)
    recipe = os.path.join(work, "imported.merge")
    runner.run_mergec(["import", cfg, "-o", recipe] + margs, cwd=work)
    with open(recipe) as f:
        text = f.read()
    runner.expect("--dtype %s" % dtype in text, "the recipe's comments do not name --dtype %s" % dtype)
    out_recipe = os.path.join(work, "out-recipe")
    runner.run_mergec(["run", recipe, "-o", out_recipe, "--quiet", "--dtype", dtype], cwd="/")
    digests = []
    for out in (out_yml, out_recipe):
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            digests.append(hashlib.sha256(f.read()).hexdigest())
    runner.expect(digests[0] == digests[1], "run config.yml and run of the imported recipe differ")
    print("run config.yml = run imported recipe: byte-identical model.safetensors")
    return st.read_model(out_yml)


def check(label, out, ref_of, names, want_dtype):
    total = within = exact = 0
    worst = 0
    for name in names:
        dtype, arr = out[name]
        runner.expect(dtype == want_dtype, "%s: dtype %s, expected %s" % (name, dtype, want_dtype))
        expected = st.from_f32(dtype, np.asarray(ref_of(name), dtype=F))
        a = compare.raw_bits(dtype, arr).reshape(-1)
        e = compare.raw_bits(dtype, expected).reshape(-1)
        dist = np.abs(compare.ordered(dtype, a) - compare.ordered(dtype, e))
        worst = max(worst, int(dist.max()))
        total += dist.size
        within += int(np.count_nonzero(dist <= 2))
        exact += int(np.count_nonzero(a == e))
    print("%s: max ulp %d, within 2 ulp %d/%d, bit-exact %d/%d" % (label, worst, within, total, exact, total))
    runner.expect(within >= 0.9995 * total, "%s: fewer than 99.95%% within 2 ulp" % label)


def case_ties(work):
    vals = make(work)
    # org/Model-B is a Hugging Face name: mapped to models/b (relative to the working directory).
    out = run_both(work, TIES_YML, [("org/Model-B", "models/b")], "bf16")

    def ref(name):
        t = layer_t(name)
        tvs = [vals[m][name] - vals["base"][name] for m in ("a", "b", "c")]
        weights = [F(0.5), F(interp([0.2, 0.6], t)), F(0.4 if "mlp" in name else 0.1)]
        density = [interp([0.5, 0.2], t), 0.3, 0.7]
        return vals["base"][name] + R.ties(tvs, weights, density, normalize=True)

    check("ties", out, ref, list(vals["base"]), "BF16")


def case_slerp(work):
    vals = make(work)
    out = run_both(work, SLERP_YML, [], "bf16")

    def ref(name):
        t = layer_t(name)
        if "self_attn" in name:
            tv = interp([0, 0.5, 0.3, 0.7, 1], t)
        elif "mlp" in name:
            tv = interp([1, 0.5, 0.7, 0.3, 0], t)
        else:
            tv = 0.5
        return R.slerp(vals["a"][name], vals["b"][name], tv)[0]

    check("slerp", out, ref, list(vals["base"]), "BF16")


if __name__ == "__main__":
    runner.main_cases({"ties": case_ties, "slerp": case_slerp})
