"""What the scope = model checks share: fine-tunes whose noise differs by tensor, rules as
(label, patterns, expression), and numpy's view of a rule's tensors as one flat vector (the
output model's tensors in plan order, by data offset)."""
import fnmatch
import os

import numpy as np

import models
import ref_methods as R
import runner
import st

F = np.float32


def fine_tune(directory, base, seed, noise_scale, shape):
    """base + noise_scale(name) * N(0, 1) per tensor, stored as bf16 in `directory` (a Llama
    checkpoint of `shape`: num_layers, hidden, intermediate, vocab); returns the stored values
    widened to f32."""
    tensors, values = {}, {}
    for index, (name, b) in enumerate(base.items()):
        rng = np.random.default_rng([seed, index])
        v = (b + F(noise_scale(name)) * rng.standard_normal(b.shape, dtype=F)).astype(F)
        stored = st.from_f32("BF16", v)
        tensors[name] = ("BF16", stored)
        values[name] = st.to_f32("BF16", stored)
    models.write_model_dir(directory, tensors,
                           config=models.llama_config(shape["num_layers"], shape["hidden"],
                                                      shape["intermediate"], shape["vocab"],
                                                      "BF16"))
    return values


def make_models(work, seed, noise_scale, shape, rules):
    """A bf16 base (seed) and fine-tunes a, b, c (seed + 1, + 2, + 3) under WORK/models, and
    WORK/r.merge with `rules`: returns (models dir, {name: f32 values}, recipe path)."""
    mdir = os.path.join(work, "models")
    base = models.make_llama(os.path.join(mdir, "base"), "bf16", seed=seed, **shape)
    values = {"base": base}
    for offset, name in enumerate(("a", "b", "c"), 1):
        values[name] = fine_tune(os.path.join(mdir, name), base, seed + offset, noise_scale,
                                 shape)
    return mdir, values, write_recipe(os.path.join(work, "r.merge"), rules)


def write_recipe(path, rules, model_names=("base", "a", "b", "c")):
    """A recipe over models/NAME with one rule per (label, patterns, expression); "_" as the
    only pattern is the default rule."""
    return runner.write_recipe(path, "\n".join(
        ['model %s = "models/%s"' % (m, m) for m in model_names] + ["merge {"] +
        ["  %s => %s" % ("_" if p == ["_"] else " | ".join('"%s"' % x for x in p), e)
         for _, p, e in rules] + ["}"]) + "\n")


def rule_of(name, rules):
    for label, patterns, _ in rules:
        if any(p == "_" or fnmatch.fnmatchcase(name, p) for p in patterns):
            return label
    raise AssertionError(name)


def split(flat, names, shapes):
    out, at = {}, 0
    for n in names:
        size = int(np.prod(shapes[n]))
        out[n] = flat[at:at + size].reshape(shapes[n])
        at += size
    return out


def concat(arrays):
    return np.concatenate([np.asarray(a, dtype=F).reshape(-1) for a in arrays])


def ulps_against(got, expected):
    """Per element, how many ulps of the output dtype `got` (dtype, array) is from `expected`
    (f32) stored in that dtype."""
    import compare
    dtype, arr = got
    return np.abs(
        compare.ordered(dtype, compare.raw_bits(dtype, arr).reshape(-1)) -
        compare.ordered(dtype, compare.raw_bits(dtype, st.from_f32(dtype, expected)).reshape(-1)))


def global_ties(tv, base, names, shapes, density):
    """TIES with one threshold per task vector over the tensors `names` taken together (tv:
    {model: {name: task vector}}, models a, b, c): the expected outputs by name, and the share
    of a's task vector each tensor keeps."""
    masks = {m: split(R.topk_mask(concat(tv[m][n] for n in names), density), names, shapes)
             for m in ("a", "b", "c")}
    expected = {n: base[n] + R.gta_combine([tv[m][n] * masks[m][n] for m in ("a", "b", "c")],
                                           1, True, True)
                for n in names}
    return expected, [float(masks["a"][n].mean()) for n in names]
