"""Matrix values and the SVD family (stdlib/svd.merge) end to end: mergec run on generated
checkpoints against the independent f64 numpy references of lib/ref_svd.py.

  --group methods --dtype f32|bf16   iso_c, iso_cts, tsv_merge, cart, star (defaults and
        options, 2 and 3 task vectors) on a one-layer Llama (hidden 64, intermediate 128,
        vocab 256: square, wide and tall matrices and 1-D norms), one mergec run per method.
        f32 outputs: the merged task vector (output - base, in f64) within a relative
        Frobenius error of TOL_F32 of the reference, per tensor. bf16 outputs: within
        BF16_ULP ulp of the reference rounded once to bf16. Prints the worst figures.
  --group onedim        a checkpoint of 1-D tensors only (64, 7 and 1 elements): every method
        takes the mean of the task vectors (cart: the mean of the models), svd/lowrank of a
        1 x n matrix.
  --group builtins      svd reconstruction (full and rank k), lowrank, orth, @, transpose,
        diag, hcat/vcat with cols_of/rows_of (floor, clamping), cumsum, rank_of, reductions
        of a matrix, elementwise with a matrix, an n x 1 result for a 1-D tensor, let and
        let-tuple: exact where the math is exact, else to f32 rounding.
  --group rsvd          rsvd with rank = rank_of(x) reconstructs like lowrank; with rank k it
        approximates lowrank(x, k); byte-identical across two runs and --threads 1 vs the
        default; another seed gives other bytes but the same approximation.
  --group errors        every compile-time error (file:line:col) and run-time shape error
        (naming the tensor and both shapes): exit 1 and nothing at the output path; the
        errors are printed as `CASE: message` for FileCheck.

Task vectors are built with a geometric singular spectrum (ratio 0.9) plus a shared
component, so that singular values are separated well beyond f32 rounding and the
truncating methods (iso_cts, tsv_merge, cart, star) make the same choices as the f64
reference; the script prints STAR's margin from its threshold."""
import fnmatch
import hashlib
import os

import numpy as np

import compare
import models
import ref_svd as R
import runner
import st

TOL_F32 = 1e-4   # relative Frobenius error of a merged task vector, f32 outputs
BF16_ULP = 2     # bf16 outputs against the f64 reference rounded once
TOL_APPROX = 1e-5  # a product of f32 factors (gemm, reconstruction) against f64
F, D = np.float32, np.float64
KW = dict(num_layers=1, hidden=64, intermediate=128, vocab=256)
TASKS = ("a", "b", "c")


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def structured_tv(rng, shape, shared):
    """A task vector with a well-separated spectrum: U diag(0.02 * 0.9^i) Vt with random
    orthonormal U, V, plus `shared` (the common part of all tasks); 1-D: small noise."""
    if len(shape) == 1:
        return 0.01 * rng.standard_normal(shape) + shared
    m, n = shape
    r = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return (u * (0.02 * 0.9 ** np.arange(r))) @ v.T + shared


def make_models(mdir, dtype, shapes=None, names=TASKS, seed=0):
    """Writes base and the task models; returns {model: {tensor: f64 array of the stored
    values}} (what mergec reads, widened)."""
    dt = models.DTYPE_NAMES[dtype]
    shapes = shapes or models.llama_shapes(num_layers=KW["num_layers"], hidden=KW["hidden"],
                                           intermediate=KW["intermediate"], vocab=KW["vocab"])
    rng = np.random.default_rng(seed)
    base, shared = {}, {}
    for name, shape in shapes:
        base[name] = rng.standard_normal(shape) / np.sqrt(shape[-1])
        shared[name] = 0.5 * structured_tv(rng, shape, 0)
    values = {}
    for model in ("base",) + tuple(names):
        tensors = {}
        for name, shape in shapes:
            v = base[name] if model == "base" else base[name] + structured_tv(rng, shape, shared[name])
            tensors[name] = (dt, st.from_f32(dt, v.astype(F)))
        models.write_model_dir(os.path.join(mdir, model), tensors,
                               config=models.llama_config(1, KW["hidden"], KW["intermediate"],
                                                          KW["vocab"], dt))
        values[model] = {n: st.to_f32(dt, a).astype(D) for n, (dt_, a) in tensors.items()}
    return values


def write_recipe(work, name, model_names, rules):
    """rules: [(pattern or "_", expression)]."""
    lines = ['model %-4s = "models/%s"' % (m, m) for m in ("base",) + tuple(model_names)]
    lines.append("merge {")
    for pattern, expr in rules:
        lines.append("  %s => %s" % ("_" if pattern == "_" else '"%s"' % pattern, expr))
    lines.append("}")
    return runner.write_recipe(os.path.join(work, name + ".merge"), "\n".join(lines) + "\n")


def run(work, name, recipe, extra=()):
    out = os.path.join(work, "out-" + name)
    runner.run_mergec(["run", recipe, "-o", out, "--quiet"] + list(extra), echo=False)
    return out, st.read_model(out)


def rule_for(rules, tensor):
    for pattern, expr, ref in rules:
        if pattern == "_" or fnmatch.fnmatchcase(tensor, pattern):
            return expr, ref
    raise runner.TestFailure("no rule for %s" % tensor)


# ---------------------------------------------------------------------------------------------
# the stdlib methods
# ---------------------------------------------------------------------------------------------
T3 = "[tv(a), tv(b), tv(c)]"
T2 = "[tv(a), tv(b)]"


def tvs(v, name, which=TASKS):
    return [v[m][name] - v["base"][name] for m in which]


def method_rules():
    """{method: [(pattern, expression, reference(values, tensor) -> merged TASK VECTOR)]}: the
    defaults on most tensors, the options on some, two task vectors on q_proj (for iso_cts:
    r = 64, T = 2 gives (64 - 51) / 2 = 6.5, which Python's round takes to 6, not 7)."""
    return {
        "iso_c": [
            ("*.k_proj.weight", "base + iso_c(%s, alpha = 0.5)" % T2,
             lambda v, n: R.iso_c(tvs(v, n, "ab"), alpha=0.5)),
            ("_", "base + iso_c(%s)" % T3, lambda v, n: R.iso_c(tvs(v, n))),
        ],
        "iso_cts": [
            ("*.q_proj.weight", "base + iso_cts(%s)" % T2, lambda v, n: R.iso_cts(tvs(v, n, "ab"))),
            ("*.k_proj.weight", "base + iso_cts(%s, common = 0.5, alpha = 1.5)" % T3,
             lambda v, n: R.iso_cts(tvs(v, n), common=0.5, alpha=1.5)),
            ("_", "base + iso_cts(%s)" % T3, lambda v, n: R.iso_cts(tvs(v, n))),
        ],
        "tsv_merge": [
            ("*.k_proj.weight", "base + tsv_merge(%s, alpha = 0.7)" % T2,
             lambda v, n: R.tsv_merge(tvs(v, n, "ab"), alpha=0.7)),
            ("_", "base + tsv_merge(%s)" % T3, lambda v, n: R.tsv_merge(tvs(v, n))),
        ],
        "cart": [
            ("*.k_proj.weight", "cart([a, b, c], rank_fraction = 0.3, lam = 0.5)",
             lambda v, n: R.cart([v[m][n] for m in TASKS], 0.3, 0.5) - v["base"][n]),
            ("_", "cart([a, b, c])", lambda v, n: R.cart([v[m][n] for m in TASKS]) - v["base"][n]),
        ],
        "star": [
            ("*.k_proj.weight", "base + star(%s, eta = 70)" % T3, lambda v, n: R.star(tvs(v, n), 70)),
            ("_", "base + star(%s)" % T3, lambda v, n: R.star(tvs(v, n))),
        ],
    }


def check_output(label, v, got, rules, dtype, tensors=None):
    """Compares every output tensor with its rule's reference; returns (worst relative error
    of the task vector, worst ulp) and prints one line per method."""
    worst_rel, worst_ulp, exact, total = 0.0, 0, 0, 0
    for name in tensors or v["base"]:
        expr, ref = rule_for(rules, name)
        want_tv = ref(v, name)
        odt, arr = got[name]
        runner.expect(odt == models.DTYPE_NAMES[dtype], "%s: %s dtype %s" % (label, name, odt))
        runner.expect(tuple(arr.shape) == tuple(v["base"][name].shape), "%s: %s shape" % (label, name))
        out = st.to_f32(odt, arr).astype(D)
        rel = R.rel_fro(out - v["base"][name], want_tv)
        worst_rel = max(worst_rel, rel)
        if odt == "F32":
            if not rel <= TOL_F32:
                raise runner.TestFailure("%s: %s (%s): relative error %.3g > %g" % (label, name, expr, rel, TOL_F32))
        else:
            k, x, y = compare.compare(odt, arr, (v["base"][name] + want_tv).astype(F))
            worst_ulp, exact, total = max(worst_ulp, k), exact + x, total + y
            if k > BF16_ULP:
                raise runner.TestFailure("%s: %s (%s): %s ulp > %d" % (label, name, expr, k, BF16_ULP))
    if dtype == "f32":
        print("%s f32: max relative error %.2e (<= %g) over %d tensors" % (label, worst_rel, TOL_F32, len(got)))
    else:
        print("%s bf16: max ulp %d (<= %d), bit-exact %d/%d" % (label, worst_ulp, BF16_ULP, exact, total))
    return worst_rel, worst_ulp


def g_methods(work, dtype):
    v = make_models(os.path.join(work, "models"), dtype)
    worst = 0.0
    # STAR keeps what reaches eta % of the nuclear norm: f32 singular values (relative error
    # ~1e-6) must not cross the threshold, so the data must stay clear of it.
    margin = min(R.star_margin(tvs(v, n), 70 if n.endswith("k_proj.weight") else 40) for n in v["base"])
    print("star: smallest distance of a running sum from the threshold: %.1e of the nuclear norm" % margin)
    runner.expect(margin > 1e-4, "star's truncation is too close to its threshold to compare")
    # FusionBench's int(r * (1 / T)) and the stdlib's floor(r / T) agree on these sizes.
    for r in (32, 64):
        for t in (2, 3):
            runner.expect(R.tsv_k(r, t) == r // t, "tsv k for r=%d T=%d" % (r, t))
    for method, rules in method_rules().items():
        recipe = write_recipe(work, method, TASKS, [(p, e) for p, e, _ in rules])
        _, got = run(work, method, recipe)
        rel, _ = check_output(method, v, got, rules, dtype)
        worst = max(worst, rel)
    print("all methods: max relative error %.2e" % worst)


def g_onedim(work):
    shapes = [("n64", (64,)), ("n7", (7,)), ("n1", (1,)), ("lr", (64,)), ("svd", (64,))]
    v = make_models(os.path.join(work, "models"), "f32", shapes=shapes)
    mean = lambda vv, n: np.mean(tvs(vv, n), axis=0)
    cases = [
        ("iso_c", "base + iso_c(%s)" % T3, mean),
        ("iso_cts", "base + iso_cts(%s)" % T3, mean),
        ("tsv_merge", "base + tsv_merge(%s)" % T3, mean),
        ("cart", "cart([a, b, c])", lambda vv, n: R.cart([vv[m][n] for m in TASKS]) - vv["base"][n]),
        ("star", "base + star(%s)" % T3, mean),
    ]
    # The matrix builtins on a 1 x n matrix: rank 1 whatever k asks for.
    extra = [("lr", "base + lowrank(tv(a), 5)", lambda vv, n: tvs(vv, n, "a")[0]),
             ("svd", "base + let (u, s, vt) = svd(tv(a)) in u @ diag(s) @ vt",
              lambda vv, n: tvs(vv, n, "a")[0])]
    for method, expr, ref in cases:
        rules = [(p, e, r) for p, e, r in extra] + [("_", expr, ref)]
        recipe = write_recipe(work, method, TASKS, [(p, e) for p, e, _ in rules])
        _, got = run(work, method, recipe)
        check_output("1-D " + method, v, got, rules, "f32")


# ---------------------------------------------------------------------------------------------
# the builtins
# ---------------------------------------------------------------------------------------------
def g_builtins(work):
    v = make_models(os.path.join(work, "models"), "f32", names=("a", "b"))
    f32 = lambda m, n: v[m][n].astype(F)
    tv = lambda n, m="a": v[m][n] - v["base"][n]
    L = "model.layers.0."
    base = lambda n: v["base"][n]
    # (tensor, expression, reference, how to compare): "exact" bit for bit (the math is exact
    # in f32); "ulp" within 1 ulp of the same f32 operations; ("rel", scale) within TOL_F32
    # of the f64 reference, relative to scale(tensor) (the task vector's norm where the output
    # is base + a matrix expression).
    by_tv = lambda n: np.linalg.norm(tv(n))
    rules = [
        ("model.embed_tokens.weight", "base + let (u, s, vt) = svd(tv(a)) in u @ diag(s) @ vt",
         lambda n: base(n) + tv(n), ("rel", by_tv)),
        (L + "self_attn.q_proj.weight", "base + lowrank(tv(a), 5)",
         lambda n: base(n) + R.lowrank(tv(n), 5), ("rel", lambda n: np.linalg.norm(R.lowrank(tv(n), 5)))),
        (L + "self_attn.k_proj.weight", "orth(tv(a))", lambda n: R.polar(tv(n)),
         ("rel", lambda n: np.sqrt(32.0))),
        # svd's rank is floor(7.9) = 7: the rank-7 reconstruction is lowrank(x, 7).
        (L + "self_attn.v_proj.weight",
         "base + (let (u, s, vt) = svd(tv(a), rank = 7.9) in u @ diag(s) @ vt) - lowrank(tv(a), 7)",
         base, ("rel", by_tv)),
        # cols_of(a, 0) is 1 column (clamped), cols_of(b, 63.9) 63 (floor).
        (L + "self_attn.o_proj.weight", "hcat([cols_of(a, 0), cols_of(b, 63.9)])",
         lambda n: np.hstack([f32("a", n)[:, :1], f32("b", n)[:, :63]]), "exact"),
        # rows_of(base, 1e9) is all 128 rows (clamped): the sum has the tensor's shape.
        (L + "mlp.gate_proj.weight", "vcat([rows_of(a, 100.7), rows_of(b, 28)]) + 0 * rows_of(base, 1e9)",
         lambda n: np.vstack([f32("a", n)[:100], f32("b", n)[:28]]), "exact"),
        # Each row's running sum in f64, rounded once: numpy's f64 cumsum rounded.
        (L + "mlp.up_proj.weight", "cumsum(a)", lambda n: np.cumsum(v["a"][n], axis=-1).astype(F), "exact"),
        (L + "mlp.down_proj.weight",
         "let x = tv(a) in let g = transpose(tv(b)) @ tv(b) in x @ g * 10",
         lambda n: tv(n) @ (tv(n, "b").T @ tv(n, "b")) * 10,
         ("rel", lambda n: np.linalg.norm(tv(n) @ (tv(n, "b").T @ tv(n, "b")) * 10))),
        # A 1-D tensor takes an n x 1 matrix.
        (L + "input_layernorm.weight", "transpose(a)", lambda n: f32("a", n), "exact"),
        (L + "post_attention_layernorm.weight", "diag(a) @ transpose(b)",
         lambda n: f32("a", n) * f32("b", n), "exact"),
        # Reductions of a matrix: norm(b^T b) = ||b||^2 (an outer product), 4096 non-zeros,
        # rank_of of a 1 x 64 matrix is 1.
        ("model.norm.weight",
         "a * (norm(transpose(b) @ b) / total(b * b)) + (count(transpose(b) @ b) - 4096) + (rank_of(b) - 1)"
         " + dot(transpose(b), transpose(b)) * 0",
         lambda n: v["a"][n], ("rel", lambda n: np.linalg.norm(v["a"][n]))),
        ("lm_head.weight", "let (x, y) = [tv(a), b] in x * rank_of(y) / 64 + base",
         lambda n: (f32("a", n) - f32("base", n)) * F(64) / F(64) + f32("base", n), "ulp"),
    ]
    recipe = write_recipe(work, "builtins", ("a", "b"), [(t, e) for t, e, _, _ in rules])
    _, got = run(work, "builtins", recipe)
    runner.expect(set(got) == {t for t, _, _, _ in rules}, "builtins: output tensors %s" % sorted(got))
    for name, expr, ref, mode in rules:
        odt, arr = got[name]
        runner.expect(odt == "F32" and tuple(arr.shape) == v["base"][name].shape,
                      "%s: %s %s" % (name, odt, arr.shape))
        want = ref(name)
        if mode == "exact":
            same = np.array_equal(arr.view(np.uint32), np.asarray(want, dtype=F).view(np.uint32))
            runner.expect(same, "%s (%s): not bit-exact" % (name, expr))
            print("%s: %s: exact" % (name, expr))
        elif mode == "ulp":
            k, _, _ = compare.compare("F32", arr, want)
            runner.expect(k <= 1, "%s (%s): %s ulp" % (name, expr, k))
            print("%s: %s: max ulp %d" % (name, expr, k))
        else:
            rel = float(np.linalg.norm(arr.astype(D) - want) / mode[1](name))
            runner.expect(rel <= TOL_F32, "%s (%s): relative error %.3g > %g" % (name, expr, rel, TOL_F32))
            print("%s: %s: relative error %.1e" % (name, expr, rel))


# ---------------------------------------------------------------------------------------------
# rsvd
# ---------------------------------------------------------------------------------------------
def g_rsvd(work):
    """Full rank: the reconstruction is the matrix itself (to f32 rounding). Rank k: Halko et
    al. promise an error close to the best rank-k error; the check bounds the ratio
    ||x - rsvd_k(x)||_F / ||x - lowrank(x, k)||_F by RATIO (default settings) or RATIO_LOOSE
    (oversample 4, one power iteration), and prints it with the distance to lowrank."""
    v = make_models(os.path.join(work, "models"), "f32", names=("a",))
    tv = lambda n: v["a"][n] - v["base"][n]
    L = "model.layers.0."
    full = "let (u, s, vt) = rsvd(tv(a), rank = rank_of(tv(a))%s) in u @ diag(s) @ vt"
    part = "let (u, s, vt) = rsvd(tv(a), rank = 6%s) in u @ diag(s) @ vt"
    ratio, ratio_loose = 1.05, 1.3

    def rules(seed):
        opt = "" if seed == 0 else ", seed = %d" % seed
        return [
            (L + "self_attn.q_proj.weight", full % opt, None),
            (L + "mlp.down_proj.weight", full % opt, None),
            (L + "mlp.gate_proj.weight", part % (opt + ", oversample = 4, iters = 1"), ratio_loose),
            ("_", part % opt, ratio),
        ]

    outs = {}
    for seed in (0, 7):
        rs = rules(seed)
        recipe = write_recipe(work, "rsvd%d" % seed, ("a",), [(p, e) for p, e, _ in rs])
        outs[seed], got = run(work, "rsvd%d" % seed, recipe)
        worst = {}
        for name in v["base"]:
            expr, bound = next((e, b) for p, e, b in rs if p == "_" or p == name)
            out = got[name][1].astype(D)
            x = tv(name)
            if bound is None or x.ndim == 1:
                # Full rank (a 1 x n matrix has rank 1 whatever k asks for): x itself.
                rel = R.rel_fro(out, x)
                runner.expect(rel <= TOL_F32, "seed %d: %s (%s): relative error %.3g" % (seed, name, expr, rel))
                key = "full rank"
                worst[key] = max(worst.get(key, (0.0,))[0], rel),
                continue
            best = R.lowrank(x, 6)
            q = np.linalg.norm(x - out) / np.linalg.norm(x - best)
            runner.expect(q <= bound, "seed %d: %s (%s): error %.4g x the best rank-6 error, more than %g"
                          % (seed, name, expr, q, bound))
            key = "rank 6, oversample 4, iters 1" if "iters" in expr else "rank 6"
            w = worst.get(key, (0.0, 0.0))
            worst[key] = (max(w[0], q), max(w[1], R.rel_fro(out, best)))
        for key in sorted(worst):
            if key == "full rank":
                print("rsvd seed %d, %s: max relative error to x %.1e" % (seed, key, worst[key][0]))
            else:
                print("rsvd seed %d, %s: error <= %.4f x the best rank-6 error (<= %g), distance to lowrank "
                      "<= %.3f" % (seed, key, worst[key][0], ratio_loose if "iters" in key else ratio, worst[key][1]))
        if seed == 0:
            # The same bytes from a second run and from --threads 1 and 2.
            runner.run_threads_identical(recipe, runner.fresh_dir(os.path.join(work, "threads")), ["1", "2"],
                                         "rsvd outputs")
            again, _ = run(work, "rsvd0-again", recipe)
            runner.expect(digest(again) == digest(outs[0]), "rsvd outputs differ between two runs")
            runner.expect(digest(os.path.join(work, "threads", "out1")) == digest(outs[0]),
                          "rsvd output with --threads 1 differs from the default")
            print("rsvd seed 0: byte-identical across two runs and --threads 1, 2 and the default")
    a0 = st.read_model(outs[0])[L + "self_attn.k_proj.weight"][1]
    a7 = st.read_model(outs[7])[L + "self_attn.k_proj.weight"][1]
    runner.expect(a0.tobytes() != a7.tobytes(), "seed 7 gave the same rank-6 rsvd as seed 0")
    print("rsvd seed 7: other bytes than seed 0 (%d of %d elements differ)"
          % (int(np.count_nonzero(a0 != a7)), a0.size))


def digest(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
K = "model.layers.0.self_attn.k_proj.weight"  # 32 x 64
# (case, rule expression on every tensor or {pattern: expression}, True: run time (names the
# tensor), False: compile time (file:line:col))
ERRORS = [
    ("matmul-scalar", "base @ 2", False),
    ("svd-scalar", "let (u, s, vt) = svd(2) in base", False),
    ("lowrank-scalar", "base + lowrank(0.5, 2)", False),
    ("topk-matrix", "base * topk_mask(transpose(tv(a)), 0.5)", False),
    ("row-rank-matrix", "row_rank(orth(tv(a)))", False),
    ("quantile-matrix", "base + quantile(transpose(a), 0.5)", False),
    ("bernoulli-matrix", "base * bernoulli(transpose(transpose(a)))", False),
    ("total-row-matrix", "base + total(orth(a), scope = row)", False),
    ("rsvd-oversample", "let (u, s, vt) = rsvd(tv(a), rank = 2, oversample = 2.5) in u @ diag(s) @ vt", False),
    ("list-of-lists", "base + svd([tv(a), tv(b)])", False),
    ("list-of-lists-arith", "base + 0 * svd([tv(a), tv(b)])", False),
    ("let-length", "let (u, s) = svd(tv(a)) in base", False),
    ("let-builtin", "let svd = tv(a) in base + svd", False),
    ("let-twice", "let (u, u, vt) = svd(tv(a)) in base", False),
    ("matmul-shape", {K: "base + tv(a) @ tv(b)", "_": "base"}, True),
    ("hcat-shape", {K: "hcat([a, transpose(b)])", "_": "base"}, True),
    ("vcat-shape", {K: "vcat([a, transpose(b)])", "_": "base"}, True),
    ("elementwise-shape", {K: "base + transpose(tv(a)) * tv(b)", "_": "base"}, True),
    ("result-shape", {K: "transpose(a)", "_": "base"}, True),
]


def g_errors(work):
    make_models(os.path.join(work, "models"), "bf16", names=("a", "b"))
    for case, expr, at_run_time in ERRORS:
        rules = [(p, e) for p, e in expr.items()] if isinstance(expr, dict) else [("_", expr)]
        # The pattern rule first: mergec takes the first rule that matches.
        rules.sort(key=lambda r: r[0] == "_")
        recipe = write_recipe(work, case, ("a", "b"), rules)
        out = os.path.join(work, "out-" + case)
        r = runner.run_mergec(["run", recipe, "-o", out, "--quiet"], expect=1, echo=False)
        runner.assert_no_output(out)
        lines = [l for l in r.stderr.splitlines() if "error:" in l]
        runner.expect(lines, "%s: no error line in %r" % (case, r.stderr))
        line = lines[0].replace(recipe, "RECIPE")
        if at_run_time:
            runner.expect(line.startswith("mergec: error:") and K in line,
                          "%s: the error does not name the tensor: %s" % (case, line))
        else:
            runner.expect(line.startswith("RECIPE:"), "%s: no file:line:col: %s" % (case, line))
        print("%s: %s" % (case, line))
    print("errors: %d cases, each exit 1 with nothing at the output path" % len(ERRORS))


def body(args):
    work = os.path.realpath(runner.fresh_dir(args.work))
    if args.group == "methods":
        g_methods(work, args.dtype)
    else:
        {"onedim": g_onedim, "builtins": g_builtins, "rsvd": g_rsvd, "errors": g_errors}[args.group](work)


def add_args(p):
    p.add_argument("--group", required=True, choices=["methods", "onedim", "builtins", "rsvd", "errors"])
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])


if __name__ == "__main__":
    runner.main(body, add_args)
