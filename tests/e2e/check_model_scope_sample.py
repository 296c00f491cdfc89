"""scope = model top-k over a model larger than its sample: the mlp task vectors hold 3.1M
elements (over the 2^21 keys a model-scope top-k samples, so it samples every other chunk of
the model) and their fine-tunes' noise differs 30-fold between layers, so the sampled chunks
disagree about the share above the cut and the band must take that into account. The rule
must still take the sampled passes (the progress log: a sample, then the keys around the
sampled boundaries, no third pass) and keep exactly numpy's elements: TIES at density 0.2 over
the mlp tensors, a band [s, s + k) with skip 0.05 over the attention tensors; byte-identical
for --threads 1 and 3. Bounds: masks exact (no element beyond 2 ulp of bf16)."""
import os

import numpy as np

import compare
import ref_methods as R
import runner
import st
from model_scope import concat, global_ties, make_models, rule_of, split, ulps_against

F = np.float32
KW = dict(num_layers=4, hidden=256, intermediate=1024, vocab=256)
NOISE = {0: 0.002, 1: 0.03, 2: 0.01, 3: 0.06}

RULES = [
    ("mlp", ["*.mlp.*"], "base + ties([tv(a), tv(b), tv(c)], density = 0.2, scope = model)"),
    ("band", ["*.self_attn.*"],
     "base + tv(a) * topk_mask(tv(b), 0.3, skip = 0.05, scope = model)"),
    ("rest", ["_"], "base"),
]


def noise_scale(name):
    for layer, scale in NOISE.items():
        if ".layers.%d." % layer in name:
            return scale
    return 0.02


def body(args):
    work = runner.fresh_dir(args.work)
    mdir, vals, recipe = make_models(work, 90, noise_scale, KW, RULES)
    base = vals["base"]

    order = list(st.read_model(os.path.join(mdir, "base")))  # plan order: data offsets
    groups = {label: [n for n in order if rule_of(n, RULES) == label] for label, _, _ in RULES}
    mlp = sum(base[n].size for n in groups["mlp"])
    runner.expect(mlp > 2 ** 21, "the mlp rule should hold more keys than a sample (%d)" % mlp)
    print("mlp: %d elements, over the 2^21-key sample" % mlp)

    log = runner.run_mergec(["run", recipe, "-o", os.path.join(work, "logged")], echo=False).stderr
    passes = [line for line in log.splitlines() if line.startswith("model scope:")]
    for rule in (1, 2):
        mine = [p for p in passes if p.startswith("model scope: rule %d," % rule)]
        runner.expect(len(mine) == 2 and "(a sample of the top-k keys)" in mine[0] and
                      "(the top-k keys around the sampled boundaries)" in mine[1],
                      "rule %d should take the sampled passes, took: %s" % (rule, mine))
    print("sampled passes: rule 1 and rule 2, two passes each")

    outs = runner.run_threads_identical(recipe, work, ("1", "3"), "sampled model-scope results")
    print("--threads 1, 3: byte-identical")
    got = st.read_model(outs["3"])

    shapes = {n: base[n].shape for n in order}
    tv = {m: {n: vals[m][n] - base[n] for n in order} for m in ("a", "b", "c")}
    expected, fractions = global_ties(tv, base, groups["mlp"], shapes, 0.2)
    runner.expect(max(fractions) > 0.5 and min(fractions) < 0.01,
                  "the layers' noise should make the kept fractions differ: %s" % fractions)
    print("mlp: kept fractions per tensor %.3f..%.3f (global 0.200)" %
          (min(fractions), max(fractions)))
    names = groups["band"]
    band = split(R.topk_mask(concat(tv["b"][n] for n in names), 0.3, skip=0.05), names, shapes)
    for n in names:
        expected[n] = base[n] + tv["a"][n] * band[n]

    for label in ("mlp", "band"):
        worst, beyond, total = 0, 0, 0
        for n in groups[label]:
            dtype, arr = got[n]
            k, _, y = compare.compare(dtype, arr, expected[n])
            ulps = ulps_against(got[n], expected[n])
            worst, total = max(worst, k), total + y
            beyond += int(np.count_nonzero(ulps > 2))
        print("%s: max ulp %s over %d elements" % (label, worst, total))
        runner.expect(beyond == 0, "%s: %d elements beyond 2 ulp (a mask differs)" % (label, beyond))


if __name__ == "__main__":
    runner.main(body)
