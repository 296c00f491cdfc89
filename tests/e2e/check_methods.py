"""Merge methods (stdlib) and the primitives they are built on, run by mergec on generated bf16
checkpoints and compared with the independent numpy references of lib/ref_methods.py.

`--method GROUP` picks one group (one lit test each): ties, dare, breadcrumbs, della, della-rows, sce,
slerp, nuslerp, multislerp, model-stock, model-stock-filter-wise, karcher, geomedian,
primitives. Each group writes one
recipe whose rules cover the variants (scalar and list weights and densities, normalize on and
off, the rescale modes, tiny densities, density 1) and compares every output tensor:

    LABEL: max ulp K, within 2 ulp X/Y, bit-exact Z/Y

and requires X/Y >= 99.95% per label (ulps of the output dtype, after rounding the f32 reference
once). The random methods (dare_*, della*) are compared numerically too (the reference
reproduces mergec's Philox masks), and in addition: rules over a single task vector expose the
mask, whose keep rate must lie within 4 sigma of the density (of the per-element probabilities
for DELLA, per magnitude quartile), and mergec run with --threads 1 and with the default thread
count must write byte-identical files. The primitives group checks masks and quantiles exactly.

`--reference-only` runs the references alone (no mergec) and prints sanity statistics."""
import fnmatch
import math
import os

import numpy as np

import compare
import models
import ref_methods as R
import runner
import st

F = np.float32
THREE = "[tv(a), tv(b), tv(c)]"
W3 = "weights = [0.5, 0.3, 0.2]"


class Rule:
    """patterns: glob list ("_" = default); expr: the recipe expression; label: the method the
    summary line counts it under; ref(c) -> f32 array; stat: None or a dict describing how the
    output exposes a random mask (keys: tv, p (float) or probs(c) -> array); strict: None, or
    how many elements of the rule's tensors (all together) may be beyond 2 ulp: for corner cases
    where a handful of elements decide (k = int(density * n) = 0, a band with gamma * n < 1),
    which the 99.95% bound per method would let through."""

    def __init__(self, patterns, expr, label, ref, stat=None, strict=None):
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.expr, self.label, self.ref, self.stat, self.strict = expr, label, ref, stat, strict

    def matches(self, name):
        return any(p == "_" or fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def recipe_line(self):
        if self.patterns == ["_"]:
            lhs = "_"
        else:
            lhs = " | ".join('"%s"' % p for p in self.patterns)
        return "  %s => %s" % (lhs, self.expr)


class Ctx:
    """The f32 values of every model for one tensor name: c.a, c.base, c.tv("a") ..."""

    def __init__(self, values, name):
        self._values, self.name = values, name

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        return self._values[key][self.name]

    def tv(self, m):
        return self._values[m][self.name] - self._values["base"][self.name]

    def tvs(self, *ms):
        return [self.tv(m) for m in ms]


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def make_models(mdir, names, vocab):
    """base (seed 60); a, b, c: independent fine-tunes (base + 0.02 N(0,1)); d, e, f: correlated
    fine-tunes (mid + 0.015 N(0,1), mid = base + 0.02 N(0,1)), so that their task vectors have
    cosines near 0.6."""
    kw = dict(hidden=64, intermediate=128, vocab=vocab, num_layers=2)
    vals = {"base": models.make_llama(os.path.join(mdir, "base"), "bf16", seed=60, **kw)}
    seeds = {"a": 61, "b": 62, "c": 63}
    for n in ("a", "b", "c"):
        if n in names:
            vals[n] = models.make_llama(os.path.join(mdir, n), "bf16", seed=seeds[n], base=vals["base"], **kw)
    if any(n in names for n in ("d", "e", "f")):
        mid = models.make_llama(os.path.join(mdir, "mid"), "bf16", seed=70, base=vals["base"], **kw)
        for n, s in (("d", 71), ("e", 72), ("f", 73)):
            if n in names:
                vals[n] = models.make_llama(os.path.join(mdir, n), "bf16", seed=s, base=mid, noise=0.015, **kw)
    return vals


def recipe_text(model_names, rules, mdir_rel="models"):
    lines = ['model %-4s = "%s/%s"' % (n, mdir_rel, n) for n in model_names]
    lines.append("merge {")
    lines += [r.recipe_line() for r in rules]
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------
def ulp_distances(dtype, actual, expected_f32):
    """Per-element ulp distance of the output dtype (NaN vs NaN: 0, NaN vs number: huge)."""
    expected = st.from_f32(dtype, np.asarray(expected_f32, dtype=F))
    a = compare.raw_bits(dtype, actual).reshape(-1)
    e = compare.raw_bits(dtype, expected).reshape(-1)
    an, en = compare.is_nan(dtype, a), compare.is_nan(dtype, e)
    dist = np.abs(compare.ordered(dtype, a) - compare.ordered(dtype, e))
    dist = np.where(an & en, 0, dist)
    return np.where(an != en, np.int64(1) << 40, dist), a == e


class Tally:
    def __init__(self):
        self.by_label = {}
        self.worst = {}
        self.strict_failures = []
        self.strict_counts = {}

    def add(self, label, name, dist, exact):
        k, w2, ex, n = self.by_label.get(label, (0, 0, 0, 0))
        dmax = int(dist.max()) if dist.size else 0
        self.by_label[label] = (max(k, dmax), w2 + int(np.count_nonzero(dist <= 2)),
                                ex + int(np.count_nonzero(exact)), n + int(dist.size))
        bad = int(np.count_nonzero(dist > 2))
        if bad:
            self.worst.setdefault(label, []).append((bad, name, dmax))

    def add_rule(self, rule, name, dist, exact):
        self.add(rule.label, name, dist, exact)
        if rule.strict is not None:
            beyond = self.strict_counts.get(id(rule), 0) + int(np.count_nonzero(dist > 2))
            self.strict_counts[id(rule)] = beyond
            if beyond > rule.strict:
                self.strict_failures.append("%s (%s): %d elements beyond 2 ulp, at most %d allowed" % (
                    name, rule.expr, beyond, rule.strict))

    def report(self, threshold=0.9995, require_exact=()):
        failures = list(self.strict_failures)
        for label in sorted(self.by_label):
            k, w2, ex, n = self.by_label[label]
            ks = "%d" % k if k < (1 << 40) else "inf(NaN mismatch)"
            print("%s: max ulp %s, within 2 ulp %d/%d, bit-exact %d/%d" % (label, ks, w2, n, ex, n))
            if w2 < threshold * n:
                failures.append("%s: only %d/%d elements within 2 ulp (worst tensors: %s)" % (
                    label, w2, n, sorted(self.worst.get(label, []), reverse=True)[:4]))
            if label in require_exact and ex != n:
                failures.append("%s: %d/%d elements bit-exact, all required" % (label, ex, n))
        if failures:
            raise runner.TestFailure("\n".join(failures))


def first_rule(rules, name):
    for r in rules:
        if r.matches(name):
            return r
    raise runner.TestFailure("no rule matches %s" % name)


def describe_mismatch(name, dtype, actual, expected, dist, n=4):
    a32 = st.to_f32(dtype, actual).reshape(-1)
    e32 = st.to_f32(dtype, st.from_f32(dtype, expected)).reshape(-1)
    bad = np.flatnonzero(dist > 2)[:n]
    return "%s: %s" % (name, ", ".join("[%d] got %r want %r" % (i, float(a32[i]), float(e32[i])) for i in bad))


# ---------------------------------------------------------------------------------------------
# keep-rate statistics for the random methods
# ---------------------------------------------------------------------------------------------
def keep_stats(label, rules_stats, require=4.0):
    """rules_stats: [(rule, [(kept_obs bool array, tv_nonzero bool array, probs array,
    ref_mask bool array)])]. Prints the keep rate against its expectation and the agreement of
    the observed mask with the reference's; raises unless within `require` sigma."""
    for rule, items in rules_stats:
        kept = np.concatenate([k[nz] for k, nz, _, _ in items])
        probs = np.concatenate([np.broadcast_to(p, k.shape)[nz] for k, nz, p, _ in items]).astype(np.float64)
        ref = np.concatenate([m[nz] for k, nz, _, m in items])
        n = kept.size
        obs = float(kept.sum())
        mean = float(probs.sum())
        sd = math.sqrt(float((probs * (1 - probs)).sum()))
        z = (obs - mean) / sd if sd > 0 else 0.0
        same = int(np.count_nonzero(kept == ref))
        print("%s keep rate %.4f, expected %.4f over %d elements (z = %.2f): %s" % (
            label, obs / n, mean / n, n, z, "within %g sigma" % require if abs(z) < require else "OUTSIDE"))
        print("%s mask: %d/%d elements match the reference Philox mask" % (label, same, n))
        if abs(z) >= require:
            raise runner.TestFailure("%s (%s): keep rate z = %.2f" % (label, rule.expr, z))
        if rule.stat.get("quartiles"):
            # DELLA: keep probability grows with the magnitude rank; check each rank quartile
            qk = [[], [], [], []]
            qp = [[], [], [], []]
            for k, nz, p, _ in items:
                pq = np.broadcast_to(p, k.shape)
                lo, hi = float(pq.min()), float(pq.max())
                edges = np.linspace(lo, hi, 5)
                band = np.clip(np.searchsorted(edges, pq, side="right") - 1, 0, 3)
                for q in range(4):
                    sel = nz & (band == q)
                    qk[q].append(k[sel])
                    qp[q].append(pq[sel])
            parts = []
            for q in range(4):
                kq = np.concatenate(qk[q]).astype(np.float64)
                pq = np.concatenate(qp[q]).astype(np.float64)
                zq = (kq.sum() - pq.sum()) / math.sqrt(max((pq * (1 - pq)).sum(), 1e-12))
                parts.append("%.3f/%.3f" % (kq.mean(), pq.mean()))
                if abs(zq) >= require:
                    raise runner.TestFailure("%s: rank quartile %d keep rate %.4f vs %.4f (z = %.2f)" % (
                        label, q, kq.mean(), pq.mean(), zq))
            print("%s keep rate by magnitude quartile (observed/expected): %s" % (label, " ".join(parts)))
        if same != n:
            raise runner.TestFailure("%s: %d of %d mask elements differ from the reference" % (label, n - same, n))


# ---------------------------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------------------------
def g_ties():
    t = R.ties
    tv3 = lambda c: c.tvs("a", "b", "c")
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "base + ties(%s, %s, density = [0.3, 0.5, 0.2])" % (THREE, W3), "ties",
             lambda c: c.base + t(tv3(c), [0.5, 0.3, 0.2], [0.3, 0.5, 0.2])),
        Rule("*.k_proj.weight", "base + ties(%s, density = 0.4)" % THREE, "ties",
             lambda c: c.base + t(tv3(c), 1, 0.4)),
        Rule("*.v_proj.weight", "base + ties(%s, weights = [1, -0.5, 0.7], density = 0.5, normalize = false)" % THREE,
             "ties", lambda c: c.base + t(tv3(c), [1, -0.5, 0.7], 0.5, normalize=False)),
        Rule("*.o_proj.weight", "base + ties(%s, weights = [0.6, 0.4, 0.8], density = [0.3, 0.6, 0.9], rescale = true)"
             % THREE, "ties", lambda c: c.base + t(tv3(c), [0.6, 0.4, 0.8], [0.3, 0.6, 0.9], rescale=True)),
        Rule("model.layers.0.mlp.gate_proj.weight", "base + ties([tv(a), tv(b)], weights = 0.7, density = 0.0001)",
             "ties", lambda c: c.base + t(c.tvs("a", "b"), 0.7, 0.0001), strict=0),
        Rule("model.layers.1.mlp.gate_proj.weight",
             'base + ties(%s, density = [0.001, 0.002, 0.0005], rescale = "l1")' % THREE, "ties",
             lambda c: c.base + t(tv3(c), 1, [0.001, 0.002, 0.0005], rescale="l1"), strict=0),
        Rule("*.up_proj.weight", "base + ties(%s, %s, density = 1)" % (THREE, W3), "ties",
             lambda c: c.base + t(tv3(c), [0.5, 0.3, 0.2], 1)),
        Rule("*.down_proj.weight", "base + ties(%s, %s, density = 0.7, normalize = true, rescale = false)" % (THREE, W3),
             "ties", lambda c: c.base + t(tv3(c), [0.5, 0.3, 0.2], 0.7)),
        Rule("*norm.weight", "base + ties(%s, %s, density = 0.5)" % (THREE, W3), "ties",
             lambda c: c.base + t(tv3(c), [0.5, 0.3, 0.2], 0.5)),
        Rule("lm_head.weight", "ties(%s, density = 0.3)" % THREE, "ties", lambda c: t(tv3(c), 1, 0.3)),
        Rule("_", "base + ties(%s, %s, density = [0.3, 0.5, 0.2])" % (THREE, W3), "ties",
             lambda c: c.base + t(tv3(c), [0.5, 0.3, 0.2], [0.3, 0.5, 0.2])),
    ], {}


def g_dare():
    dl, dt = R.dare_linear, R.dare_ties
    tv3 = lambda c: c.tvs("a", "b", "c")
    return ["a", "b", "c"], 2048, [
        Rule("*.q_proj.weight", "base + dare_linear(%s, %s, density = [0.3, 0.5, 0.7])" % (THREE, W3), "dare_linear",
             lambda c: c.base + dl(tv3(c), [0.5, 0.3, 0.2], [0.3, 0.5, 0.7], name=c.name)),
        Rule("*.k_proj.weight", "base + dare_linear(%s, weights = 0.5, density = 0.4, rescale = false, seed = 1)" % THREE,
             "dare_linear", lambda c: c.base + dl(tv3(c), 0.5, 0.4, rescale=False, seed=1, name=c.name)),
        Rule("*.v_proj.weight", 'base + dare_linear(%s, density = 0.5, rescale = "inverse", seed = 11)' % THREE,
             "dare_linear", lambda c: c.base + dl(tv3(c), 1, 0.5, rescale="inverse", seed=11, name=c.name)),
        Rule("*.o_proj.weight",
             "base + dare_linear(%s, weights = [1, 0.5, 0.25], density = 0.6, normalize = true, seed = 3)" % THREE,
             "dare_linear", lambda c: c.base + dl(tv3(c), [1, 0.5, 0.25], 0.6, normalize=True, seed=3, name=c.name)),
        Rule("model.layers.0.mlp.gate_proj.weight",
             "base + dare_linear(%s, density = [0.01, 0.05, 0.02], seed = 2)" % THREE, "dare_linear",
             lambda c: c.base + dl(tv3(c), 1, [0.01, 0.05, 0.02], seed=2, name=c.name)),
        Rule("model.layers.1.mlp.gate_proj.weight", "base + dare_ties(%s, %s, density = [0.3, 0.5, 0.7])" % (THREE, W3),
             "dare_ties", lambda c: c.base + dt(tv3(c), [0.5, 0.3, 0.2], [0.3, 0.5, 0.7], name=c.name)),
        Rule("*.up_proj.weight", 'base + dare_ties(%s, density = 0.5, rescale = "l1", normalize = true, seed = 5)'
             % THREE, "dare_ties",
             lambda c: c.base + dt(tv3(c), 1, 0.5, normalize=True, rescale="l1", seed=5, name=c.name)),
        Rule("*.down_proj.weight", "base + dare_ties(%s, %s, density = 1)" % (THREE, W3), "dare_ties",
             lambda c: c.base + dt(tv3(c), [0.5, 0.3, 0.2], 1, name=c.name)),
        Rule("*norm.weight", 'base + dare_ties(%s, density = 0.5, rescale = "inverse", seed = 8)' % THREE, "dare_ties",
             lambda c: c.base + dt(tv3(c), 1, 0.5, rescale="inverse", seed=8, name=c.name)),
        Rule("*.embed_tokens.weight", "dare_linear([tv(a)], density = 0.3, rescale = false, seed = 9)", "dare_linear",
             lambda c: dl([c.tv("a")], 1, 0.3, rescale=False, seed=9, name=c.name),
             stat=dict(tv="a", p=0.3, seed=9, pos=0)),
        Rule("lm_head.weight", "dare_ties([tv(b)], density = 0.7, seed = 1)", "dare_ties",
             lambda c: dt([c.tv("b")], 1, 0.7, seed=1, name=c.name),
             stat=dict(tv="b", p=0.7, seed=1, pos=0)),
    ], {"random": True}


def g_breadcrumbs():
    b, bt = R.breadcrumbs, R.breadcrumbs_ties
    tv3 = lambda c: c.tvs("a", "b", "c")
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "base + breadcrumbs(%s, %s, density = [0.3, 0.5, 0.7], gamma = 0.01)" % (THREE, W3),
             "breadcrumbs", lambda c: c.base + b(tv3(c), [0.5, 0.3, 0.2], [0.3, 0.5, 0.7], 0.01)),
        Rule("*.k_proj.weight", "base + breadcrumbs(%s, density = 0.9, gamma = 0.2)" % THREE, "breadcrumbs",
             lambda c: c.base + b(tv3(c), 1, 0.9, 0.2)),
        Rule("*.v_proj.weight", "base + breadcrumbs_ties(%s, %s, density = 0.5)" % (THREE, W3), "breadcrumbs_ties",
             lambda c: c.base + bt(tv3(c), [0.5, 0.3, 0.2], 0.5)),
        Rule("*.o_proj.weight", "base + breadcrumbs_ties(%s, density = [0.2, 0.4, 0.6], gamma = 0.05)" % THREE,
             "breadcrumbs_ties", lambda c: c.base + bt(tv3(c), 1, [0.2, 0.4, 0.6], 0.05)),
        Rule("*norm.weight", "base + breadcrumbs(%s, %s, density = 0.5)" % (THREE, W3), "breadcrumbs",
             lambda c: c.base + b(tv3(c), [0.5, 0.3, 0.2], 0.5), strict=0),
        Rule("*.gate_proj.weight", "base + breadcrumbs(%s, density = 1, gamma = 0.1)" % THREE, "breadcrumbs",
             lambda c: c.base + b(tv3(c), 1, 1, 0.1)),
        Rule("*.up_proj.weight", "base + breadcrumbs_ties(%s, weights = [1, -0.5, 0.7], density = 0.001, gamma = 0.001)"
             % THREE, "breadcrumbs_ties", lambda c: c.base + bt(tv3(c), [1, -0.5, 0.7], 0.001, 0.001), strict=0),
        Rule("lm_head.weight", "breadcrumbs(%s, density = 0.2, gamma = 0.05)" % THREE, "breadcrumbs",
             lambda c: b(tv3(c), 1, 0.2, 0.05)),
        Rule("_", "base + breadcrumbs_ties(%s, density = 0.3, gamma = 0.02)" % THREE, "breadcrumbs_ties",
             lambda c: c.base + bt(tv3(c), 1, 0.3, 0.02)),
    ], {}


def g_della():
    d, dl = R.della, R.della_linear
    tv3 = lambda c: c.tvs("a", "b", "c")
    return ["a", "b", "c"], 2048, [
        Rule("*.q_proj.weight", "base + della(%s, %s, density = [0.4, 0.5, 0.6], epsilon = 0.1)" % (THREE, W3), "della",
             lambda c: c.base + d(tv3(c), [0.5, 0.3, 0.2], [0.4, 0.5, 0.6], 0.1, name=c.name)),
        Rule("*.k_proj.weight", "base + della(%s, density = 0.5)" % THREE, "della",
             lambda c: c.base + d(tv3(c), 1, 0.5, name=c.name)),
        Rule("*.v_proj.weight", "base + della_linear(%s, %s, density = 0.5, epsilon = 0.2, seed = 4)" % (THREE, W3),
             "della_linear", lambda c: c.base + dl(tv3(c), [0.5, 0.3, 0.2], 0.5, 0.2, seed=4, name=c.name)),
        Rule("*.o_proj.weight", "base + della_linear(%s, density = [0.3, 0.5, 0.7], epsilon = 0.1)" % THREE,
             "della_linear", lambda c: c.base + dl(tv3(c), 1, [0.3, 0.5, 0.7], 0.1, name=c.name)),
        Rule("*norm.weight", "base + della(%s, %s, density = 0.5, seed = 6)" % (THREE, W3), "della",
             lambda c: c.base + d(tv3(c), [0.5, 0.3, 0.2], 0.5, seed=6, name=c.name)),
        Rule("model.layers.1.mlp.up_proj.weight", "base + della(%s, %s, density = [1, 0.5, 0.4])" % (THREE, W3),
             "della", lambda c: c.base + d(tv3(c), [0.5, 0.3, 0.2], [1, 0.5, 0.4], name=c.name)),
        Rule("model.layers.1.mlp.down_proj.weight", "base + della_linear(%s, density = 1)" % THREE, "della_linear",
             lambda c: c.base + dl(tv3(c), 1, 1, name=c.name)),
        Rule("*.mlp.*", "base + della(%s, %s, density = 0.3, epsilon = 0.05, seed = 12)" % (THREE, W3), "della",
             lambda c: c.base + d(tv3(c), [0.5, 0.3, 0.2], 0.3, 0.05, seed=12, name=c.name)),
        Rule("*.embed_tokens.weight", "della_linear([tv(a)], density = 0.4, epsilon = 0.2, seed = 2)", "della_linear",
             lambda c: dl([c.tv("a")], 1, 0.4, 0.2, seed=2, name=c.name),
             stat=dict(tv="a", probs=lambda c: R.della_probs(c.tv("a"), 0.4, 0.2), seed=2, pos=0, quartiles=True)),
        Rule("lm_head.weight", "della([tv(c)], density = 0.6, epsilon = 0.15, seed = 7)", "della",
             lambda c: d([c.tv("c")], 1, 0.6, 0.15, seed=7, name=c.name),
             stat=dict(tv="c", probs=lambda c: R.della_probs(c.tv("c"), 0.6, 0.15), seed=7, pos=0, quartiles=True)),
    ], {"random": True}


def g_sce():
    s = R.sce
    tv3 = lambda c: c.tvs("a", "b", "c")
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "base + sce(%s)" % THREE, "sce", lambda c: c.base + s(tv3(c))),
        Rule("*.k_proj.weight", "base + sce(%s, select_topk = 0.3)" % THREE, "sce", lambda c: c.base + s(tv3(c), 0.3)),
        Rule("*.v_proj.weight", "base + sce([tv(a), tv(b)], select_topk = 0.5)", "sce",
             lambda c: c.base + s(c.tvs("a", "b"), 0.5)),
        Rule("model.layers.1.self_attn.o_proj.weight",
             "sce([tv(a) * 0.01, tv(b) * 0.03, tv(c) * 0.002], select_topk = 0.5)", "sce",
             lambda c: s([c.tv("a") * F(0.01), c.tv("b") * F(0.03), c.tv("c") * F(0.002)], 0.5)),
        Rule("model.layers.1.mlp.up_proj.weight", "sce([tv(a), tv(b) * 0.0001])", "sce",
             lambda c: s([c.tv("a"), c.tv("b") * F(0.0001)]), strict=8),
        Rule("*.o_proj.weight", "base + sce(%s, select_topk = 0.001)" % THREE, "sce",
             lambda c: c.base + s(tv3(c), 0.001)),
        Rule("*norm.weight", "base + sce(%s, select_topk = 0.5)" % THREE, "sce", lambda c: c.base + s(tv3(c), 0.5)),
        Rule("lm_head.weight", "sce(%s, select_topk = 0.2)" % THREE, "sce", lambda c: s(tv3(c), 0.2)),
        Rule("_", "base + sce(%s, select_topk = 0.7)" % THREE, "sce", lambda c: c.base + s(tv3(c), 0.7)),
    ], {}


def g_slerp():
    s = lambda x, y, t: R.slerp(x, y, t)[0]
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "slerp(base, a, 0.3)", "slerp", lambda c: s(c.base, c.a, 0.3)),
        Rule("*.k_proj.weight", "slerp(a, b, 0.5)", "slerp", lambda c: s(c.a, c.b, 0.5)),
        Rule("*.v_proj.weight", "base + slerp(tv(a), tv(b), 0.7)", "slerp", lambda c: c.base + s(c.tv("a"), c.tv("b"), 0.7)),
        Rule("*.o_proj.weight", "slerp(a, b, 0)", "slerp", lambda c: s(c.a, c.b, 0.0)),
        Rule("model.layers.0.mlp.gate_proj.weight", "slerp(a, b, 1)", "slerp", lambda c: s(c.a, c.b, 1.0)),
        Rule("*norm.weight", "slerp(base, a, 0.4)", "slerp", lambda c: s(c.base, c.a, 0.4)),
        Rule("lm_head.weight", "slerp(a, 2 * a, 0.25)", "slerp", lambda c: s(c.a, F(2) * c.a, 0.25)),
        Rule("*.embed_tokens.weight", "slerp(base - base, a, 0.5)", "slerp", lambda c: s(c.base - c.base, c.a, 0.5)),
        Rule("*.up_proj.weight", "slerp(a, -a, 0.3)", "slerp", lambda c: s(c.a, -c.a, 0.3)),
        Rule("_", "slerp(base, c, 0.6)", "slerp", lambda c: s(c.base, c.c, 0.6)),
    ], {}


def g_nuslerp():
    s = lambda x, y, t: R.nuslerp(x, y, t)[0]
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "nuslerp(a, b, 0.3)", "nuslerp", lambda c: s(c.a, c.b, 0.3)),
        Rule("*.k_proj.weight", "base + nuslerp(tv(a), tv(b), 0.5)", "nuslerp",
             lambda c: c.base + s(c.tv("a"), c.tv("b"), 0.5)),
        Rule("*.v_proj.weight", "base + nuslerp(tv(a), tv(c), 0.8)", "nuslerp",
             lambda c: c.base + s(c.tv("a"), c.tv("c"), 0.8)),
        Rule("*norm.weight", "nuslerp(base, a, 0.4)", "nuslerp", lambda c: s(c.base, c.a, 0.4)),
        Rule("lm_head.weight", "nuslerp(a, 2 * a, 0.25)", "nuslerp", lambda c: s(c.a, F(2) * c.a, 0.25)),
        Rule("*.embed_tokens.weight", "nuslerp(base - base, a, 0.5)", "nuslerp", lambda c: s(c.base - c.base, c.a, 0.5)),
        Rule("*.o_proj.weight", "nuslerp(a, b, 0.3, flatten = false)", "nuslerp rows",
             lambda c: R.nuslerp(c.a, c.b, 0.3, flatten=False)[0]),
        Rule("*.mlp.*", "base + nuslerp(tv(a), tv(c), 0.7, flatten = false)", "nuslerp rows",
             lambda c: c.base + R.nuslerp(c.tv("a"), c.tv("c"), 0.7, flatten=False)[0]),
        Rule("_", "nuslerp(b, c, 0.6)", "nuslerp", lambda c: s(c.b, c.c, 0.6)),
    ], {}


def g_multislerp():
    ms = R.multislerp
    return ["a", "b", "c", "d", "e", "f"], 512, [
        Rule("*.q_proj.weight", "multislerp([a, b, c])", "multislerp", lambda c: ms([c.a, c.b, c.c])),
        Rule("*.k_proj.weight", "multislerp([a, b, c], weights = [0.2, 0.3, 0.5])", "multislerp",
             lambda c: ms([c.a, c.b, c.c], [0.2, 0.3, 0.5])),
        Rule("*.v_proj.weight", "base + multislerp([tv(d), tv(e), tv(f)], weights = [1, 2, 3])", "multislerp",
             lambda c: c.base + ms(c.tvs("d", "e", "f"), [1, 2, 3])),
        Rule("*.o_proj.weight", "base + multislerp([tv(a), tv(b)])", "multislerp",
             lambda c: c.base + ms(c.tvs("a", "b"))),
        Rule("*norm.weight", "multislerp([a, b, c, d], weights = [1, 1, 2, 2])", "multislerp",
             lambda c: ms([c.a, c.b, c.c, c.d], [1, 1, 2, 2])),
        Rule("lm_head.weight", "multislerp([a])", "multislerp", lambda c: ms([c.a])),
        Rule("_", "base + multislerp(%s, %s)" % (THREE, W3), "multislerp",
             lambda c: c.base + ms(c.tvs("a", "b", "c"), [0.5, 0.3, 0.2])),
    ], {}


def g_model_stock():
    m = R.model_stock
    return ["a", "b", "c", "d", "e", "f"], 512, [
        Rule("*.q_proj.weight", "model_stock(base, [d, e, f])", "model_stock", lambda c: m(c.base, [c.d, c.e, c.f])),
        Rule("*.k_proj.weight", "model_stock(base, [d, e])", "model_stock", lambda c: m(c.base, [c.d, c.e])),
        Rule("*.v_proj.weight", "model_stock(base, [a, b, c])", "model_stock", lambda c: m(c.base, [c.a, c.b, c.c])),
        Rule("*.o_proj.weight", "model_stock(base, [d, e, f], filter_wise = false)", "model_stock",
             lambda c: m(c.base, [c.d, c.e, c.f])),
        Rule("*norm.weight", "model_stock(base, [d, e, f])", "model_stock", lambda c: m(c.base, [c.d, c.e, c.f])),
        # opposite offsets: cos = -1, 1 + (k - 1) cos = 0: mergekit 0.1.5 keeps the base (t = 0)
        Rule("lm_head.weight", "model_stock(base, [d, 2 * base - d])", "model_stock",
             lambda c: m(c.base, [c.d, F(2) * c.base - c.d]), strict=0),
        Rule("_", "model_stock(base, [d, e, f, a])", "model_stock", lambda c: m(c.base, [c.d, c.e, c.f, c.a])),
    ], {}


def g_model_stock_filter_wise():
    """filter_wise = true: one angle per row (the last dimension; a 1-D tensor is one row)."""
    m = R.model_stock
    return ["a", "b", "c", "d", "e", "f"], 512, [
        Rule("*.k_proj.weight", "model_stock(base, [d, e], filter_wise = true)", "model_stock filter_wise",
             lambda c: m(c.base, [c.d, c.e], filter_wise=True)),
        Rule("*.v_proj.weight", "model_stock(base, [a, b, c], filter_wise = true)", "model_stock filter_wise",
             lambda c: m(c.base, [c.a, c.b, c.c], filter_wise=True)),
        Rule("_", "model_stock(base, [d, e, f], filter_wise = true)", "model_stock filter_wise",
             lambda c: m(c.base, [c.d, c.e, c.f], filter_wise=True)),
    ], {}


def g_karcher():
    k = R.karcher
    return ["a", "b", "c", "d", "e", "f"], 512, [
        Rule("*.q_proj.weight", "karcher([a, b, c])", "karcher", lambda c: k([c.a, c.b, c.c])),
        Rule("*.k_proj.weight", "karcher([tv(a), tv(d), tv(e)], max_iter = 1)", "karcher",
             lambda c: k(c.tvs("a", "d", "e"), max_iter=1)),
        Rule("*.v_proj.weight", "base + karcher([tv(d), tv(e), tv(f)])", "karcher",
             lambda c: c.base + k(c.tvs("d", "e", "f"))),
        Rule("*.o_proj.weight", "karcher([tv(a), tv(b)], tol = 1e-3)", "karcher", lambda c: k(c.tvs("a", "b"), tol=1e-3)),
        Rule("*norm.weight", "karcher([base, a, tv(d)])", "karcher", lambda c: k([c.base, c.a, c.tv("d")])),
        Rule("*.embed_tokens.weight", "karcher([tv(a), 3 * tv(d), tv(b)], max_iter = 2)", "karcher",
             lambda c: k([c.tv("a"), F(3) * c.tv("d"), c.tv("b")], max_iter=2)),
        Rule("lm_head.weight", "karcher(%s)" % THREE, "karcher", lambda c: k(c.tvs("a", "b", "c"))),
        # the corners: one model (returned as is), a zero input (left out of the mean, not of the
        # scale), equal inputs (theta < tol: no tangent, stop), no input above tol (zeros)
        Rule("*.layers.0.mlp.gate_proj.weight", "karcher([a])", "karcher", lambda c: k([c.a])),
        Rule("*.layers.0.mlp.up_proj.weight", "karcher([tv(a), 0 * tv(b), tv(c)])", "karcher",
             lambda c: k([c.tv("a"), F(0) * c.tv("b"), c.tv("c")])),
        Rule("*.layers.0.mlp.down_proj.weight", "karcher([tv(a), tv(a)])", "karcher",
             lambda c: k([c.tv("a"), c.tv("a")])),
        Rule("*.layers.1.mlp.gate_proj.weight", "karcher([a - a, b - b])", "karcher",
             lambda c: k([c.a - c.a, c.b - c.b])),
        Rule("_", "base + karcher(%s)" % THREE, "karcher", lambda c: c.base + k(c.tvs("a", "b", "c"))),
    ], {}


def g_geomedian():
    g = R.geomedian
    return ["a", "b", "c", "d", "e", "f"], 512, [
        Rule("*.q_proj.weight", "geomedian([a, b, c])", "geomedian", lambda c: g([c.a, c.b, c.c])),
        Rule("*.k_proj.weight", "base + geomedian(%s, weights = [1, 2, 3])" % THREE, "geomedian",
             lambda c: c.base + g(c.tvs("a", "b", "c"), [1, 2, 3])),
        Rule("*.v_proj.weight", "geomedian([d, e, f, a, b], max_iter = 5)", "geomedian",
             lambda c: g([c.d, c.e, c.f, c.a, c.b], max_iter=5)),
        Rule("*.o_proj.weight", "base + geomedian([tv(d), tv(e), tv(f)], eps = 1e-6, tol = 1e-4)", "geomedian",
             lambda c: c.base + g(c.tvs("d", "e", "f"), eps=1e-6, tol=1e-4)),
        Rule("*norm.weight", "geomedian([a, b, c])", "geomedian", lambda c: g([c.a, c.b, c.c])),
        Rule("_", "geomedian([a, b, c, d])", "geomedian", lambda c: g([c.a, c.b, c.c, c.d])),
    ], {}


def g_ram():
    """Sparse task vectors (each keeps its top 30-60 %), so parameters are changed by one model
    (kept whole), by several (averaged) or by none."""
    sp = lambda c, m, d: R._f32(c.tv(m) * R.topk_mask(c.tv(m), d))
    expr = lambda m, d: "tv(%s) * topk_mask(tv(%s), %s)" % (m, m, d)
    three = "[%s, %s, %s]" % (expr("a", 0.3), expr("b", 0.5), expr("c", 0.6))
    tv3 = lambda c: [sp(c, "a", 0.3), sp(c, "b", 0.5), sp(c, "c", 0.6)]
    return ["a", "b", "c"], 512, [
        Rule("*.q_proj.weight", "base + ram(%s)" % three, "ram", lambda c: c.base + R.ram(tv3(c))),
        Rule("*.k_proj.weight", "base + ram(%s)" % THREE, "ram", lambda c: c.base + R.ram(c.tvs("a", "b", "c"))),
        Rule("*.v_proj.weight", "base + ram(%s, epsilon = 0.01)" % THREE, "ram",
             lambda c: c.base + R.ram(c.tvs("a", "b", "c"), epsilon=0.01)),
        Rule("*.o_proj.weight", "base + ramplus_tl(%s)" % three, "ramplus_tl",
             lambda c: c.base + R.ramplus_tl(tv3(c))),
        Rule("*.mlp.*", "base + ramplus_tl(%s, r = 0.5, alpha = 1, epsilon = 0.005)" % three, "ramplus_tl",
             lambda c: c.base + R.ramplus_tl(tv3(c), r=0.5, alpha=1, epsilon=0.005)),
        Rule("_", "base + ramplus_tl(%s)" % THREE, "ramplus_tl",
             lambda c: c.base + R.ramplus_tl(c.tvs("a", "b", "c"))),
    ], {}


def g_arcee_fusion():
    af = R.arcee_fusion
    return ["a", "b"], 512, [
        Rule("*.q_proj.weight", "arcee_fusion(base, a)", "arcee_fusion", lambda c: af(c.base, c.a)),
        Rule("*norm.weight", "arcee_fusion(base, b)", "arcee_fusion", lambda c: af(c.base, c.b)),
        Rule("_", "arcee_fusion(a, b)", "arcee_fusion", lambda c: af(c.a, c.b)),
    ], {"threshold_on_transcendentals": True}


GROUPS = {
    "ties": g_ties, "dare": g_dare, "breadcrumbs": g_breadcrumbs, "della": g_della, "sce": g_sce,
    "slerp": g_slerp, "nuslerp": g_nuslerp, "multislerp": g_multislerp, "model-stock": g_model_stock,
    "model-stock-filter-wise": g_model_stock_filter_wise,
    "karcher": g_karcher, "geomedian": g_geomedian, "ram": g_ram, "arcee-fusion": g_arcee_fusion,
}


def run_group(args, group):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    names, vocab, rules, opts = GROUPS[group]()
    values = make_models(mdir, names, vocab)
    model_names = ["base"] + names
    recipe = runner.write_recipe(os.path.join(work, group + ".merge"), recipe_text(model_names, rules))
    tally = Tally()
    stats = {}
    if args.reference_only:
        got = None
        print("reference only: mergec not run")
    else:
        out = os.path.join(work, "out")
        runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--device", args.device], timeout=300)
        got = st.read_model(out)
        if args.device == "cuda":
            compare_devices(recipe, work, out, got, opts.get("random"),
                            opts.get("threshold_on_transcendentals"))
        if opts.get("random") and args.device == "cpu":
            out1 = os.path.join(work, "out-threads1")
            runner.run_mergec(["run", recipe, "-o", out1, "--quiet", "--threads", "1"], timeout=300)
            files = runner.output_files(out)
            runner.expect(files == runner.output_files(out1), "output file lists differ with --threads 1")
            for f in files:
                with open(os.path.join(out, f), "rb") as x, open(os.path.join(out1, f), "rb") as y:
                    runner.expect(x.read() == y.read(), "%s differs between --threads 1 and the default" % f)
            print("threads: output files byte-identical with --threads 1 and the default (%d files)" % len(files))
        runner.expect(set(got) == set(values["base"]), "output tensor set differs from the base's")
    mismatches = []
    for name in values["base"]:
        rule = first_rule(rules, name)
        c = Ctx(values, name)
        expected = np.asarray(rule.ref(c), dtype=F)
        runner.expect(expected.shape == values["base"][name].shape, "reference shape for %s" % name)
        if got is None:
            dtype, arr = "BF16", st.from_f32("BF16", expected)
        else:
            dtype, arr = got[name]
            runner.expect(dtype == "BF16", "%s: dtype %s" % (name, dtype))
            runner.expect(tuple(arr.shape) == expected.shape, "%s: shape %s" % (name, arr.shape))
        dist, exact = ulp_distances(dtype, arr, expected)
        if not np.all(np.isfinite(expected)):
            mismatches.append("%s: reference not finite" % name)
        tally.add_rule(rule, name, dist, exact)
        if np.any(dist > 2) and len(mismatches) < 6:
            mismatches.append(describe_mismatch(name, dtype, arr, expected, dist))
        if rule.stat is not None:
            s = rule.stat
            tv = c.tv(s["tv"])
            probs = s["probs"](c) if "probs" in s else np.full(tv.shape, F(s["p"]))
            ref_mask = R.bernoulli(probs, s["seed"], name, s["pos"], tv.shape) != 0
            out32 = st.to_f32(dtype, arr).reshape(tv.shape) if got is not None else expected
            kept = out32 != 0
            stats.setdefault(rule.label, {}).setdefault(id(rule), (rule, []))[1].append(
                (kept.reshape(-1), (tv != 0).reshape(-1), probs.reshape(-1), ref_mask.reshape(-1)))
    if mismatches:
        print("first elements beyond 2 ulp:\n  " + "\n  ".join(mismatches))
    tally.report()
    for label in sorted(stats):
        keep_stats(label, list(stats[label].values()))


# ---------------------------------------------------------------------------------------------
# primitives: topk_mask, quantile, bernoulli on f32 checkpoints with odd sizes, ties, specials
# ---------------------------------------------------------------------------------------------
def _kinds():
    rng = np.random.default_rng(1234)
    special = rng.standard_normal((5, 8)).astype(F)
    flat = special.reshape(-1)
    flat[[3, 17, 30]] = np.nan
    flat[[5, 22]] = np.inf
    flat[[9]] = -np.inf
    flat[[0, 11]] = 0.0
    flat[[12]] = -0.0
    flat[[25]] = -flat[26]  # an exact magnitude tie
    return {
        "dup": (rng.integers(-4, 5, size=(40, 25)) * 0.25).astype(F),  # many ties and zeros
        "odd": rng.standard_normal((3, 10)).astype(F),                 # n = 30: int(0.7 * 30) = 21
        "hund": rng.standard_normal((10, 10)).astype(F),               # n = 100: int(0.57 * 100) = 56
        "vec": rng.standard_normal((7,)).astype(F),
        "big": rng.standard_normal((96, 64)).astype(F),
        "special": special,
    }


# (variant, expression, label, reference(a, base, name), kinds it applies to or None = all)
_QUANT_KINDS = ("dup", "odd", "hund", "vec", "big")
PRIM_VARIANTS = [
    ("topk30", "topk_mask(a, 0.3)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.3), None),
    ("topk70", "topk_mask(a, 0.7)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.7), None),
    ("topk57", "topk_mask(a, 0.57)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.57), None),
    ("topk35", "topk_mask(a, 0.35)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.35), None),
    ("topkskip", "topk_mask(a, 0.5, skip = 0.1)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.5, 0.1), None),
    ("topkover", "topk_mask(a, 0.9, skip = 0.3)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.9, 0.3), None),
    ("topknz", "topk_mask(a, 0.5, nonzero = true)", "topk_mask",
     lambda a, b, n: R.topk_mask(a, 0.5, nonzero=True), None),
    ("topktiny", "topk_mask(a, 0.001)", "topk_mask", lambda a, b, n: R.topk_mask(a, 0.001), None),
    ("topkone", "topk_mask(a, 1)", "topk_mask", lambda a, b, n: R.topk_mask(a, 1.0), None),
    ("topktv", "base * topk_mask(tv(a), 0.3)", "topk_mask", lambda a, b, n: b * R.topk_mask(a - b, 0.3),
     _QUANT_KINDS),
    ("quant90", "where(abs(a) > quantile(a, 0.9), a, 0)", "quantile",
     lambda a, b, n: np.where(np.abs(a) > R.quantile(a, 0.9), a, F(0)).astype(F), _QUANT_KINDS),
    ("quantval", "base * 0 + quantile(a, 0.37)", "quantile",
     lambda a, b, n: b * F(0) + R.quantile(a, 0.37), _QUANT_KINDS),
    ("quantabs", "base * 0 + quantile(abs(a), 0.5)", "quantile",
     lambda a, b, n: b * F(0) + R.quantile(np.abs(a), 0.5), _QUANT_KINDS),
    ("bern", "bernoulli(0.3, seed = 7)", "bernoulli", lambda a, b, n: R.bernoulli(F(0.3), 7, n, 0, a.shape), None),
    ("berndef", "bernoulli(0.5)", "bernoulli", lambda a, b, n: R.bernoulli(F(0.5), 0, n, 0, a.shape), None),
    ("bernlist", "sum(bernoulli([0.3, 0.6], seed = 7) * [1, 2])", "bernoulli",
     lambda a, b, n: R.bernoulli(F(0.3), 7, n, 0, a.shape) + F(2) * R.bernoulli(F(0.6), 7, n, 1, a.shape), None),
    ("berntensor", "bernoulli(clamp(abs(base), 0, 1), seed = 4294967295)", "bernoulli",
     lambda a, b, n: R.bernoulli(np.clip(np.abs(b), 0, 1).astype(F), 0xFFFFFFFF, n, 0, a.shape), None),
]


def run_primitives(args):
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    kinds = _kinds()
    rng = np.random.default_rng(99)
    a_t, b_t, a_v, b_v = {}, {}, {}, {}
    for var, _, _, _, only in PRIM_VARIANTS:
        for kind, data in kinds.items():
            if only is not None and kind not in only:
                continue
            n = "%s.%s" % (var, kind)
            base = rng.standard_normal(data.shape).astype(F)
            a_t[n], b_t[n], a_v[n], b_v[n] = ("F32", data), ("F32", base), data, base
    models.write_model_dir(os.path.join(mdir, "base"), b_t, tokenizer=False)
    models.write_model_dir(os.path.join(mdir, "a"), a_t, tokenizer=False)
    rules = ['  "%s.*" => %s' % (var, expr) for var, expr, _, _, _ in PRIM_VARIANTS]
    recipe = runner.write_recipe(os.path.join(work, "primitives.merge"),
                                 'model base = "models/base"\nmodel a    = "models/a"\nmerge {\n%s\n}\n' % "\n".join(rules))
    if args.reference_only:
        got = None
        print("reference only: mergec not run")
    else:
        out = os.path.join(work, "out")
        runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--device", args.device])
        got = st.read_model(out)
        runner.expect(set(got) == set(a_v), "output tensor set differs from the base's")
    tally = Tally()
    byvar = {v[0]: v for v in PRIM_VARIANTS}
    counts_ok, counts_all = 0, 0
    problems = []
    for n in a_v:
        var, kind = n.split(".", 1)
        _, expr, label, ref, _ = byvar[var]
        expected = np.asarray(ref(a_v[n], b_v[n], n), dtype=F)
        if got is None:
            dtype, arr = "F32", expected.copy()
        else:
            dtype, arr = got[n]
            runner.expect(dtype == "F32", "%s: dtype %s" % (n, dtype))
        dist, exact = ulp_distances(dtype, arr, expected)
        tally.add(label, n, dist, exact)
        if label == "topk_mask" and var != "topktv":
            counts_all += 1
            if int(np.count_nonzero(arr)) == int(np.count_nonzero(expected)):
                counts_ok += 1
            else:
                problems.append("%s: %d kept, expected %d" % (n, np.count_nonzero(arr), np.count_nonzero(expected)))
        if not np.all(exact) and len(problems) < 8:
            bad = np.flatnonzero(~exact.reshape(-1))[:4]
            problems.append("%s (%s): %s" % (n, expr, ", ".join(
                "[%d] got %r want %r" % (i, float(arr.reshape(-1)[i]), float(expected.reshape(-1)[i])) for i in bad)))
    # the spec's corner cases, stated so a failure names them
    print("topk_mask kept counts: %d/%d tensors exact (k = int(density * n) in float64; ties by lowest index)"
          % (counts_ok, counts_all))
    allb = [expected for n in a_v if n.startswith("bern.")
            for expected in [R.bernoulli(F(0.3), 7, n, 0, a_v[n].shape)]]
    rate = float(np.concatenate([x.reshape(-1) for x in allb]).mean())
    print("bernoulli(0.3) reference keep rate %.4f" % rate)
    if problems:
        print("mismatches:\n  " + "\n  ".join(problems[:8]))
    # masks and bernoulli draws must match exactly; quantiles to 1 ulp of f32
    tally.report(threshold=1.0, require_exact=("topk_mask", "bernoulli"))
    k, w2, ex, total = tally.by_label.get("quantile", (0, 0, 0, 0))
    runner.expect(k <= 1, "quantile: %d ulp of f32 from numpy.quantile" % k)
    runner.expect(counts_ok == counts_all, "topk_mask kept counts differ")


# ---------------------------------------------------------------------------------------------
# della on rows of one element: shapes [n, 1], [1] and [] (0-D)
# ---------------------------------------------------------------------------------------------
ROW1_SHAPES = {"col": (4096, 1), "col2": (3000, 1), "one": (1,), "scalar": ()}


def run_della_rows(args):
    """A row of one element has no rank span ((r - 1) / (cols - 1) = 0 / 0, which kept nothing):
    it keeps with probability density, the mean of every longer row. della and della_linear on
    bf16 tensors of shapes [n, 1], [1] and [] against the reference, bit for bit; the keep rate
    of one task vector's mask over the [n, 1] tensors within 4 sigma of the density."""
    work = runner.fresh_dir(args.work)
    mdir = os.path.join(work, "models")
    rng = np.random.default_rng(321)
    vals = {m: {} for m in ("base", "a", "b")}
    # Every rule sees every shape; the tensor's name picks the rule.
    rules = [
        ("mask", "della_linear([tv(a)], density = 0.3, epsilon = 0.2, seed = 2)",
         lambda c, n: R.della_linear([c["a"] - c["base"]], 1, 0.3, 0.2, seed=2, name=n)),
        ("della", "base + della([tv(a), tv(b)], weights = [0.6, 0.4], density = [0.5, 0.7], epsilon = 0.1, seed = 5)",
         lambda c, n: c["base"] + R.della([c["a"] - c["base"], c["b"] - c["base"]], [0.6, 0.4], [0.5, 0.7], 0.1,
                                          seed=5, name=n)),
        ("linear", "base + della_linear([tv(a), tv(b)], density = 0.5)",
         lambda c, n: c["base"] + R.della_linear([c["a"] - c["base"], c["b"] - c["base"]], 1, 0.5, name=n)),
    ]
    tensors = {m: {} for m in vals}
    for label, _, _ in rules:
        for kind, shape in ROW1_SHAPES.items():
            n = "%s.%s" % (label, kind)
            base = st.to_f32("BF16", st.from_f32("BF16", rng.standard_normal(shape).astype(F)))
            vals["base"][n] = base
            for m in ("a", "b"):
                tv = (F(0.02) * rng.standard_normal(shape)).astype(F)
                vals[m][n] = st.to_f32("BF16", st.from_f32("BF16", (base + tv).astype(F)))
            for m in vals:
                tensors[m][n] = ("BF16", st.from_f32("BF16", vals[m][n]))
    for m in vals:
        models.write_model_dir(os.path.join(mdir, m), tensors[m], tokenizer=False)
    recipe = runner.write_recipe(os.path.join(work, "della-rows.merge"),
                                 "".join('model %-4s = "models/%s"\n' % (m, m) for m in vals) +
                                 "merge {\n" + "".join('  "%s.*" => %s\n' % (l, e) for l, e, _ in rules) + "}\n")
    out = os.path.join(work, "out")
    runner.run_mergec(["run", recipe, "-o", out, "--quiet", "--device", args.device])
    got = st.read_model(out)
    tally = Tally()
    kept, probs, same = [], [], 0
    for label, _, ref in rules:
        for kind, shape in ROW1_SHAPES.items():
            n = "%s.%s" % (label, kind)
            expected = np.asarray(ref({m: vals[m][n] for m in vals}, n), dtype=F)
            dtype, arr = got[n]
            runner.expect(tuple(arr.shape) == shape, "%s: shape %s, expected %s" % (n, arr.shape, shape))
            dist, exact = ulp_distances(dtype, arr, expected)
            tally.add("della rows of one element (%s)" % label, n, dist, exact)
            if label == "mask" and len(shape) == 2:
                tv = vals["a"][n] - vals["base"][n]
                k = st.to_f32(dtype, arr).reshape(-1) != 0
                ref_mask = R.bernoulli(np.full(shape, F(0.3)), 2, n, 0, shape).reshape(-1) != 0
                nz = tv.reshape(-1) != 0
                kept.append(k[nz])
                probs.append(np.full(int(nz.sum()), 0.3))
                same += int(np.count_nonzero(k[nz] == ref_mask[nz]))
    kept, probs = np.concatenate(kept), np.concatenate(probs)
    z = (kept.sum() - probs.sum()) / math.sqrt(float((probs * (1 - probs)).sum()))
    print("della [n, 1] keep rate %.4f, expected 0.3000 over %d elements (z = %.2f)" % (kept.mean(), kept.size, z))
    print("della [n, 1] mask: %d/%d elements match the reference Philox mask" % (same, kept.size))
    runner.expect(abs(z) < 4, "keep rate z = %.2f" % z)
    runner.expect(same == kept.size, "mask differs from the reference")
    tally.report(threshold=1.0, require_exact=tuple(tally.by_label))


def compare_devices(recipe, work, out, got, random, threshold_on_transcendentals=False):
    """--device cuda: the GPU's output again (must be the same bytes: no atomics, fixed trees)
    and against the CPU's: random methods bit-identical (the same Philox bits decide the same
    elements), deterministic ones within 1 ulp of the output dtype (summation order of
    reductions, libdevice's acos/exp/log against libm's).

    The exception, threshold_on_transcendentals (arcee_fusion): an element is kept when its
    importance, made with exp and log (libdevice's on the GPU, libm's on the CPU: either may be
    an ulp off), reaches a quantile of the importances. An element at the threshold may be kept
    on one device and not on the other, a whole task-vector value apart, so such elements are
    counted and bounded like the numpy reference's (at most 0.05 %), not held to 1 ulp."""
    again = os.path.join(work, "out-cuda-again")
    runner.run_mergec(["run", recipe, "-o", again, "--quiet", "--device", "cuda"], timeout=300)
    files = runner.output_files(out)
    for f in files:
        with open(os.path.join(out, f), "rb") as x, open(os.path.join(again, f), "rb") as y:
            runner.expect(x.read() == y.read(), "%s differs between two --device cuda runs" % f)
    print("cuda: byte-identical run to run (%d files)" % len(files))
    cpu = os.path.join(work, "out-cpu")
    runner.run_mergec(["run", recipe, "-o", cpu, "--quiet", "--device", "cpu"], timeout=300)
    host = st.read_model(cpu)
    worst, differing, beyond1, total = 0, 0, 0, 0
    for name, (dtype, arr) in got.items():
        hdtype, harr = host[name]
        runner.expect(dtype == hdtype, "%s: dtype %s on cuda, %s on cpu" % (name, dtype, hdtype))
        dist, _ = ulp_distances(dtype, arr, st.to_f32(hdtype, harr).reshape(arr.shape))
        worst = max(worst, int(dist.max()) if dist.size else 0)
        differing += int(np.count_nonzero(dist))
        beyond1 += int(np.count_nonzero(dist > 1))
        total += dist.size
    print("cuda vs cpu: max ulp %d, %d of %d elements differ" % (worst, differing, total))
    if threshold_on_transcendentals:
        runner.expect(beyond1 <= total * 0.0005,
                      "%d of %d elements more than 1 ulp from the CPU's (at most 0.05 %% may sit at "
                      "the threshold)" % (beyond1, total))
        return
    if random:
        runner.expect(differing == 0, "a random method's GPU output differs from the CPU's")
    runner.expect(worst <= 1, "GPU output beyond 1 ulp of the CPU's")


def body(args):
    if args.method == "primitives":
        run_primitives(args)
    elif args.method == "della-rows":
        run_della_rows(args)
    else:
        run_group(args, args.method)


def add_args(parser):
    parser.add_argument("--method", required=True, choices=sorted(GROUPS) + ["primitives", "della-rows"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where mergec runs the kernels; cuda also compares with the cpu")
    parser.add_argument("--reference-only", action="store_true",
                        help="run the numpy references alone (no mergec) as a sanity check")


if __name__ == "__main__":
    runner.main(body, add_args)
