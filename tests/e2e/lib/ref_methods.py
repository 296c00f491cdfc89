"""Independent numpy references for mergec's merge primitives and merge methods.

Written from the papers and from mergekit's source (mergekit 0.1.5, arcee-ai, LGPL-3.0; read,
never imported), following the contract mergec implements:

* every element is computed in float32 (inputs are float32 arrays holding the widened stored
  values; the caller rounds the result once to the output dtype);
* whole-tensor sums (norms, dot products, totals) accumulate in float64 and are rounded to
  float32 where they are used (`_sum64`, `_dot`, `_norm`);
* lists are summed left to right in float32, as mergec unrolls `sum(list)`.

numpy only (no torch, no mergekit), so it runs under Debian's /usr/bin/python3. While writing
it, each deterministic reference was run against mergekit 0.1.5's own functions (sparsify.py,
get_mask, sce_mask/sce_weight, slerp, nuslerp, multislerp, model_stock, karcher_merge_tensors,
della_magprune's probabilities) under torch in f32 on tie-free f32 data: they agree to f32
rounding (relative difference <= 3e-7), except where this contract departs from mergekit on
purpose (magnitude keeps max(1, int(density * n)) in mergekit 0.1.5, int(density * n) here).
Known differences from mergekit on bf16 checkpoints: mergekit computes the task vectors, the
masks and karcher's unit vectors in the input dtype (bf16), mergec and this file in f32.
`python3 ref_methods.py` runs a self-test: Random123's known-answer vectors for Philox4x32-10,
FNV-1a, and hand-computed examples of the primitives and of several methods.
"""
import math

import numpy as np

F = np.float32
_U32 = np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _f32(x):
    return np.asarray(x, dtype=np.float32)


def _sum64(x):
    """A whole-tensor sum: float64 accumulation, rounded to float32."""
    return F(np.sum(np.asarray(x, dtype=np.float64)))


def _dot(x, y):
    """dot(x, y): the products taken in float64 (exact for float32 inputs), summed in float64,
    rounded to float32."""
    return F(np.sum(np.asarray(x, dtype=np.float64) * np.asarray(y, dtype=np.float64)))


def _norm(x):
    """L2 norm over the whole tensor: sum of squares in float64, sqrt, rounded to float32."""
    x = np.asarray(x, dtype=np.float64)
    return F(math.sqrt(float(np.sum(x * x))))


def _lsum(xs):
    """sum(list): left to right, float32."""
    acc = _f32(xs[0])
    for x in xs[1:]:
        acc = acc + _f32(x)
    return acc


def broadcast(v, n):
    """`broadcast(w, xs)`: a scalar repeated n times, or the list itself (length checked)."""
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ValueError("list of %d values for %d items" % (len(v), n))
        return list(v)
    return [v] * n


def _sign(x):
    """Elementwise sign in float32: -1, 0 or 1 (torch.sign / np.sign)."""
    return np.sign(_f32(x)).astype(F)


# ---------------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------------
def magnitude_order(x):
    """Flat indices of x ordered by |x| descending, NaN first (larger than inf), ties by the
    lowest flat index (a stable sort)."""
    flat = _f32(x).reshape(-1)
    mag = np.abs(flat).astype(np.float64)
    nan = np.isnan(mag)
    key = np.where(nan, 0.0, mag)
    # np.lexsort: the LAST key is the primary one; it is a stable sort, so equal keys keep their
    # index order.
    return np.lexsort((-key, ~nan))


def topk_mask(x, density, skip=0.0, nonzero=False):
    """1/0 mask (float32, shape of x) keeping the ranks [s, s + k) of the elements ordered by |x|
    descending (ties: lowest flat index first; NaN above inf).

    k = int(density * n) exactly as Python computes it in float64 (n = x.size, or the number of
    non-zero elements when `nonzero`); s = int(skip * n), lowered to n - k when s + k > n;
    density >= 1 keeps everything. This is TIES's "trim" step (Yadav et al. 2023,
    https://arxiv.org/abs/2306.01708, keep the top-k% magnitudes) and, with `skip`, Model
    Breadcrumbs' band (Davari & Belilovsky 2023, https://arxiv.org/abs/2312.06795: drop the top
    gamma outliers and the small tail). The k/s arithmetic follows mergekit's sparsify.py
    (`magnitude`: int(density * numel); `magnitude_outliers`: n_top = int(gamma * numel),
    n_bot = max(0, numel - target_n - n_top)); the tie rule is mergec's (torch.argsort is not
    stable). Unlike mergekit 0.1.5's `magnitude` (k = max(1, ...)), k may be 0."""
    x = _f32(x)
    flat = x.reshape(-1)
    n = flat.size
    if float(density) >= 1.0:
        return np.ones_like(x, dtype=F)
    if nonzero:
        if float(skip) != 0.0:
            raise ValueError("topk_mask: skip must be 0 with nonzero")
        pool = int(np.count_nonzero(flat))  # NaN is non-zero
    else:
        pool = n
    k = max(0, int(float(density) * pool))
    s = max(0, int(float(skip) * n))
    if s + k > n:
        s = n - k
    mask = np.zeros(n, dtype=F)
    if k > 0:
        mask[magnitude_order(flat)[s:s + k]] = 1
    return mask.reshape(x.shape)


def quantile(x, q):
    """numpy.quantile of the float32 values with the default "linear" method, computed in
    float64 and rounded to float32."""
    return F(np.quantile(_f32(x).astype(np.float64).reshape(-1), float(q)))


_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)


def philox4x32_10(counter, key):
    """Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
    SC'11; the Random123 library). counter: 4 arrays (or ints) of uint32 values, key: 2.
    Vectorized: 32-bit words held in uint64 so that mulhilo32 is one 64-bit product.
    Round i (0..9) uses the key bumped i times by (0x9E3779B9, 0xBB67AE85). Returns 4 uint64
    arrays holding the output words."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _U32 for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) & _U32 for k in key)
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    for _ in range(10):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _U32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _U32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_W0) & _U32
        k1 = (k1 + _PHILOX_W1) & _U32
    return c0, c1, c2, c3


def fnv1a32(name):
    """FNV-1a, 32 bits, over the UTF-8 bytes of name."""
    h = 2166136261
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def uniform(seed, name, position, shape):
    """The float32 uniforms in [0, 1) of bernoulli(): (w >> 8) * 2^-24 where w is output word
    position % 4 of Philox4x32-10 with key (seed, fnv1a32(name)) and counter (index lo,
    index hi, position // 4, 0): list positions 0-3 share one block (one evaluation per
    element in mergec's kernels)."""
    n = int(np.prod(shape, dtype=np.int64))
    idx = np.arange(n, dtype=np.uint64)
    words = philox4x32_10(
        (idx & _U32, idx >> np.uint64(32), np.uint64(int(position) // 4), np.uint64(0)),
        (np.uint64(int(seed) & 0xFFFFFFFF), np.uint64(fnv1a32(name))))
    w = words[int(position) % 4]
    return ((w >> np.uint64(8)).astype(np.float64) * 2.0 ** -24).astype(F).reshape(shape)


def bernoulli(p, seed, name, position, shape):
    """1/0 mask: 1 where the Philox uniform u < p (p a float32 scalar or an array of `shape`).
    The random drop of DARE (Yu et al. 2023, https://arxiv.org/abs/2311.03099) and of DELLA;
    mergekit uses torch.bernoulli (not reproducible across devices), mergec a counter-based
    generator, which this reproduces bit for bit."""
    u = uniform(seed, name, position, shape)
    return (u < _f32(p)).astype(F)


# ---------------------------------------------------------------------------------------------
# general task arithmetic (mergekit generalized_task_arithmetic.py)
# ---------------------------------------------------------------------------------------------
def _rescale_mode(rescale):
    if rescale is True or rescale == "l1":
        return "l1"
    if rescale is False or rescale is None or rescale == "none":
        return None
    if rescale == "inverse":
        return "inverse"
    raise ValueError("rescale %r" % (rescale,))


def rescaled_masked(tv, mask, rescale, keep_p=None):
    """mergekit sparsify.rescaled_masked_tensor with norm l1: masked * (sum|tv| / sum|masked|),
    unscaled when either sum < 1e-7 (eps). rescale = "inverse": masked / keep probability (the
    DARE paper's 1/(1 - p) with p the drop rate)."""
    tv = _f32(tv)
    masked = tv * _f32(mask)
    mode = _rescale_mode(rescale)
    if mode is None:
        return masked
    if mode == "inverse":
        return masked / _f32(keep_p)
    before = _sum64(np.abs(tv))
    after = _sum64(np.abs(masked))
    if before < F(1e-7) or after < F(1e-7):
        return masked
    return masked * (before / after)


def gta_combine(sparse, weights, consensus, normalize):
    """Steps 2-4 of mergekit's GeneralizedTaskArithmeticMerge.merge_group: weighted_i = w_i *
    sparse_i; with consensus (TIES "elect sign" with method "sum", get_mask): elected = +1 where
    sum_i weighted_i >= 0 else -1, agree_i = sign(weighted_i) == elected (zeros disagree),
    mixed = sum weighted_i * agree_i, divisor = sum w_i * agree_i (0 -> 1); without: mixed =
    sum weighted_i, divisor = sum w_i (|divisor| < 1e-8 -> 1). Returns mixed / divisor when
    normalize, else mixed (a task vector)."""
    m = len(sparse)
    ws = [F(w) for w in broadcast(weights, m)]
    weighted = [w * _f32(s) for w, s in zip(ws, sparse)]
    if consensus:
        total = _lsum(weighted)
        elected = np.where(total >= 0, F(1), F(-1)).astype(F)
        agree = [(_sign(x) == elected).astype(F) for x in weighted]
        mixed = _lsum([x * a for x, a in zip(weighted, agree)])
        divisor = _lsum([w * a for w, a in zip(ws, agree)])
        divisor = np.where(divisor == 0, F(1), divisor).astype(F)
    else:
        mixed = _lsum(weighted)
        divisor = F(0)
        for w in ws:
            divisor = F(divisor + w)
        if abs(divisor) < 1e-8:
            divisor = F(1)
    if normalize:
        return (mixed / divisor).astype(F)
    return mixed


def ties(tvs, weights=1, density=1, normalize=True, rescale=False):
    """TIES-Merging (Yadav et al. 2023, https://arxiv.org/abs/2306.01708): trim each task vector
    to its top-density magnitudes, elect a sign per element, average the agreeing entries.
    mergekit `ties`: sparsification magnitude, consensus sum, normalize true, rescale false."""
    m = len(tvs)
    ds = broadcast(density, m)
    sparse = [rescaled_masked(tv, topk_mask(tv, d), rescale, d) for tv, d in zip(tvs, ds)]
    return gta_combine(sparse, weights, True, normalize)


def _dare(tvs, weights, density, normalize, rescale, seed, name, consensus):
    m = len(tvs)
    ds = broadcast(density, m)
    sparse = []
    for i, (tv, d) in enumerate(zip(tvs, ds)):
        tv = _f32(tv)
        mask = bernoulli(F(d), seed, name, i, tv.shape)
        sparse.append(rescaled_masked(tv, mask, rescale, F(d)))
    return gta_combine(sparse, weights, consensus, normalize)


def dare_linear(tvs, weights=1, density=1, normalize=False, rescale=True, seed=0, name=""):
    """DARE, "Language models are Super Mario" (Yu et al. 2023,
    https://arxiv.org/abs/2311.03099): drop each delta entry with probability 1 - density and
    rescale the rest. mergekit `dare_linear`: sparsification random, no consensus, normalize
    false, rescale true (mergekit rescales to the L1 norm, not by 1/density). The mask of tvs[i]
    is bernoulli(density_i, seed) at list position i for the output tensor `name`."""
    return _dare(tvs, weights, density, normalize, rescale, seed, name, False)


def dare_ties(tvs, weights=1, density=1, normalize=False, rescale=True, seed=0, name=""):
    """DARE drop-and-rescale followed by TIES sign consensus (mergekit `dare_ties`)."""
    return _dare(tvs, weights, density, normalize, rescale, seed, name, True)


def _breadcrumbs(tvs, weights, density, gamma, consensus):
    m = len(tvs)
    ds = broadcast(density, m)
    gs = broadcast(gamma, m)
    sparse = [_f32(tv) * topk_mask(tv, d, skip=g) for tv, d, g in zip(tvs, ds, gs)]
    return gta_combine(sparse, weights, consensus, False)


def breadcrumbs(tvs, weights=1, density=1, gamma=0.01):
    """Model Breadcrumbs (Davari & Belilovsky 2023, https://arxiv.org/abs/2312.06795): mask out
    the largest gamma fraction (outliers) and the smallest entries, keeping a band of density.
    mergekit `breadcrumbs`: magnitude_outliers, no consensus, normalize false, no rescale."""
    return _breadcrumbs(tvs, weights, density, gamma, False)


def breadcrumbs_ties(tvs, weights=1, density=1, gamma=0.01):
    """Model Breadcrumbs with TIES sign consensus (mergekit `breadcrumbs_ties`)."""
    return _breadcrumbs(tvs, weights, density, gamma, True)


def della_probs(tv, density, epsilon):
    """DELLA's MagPrune keep probabilities (Deep et al. 2024, https://arxiv.org/abs/2406.11617):
    per row (the last dimension; a 1-D tensor is one row) rank r = 1..cols of |tv| ascending
    (ties by the lowest index), p = (density - epsilon) + (r - 1) / (cols - 1) * 2 * epsilon,
    following mergekit's della_magprune (ranks normalized by (r - min) / (max - min)). The
    probabilities are symmetric around density, every row's mean; a row of one element (shape
    [n, 1], [1] or []) has no span (mergekit's 0 / 0) and keeps with that mean, density."""
    tv = _f32(tv)
    cols = tv.shape[-1] if tv.ndim >= 1 else 1
    if cols == 1:
        return np.full(tv.shape, F(density), dtype=F)
    rows = np.abs(tv).reshape(-1, cols)
    order = np.argsort(rows, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(cols)[None, :].repeat(rows.shape[0], 0), axis=1)
    frac = ranks.astype(F) / F(cols - 1)
    p = (F(density) - F(epsilon)) + frac * (F(2) * F(epsilon))
    return p.astype(F).reshape(tv.shape)


def _della(tvs, weights, density, epsilon, seed, name, consensus, normalize):
    m = len(tvs)
    ds = broadcast(density, m)
    es = broadcast(epsilon, m)
    sparse = []
    for i, (tv, d, e) in enumerate(zip(tvs, ds, es)):
        tv = _f32(tv)
        if float(d) >= 1:  # mergekit della_magprune: `if density >= 1: return tensor`
            sparse.append(tv)
            continue
        if float(d) <= 0:  # `if density <= 0: return torch.zeros_like(tensor)`
            sparse.append(np.zeros_like(tv))
            continue
        p = della_probs(tv, d, e)
        mask = bernoulli(p, seed, name, i, tv.shape)
        sparse.append(rescaled_masked(tv, mask, "l1"))
    return gta_combine(sparse, weights, consensus, normalize)


def della(tvs, weights=1, density=1, epsilon=0.15, seed=0, name=""):
    """DELLA-Merging (Deep et al. 2024, https://arxiv.org/abs/2406.11617): MagPrune drops each
    entry with a probability that falls with its magnitude rank within the row, rescales (L1,
    as mergekit), then TIES consensus. mergekit `della`: della_magprune, consensus sum,
    normalize true, rescale true. mask_i = bernoulli(p_i, seed) at list position i. A density
    >= 1 leaves the task vector untouched (no draw, no rescale) and a density <= 0 zeroes it,
    as mergekit's della_magprune does."""
    return _della(tvs, weights, density, epsilon, seed, name, True, True)


def della_linear(tvs, weights=1, density=1, epsilon=0.15, seed=0, name=""):
    """DELLA without sign consensus (mergekit `della_linear`: normalize false, rescale true)."""
    return _della(tvs, weights, density, epsilon, seed, name, False, False)


# ---------------------------------------------------------------------------------------------
# SCE (mergekit merge_methods/sce.py)
# ---------------------------------------------------------------------------------------------
def variance(xs):
    """`variance(xs)`: the population variance across the list, per element (divisor m, as
    torch.var(unbiased=False) in mergekit's sce_mask), computed in float64 by numpy (two-pass)
    and rounded once to float32. mergec computes it with Welford's update in f64 (torch's
    algorithm); for float32 inputs both give the f32 rounding of the exact variance except at
    rare near-ties (none for 2 or 3 items on the test checkpoints)."""
    wide = np.stack([np.asarray(x, dtype=np.float64) for x in xs])
    return np.var(wide, axis=0).astype(F)


def sce(tvs, select_topk=1.0):
    """SCE from FuseChat (Wan et al. 2024, https://arxiv.org/abs/2408.07990): Select the
    elements with the largest variance across the task vectors (top select_topk of the non-zero
    variances), Calculate per-model weights from the mean squared task vector, Erase the
    entries whose sign disagrees with the (unweighted) sum. Follows mergekit 0.1.5's sce_merge,
    sce_mask (topk over |var| with k = int(count_nonzero(var) * density)) and sce_weight:
    weights = ms / sum(ms), or 1/m when abs(sum) < 1e-6 (the f32 sum against the Python float
    1e-6); result sum tv_i w_i e_i / clamp(sum w_i e_i, min = 1e-6) (the clamp bound in f32, the
    tensor's dtype). mergekit 0.0.6 tested `sum_weights == 0` and `divisor[divisor == 0] = 1`
    instead: the two differ only when the mean squares sum to less than 1e-6 or an element's
    surviving weights sum to less than 1e-6. One known difference remains: mergekit's k is
    int() of a float32 tensor product (count_nonzero * density), this file's and mergec's the
    float64 product; they differ by one for ~16 % of (count, density) pairs below 2^24 (count 90,
    density 0.7: mergekit 63, here 62)."""
    m = len(tvs)
    tvs = [_f32(tv) for tv in tvs]
    if float(select_topk) < 1:
        mask = topk_mask(variance(tvs), select_topk, nonzero=True)
        tvs = [tv * mask for tv in tvs]
    total = _lsum(tvs)
    elected = np.where(total >= 0, F(1), F(-1)).astype(F)
    erase = [(_sign(tv) == elected).astype(F) for tv in tvs]
    n = tvs[0].size
    ms = [F(_sum64(tv * tv) / F(n)) for tv in tvs]
    s = F(0)
    for v in ms:
        s = F(s + v)
    if abs(float(s)) < 1e-6:
        ws = [F(1) / F(m)] * m
    else:
        ws = [F(v / s) for v in ms]
    ew = [w * e for w, e in zip(ws, erase)]
    num = _lsum([tv * x for tv, x in zip(tvs, ew)])
    den = np.maximum(_lsum(ew), F(1e-6)).astype(F)
    return (num / den).astype(F)


# ---------------------------------------------------------------------------------------------
# spherical interpolation
# ---------------------------------------------------------------------------------------------
def slerp_coefficients(dot, t, threshold=0.9995):
    """(coef_a, coef_b) of mergekit slerp: lerp when |dot| > threshold, else
    sin((1 - t) theta) / sin theta, sin(t theta) / sin theta with theta = acos(dot)."""
    dot = min(max(float(dot), -1.0), 1.0)
    t = float(t)
    if abs(dot) > threshold:
        return F(1 - t), F(t), True
    theta = math.acos(dot)
    s = math.sin(theta)
    return F(math.sin((1 - t) * theta) / s), F(math.sin(t * theta) / s), False


def slerp(a, b, t, dot_threshold=0.9995, eps=1e-8):
    """Spherical linear interpolation (Shoemake, "Animating rotation with quaternion curves",
    SIGGRAPH 1985) of the two tensors taken as flat vectors. Follows mergekit slerp.py: norms
    replaced by 1 when <= eps, dot = sum(a/|a| * b/|b|) clamped to [-1, 1]; |dot| > 0.9995:
    (1 - t) a + t b; else theta = acos(dot), result sin((1-t) theta)/sin theta * a +
    sin(t theta)/sin theta * b. Returns (result, lerped)."""
    a, b = _f32(a), _f32(b)
    na, nb = _norm(a), _norm(b)
    na = na if na > eps else F(1)
    nb = nb if nb > eps else F(1)
    dot = _dot(a / na, b / nb)
    ca, cb, lerped = slerp_coefficients(dot, t, dot_threshold)
    return (ca * a + cb * b).astype(F), lerped


def nuslerp(a, b, t, eps=1e-8, flatten=True):
    """mergekit nuslerp.py with row_wise = false: with flatten (its default) the tensors as flat
    vectors, else each row (last dimension) on its own: unit vectors x / max(|x|, 1e-7),
    cos = dot clamped to [-1, 1], colinear when 1 - cos^2 <= eps^2 (then (1 - t) a + t b), else
    (sin((1 - t) theta) a + sin(t theta) b) / sin theta. Returns (result, colinear)."""
    a, b = _f32(a), _f32(b)
    if not flatten:
        cols = a.shape[-1] if a.ndim else 1
        rows = [nuslerp(x, y, t, eps)[0] for x, y in zip(a.reshape(-1, cols), b.reshape(-1, cols))]
        return np.stack(rows).reshape(a.shape).astype(F), False
    ua = a / max(_norm(a), F(1e-7))
    ub = b / max(_norm(b), F(1e-7))
    cos = min(max(float(_dot(ua, ub)), -1.0), 1.0)
    c32 = F(cos)
    if F(1) - c32 * c32 <= F(eps) * F(eps):
        return (F(1 - t) * a + F(t) * b).astype(F), True
    theta = math.acos(cos)
    s = math.sin(theta)
    return ((F(math.sin((1 - t) * theta)) * a + F(math.sin(t * theta)) * b) / F(s)).astype(F), False


def multislerp(xs, weights=1, eps=1e-8):
    """Multi-SLERP (Goddard, https://goddard.blog/posts/multislerp-wow-what-a-cool-idea),
    following mergekit multislerp.py (normalize_weights true, eps 1e-8): barycentric
    interpolation on the hypersphere. w normalized to sum 1; u_i = x_i / (|x_i| + eps); mean =
    sum w_i u_i, normalized (|mean| < eps: two inputs lerp, more an error); tangent_i = u_i -
    dot(u_i, mean) mean; T = sum w_i tangent_i; tn = |T| + eps; result = (mean cos tn +
    T sin(tn)/tn) * sum w_i |x_i|. A single input is returned unchanged."""
    xs = [_f32(x) for x in xs]
    m = len(xs)
    if m == 1:
        return xs[0]
    ws = [F(w) for w in broadcast(weights, m)]
    wsum = F(0)
    for w in ws:
        wsum = F(wsum + w)
    ws = [F(w / wsum) for w in ws]
    norms = [_norm(x) for x in xs]
    units = [x / (n + F(eps)) for x, n in zip(xs, norms)]
    mean = _lsum([u * w for u, w in zip(units, ws)])
    mean_norm = _norm(mean)
    if mean_norm < eps:
        if m == 2:
            return (xs[0] * ws[0] + xs[1] * ws[1]).astype(F)
        raise ValueError("multislerp: the weighted sum of the inputs is zero")
    mean = mean / mean_norm
    tangents = [u - _dot(u, mean) * mean for u in units]
    tres = _lsum([tg * w for tg, w in zip(tangents, ws)])
    tn = F(_norm(tres) + F(eps))
    c = F(math.cos(float(tn)))
    s = F(math.sin(float(tn)) / float(tn))
    result = mean * c + tres * s
    avg = F(0)
    for n, w in zip(norms, ws):
        avg = F(avg + n * w)
    return (result * avg).astype(F)


# ---------------------------------------------------------------------------------------------
# model stock, karcher, geometric median
# ---------------------------------------------------------------------------------------------
def model_stock(base, models, filter_wise=False):
    """Model Stock (Jang, Yun, Han 2024, https://arxiv.org/abs/2403.19522), following mergekit
    model_stock.py: offsets o_i = m_i - base; cos = the mean over pairs of
    dot(o_a, o_b) / max(|o_a| |o_b|, 1e-6) clamped to [-1, 1]; t = k cos / (1 + (k - 1) cos)
    (t = 0 where |1 + (k - 1) cos| < 1e-6); result t * mean(models) + (1 - t) * base. Over the
    flattened tensor, or per row (last dimension; 1-D = one row) when filter_wise."""
    base = _f32(base)
    models = [_f32(x) for x in models]
    k = len(models)
    shape = base.shape
    if filter_wise:
        cols = shape[-1] if base.ndim >= 1 else 1
        w0 = base.reshape(-1, cols)
        ws = [x.reshape(-1, cols) for x in models]
    else:
        w0 = base.reshape(1, -1)
        ws = [x.reshape(1, -1) for x in models]
    offs = [x - w0 for x in ws]

    def rowdot(x, y):
        return np.sum(x.astype(np.float64) * y.astype(np.float64), axis=1).astype(F)

    def rownorm(x):
        return np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=1)).astype(F)

    coss = []
    for i in range(k):
        for j in range(i + 1, k):
            prod = rownorm(offs[i]) * rownorm(offs[j])
            c = rowdot(offs[i], offs[j]) / np.maximum(prod, F(1e-6))
            coss.append(np.clip(c, F(-1), F(1)).astype(F))
    cos = _lsum(coss) / F(len(coss))
    den = F(1) + F(k - 1) * cos
    singular = np.abs(den) < F(1e-6)
    t = np.where(singular, F(0), (F(k) * cos) / np.where(singular, F(1), den)).astype(F)[:, None]
    avg = _lsum(ws) / F(k)
    return (t * avg + (F(1) - t) * w0).astype(F).reshape(shape)


def karcher(xs, max_iter=10, tol=1e-5):
    """Karcher (Riemannian / Frechet) mean on the unit hypersphere (H. Karcher, "Riemannian
    center of mass and mollifier smoothing", 1977), following mergekit karcher.py's
    karcher_merge_tensors with equal weights 1/N: units x_i / |x_i|; start at the normalized
    weighted mean; each iteration T = sum_i a_i theta_i / sin(theta_i) (u_i - cos_i mean) over
    the inputs with theta_i >= tol; stop when |T| < tol; mean = cos|T| mean + sin|T| T/|T|,
    renormalized; result (sum_i a_i |x_i|) * mean."""
    xs = [_f32(x) for x in xs]
    m = len(xs)
    if m == 1:
        return xs[0]
    alphas = [F(1) / F(m)] * m
    norms = [_norm(x) for x in xs]
    units = [np.zeros_like(x) if n == 0 else x / n for x, n in zip(xs, norms)]
    valid = [i for i in range(m) if norms[i] > tol]
    if not valid:
        return np.zeros_like(xs[0])
    va = [alphas[i] for i in valid]
    asum = F(0)
    for a in va:
        asum = F(asum + a)
    na = [F(a / asum) for a in va]
    vu = [units[i] for i in valid]
    mean = _lsum([u * a for u, a in zip(vu, na)])
    mn = _norm(mean)
    mean = vu[0].copy() if mn < tol else mean / mn
    for _ in range(int(max_iter)):
        terms = []
        for a, u in zip(na, vu):
            dot = min(max(float(_dot(mean, u)), -1.0), 1.0)
            theta = math.acos(dot)
            if theta < tol:
                continue
            coef = F(float(a) * theta / math.sin(theta))
            terms.append(coef * (u - F(dot) * mean))
        tangent = _lsum(terms) if terms else np.zeros_like(mean)
        tn = _norm(tangent)
        if tn < tol:
            break
        mean = F(math.cos(float(tn))) * mean + F(math.sin(float(tn))) * (tangent / tn)
        un = _norm(mean)
        if un > tol:
            mean = mean / un
    scale = F(0)
    for a, n in zip(alphas, norms):
        scale = F(scale + a * n)
    return (scale * mean).astype(F)


def geomedian(xs, weights=1, eps=1e-8, max_iter=100, tol=1e-6):
    """Weighted geometric median by Weiszfeld's algorithm (E. Weiszfeld, "Sur le point pour
    lequel la somme des distances de n points donnes est minimum", 1937), each tensor one point:
    y0 = sum w_i x_i / sum w_i; repeat up to max_iter: d_i = max(|x_i - y|, eps), b_i = w_i / d_i,
    y' = sum b_i x_i / sum b_i; stop (keeping y') when |y' - y| <= tol * max(|y|, 1e-12)."""
    xs = [_f32(x) for x in xs]
    m = len(xs)
    ws = [F(w) for w in broadcast(weights, m)]
    wsum = F(0)
    for w in ws:
        wsum = F(wsum + w)
    y = _lsum([x * w for x, w in zip(xs, ws)]) / wsum
    for _ in range(int(max_iter)):
        betas = [F(w / max(_norm(x - y), F(eps))) for x, w in zip(xs, ws)]
        bsum = F(0)
        for b in betas:
            bsum = F(bsum + b)
        y2 = (_lsum([x * b for x, b in zip(xs, betas)]) / bsum).astype(F)
        step = _norm(y2 - y)
        ynorm = _norm(y)
        y = y2
        if step <= F(tol) * max(ynorm, F(1e-12)):
            break
    return y


def median(xs):
    """Coordinate-wise median (numpy.median: mean of the two middle values for even counts)."""
    return np.median(np.stack([_f32(x) for x in xs]), axis=0).astype(F)


# ---------------------------------------------------------------------------------------------
# self-test
# ---------------------------------------------------------------------------------------------
def _check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok: " + what)


def _selftest():
    # Random123 known-answer tests (kat_vectors: philox4x32 10).
    kats = [
        ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
        ((0xffffffff,) * 4, (0xffffffff, 0xffffffff), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
        ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
         (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
    ]
    for ctr, key, want in kats:
        got = tuple(int(w) for w in philox4x32_10(ctr, key))
        _check(got == want, "philox4x32-10 KAT ctr=%s key=%s -> %s" % (
            ",".join("%#x" % c for c in ctr), ",".join("%#x" % k for k in key),
            ",".join("%#010x" % g for g in got)))
    # vectorized = scalar
    idx = np.arange(5, dtype=np.uint64)
    vec = philox4x32_10((idx, 0, 3, 0), (7, 11))
    for i in range(5):
        one = philox4x32_10((i, 0, 3, 0), (7, 11))
        assert all(int(v[i]) == int(o) for v, o in zip(vec, one))
    _check(True, "philox vectorized == scalar")
    # FNV-1a 32-bit known values
    _check(fnv1a32("") == 0x811c9dc5 and fnv1a32("a") == 0xe40c292c and fnv1a32("foobar") == 0xbf9cf968,
           "fnv1a32 known values")
    # bernoulli: rate, determinism, p = 0 / 1, positions differ
    shape = (200, 300)
    m = bernoulli(F(0.3), 5, "model.layers.0.mlp.up_proj.weight", 0, shape)
    rate = m.mean()
    sigma = math.sqrt(0.3 * 0.7 / m.size)
    _check(abs(rate - 0.3) < 4 * sigma, "bernoulli(0.3) rate %.4f within 4 sigma" % rate)
    _check(np.array_equal(m, bernoulli(F(0.3), 5, "model.layers.0.mlp.up_proj.weight", 0, shape)),
           "bernoulli deterministic")
    m1 = bernoulli(F(0.3), 5, "model.layers.0.mlp.up_proj.weight", 1, shape)
    m2 = bernoulli(F(0.3), 5, "model.layers.1.mlp.up_proj.weight", 0, shape)
    m3 = bernoulli(F(0.3), 6, "model.layers.0.mlp.up_proj.weight", 0, shape)
    m4 = bernoulli(F(0.3), 5, "model.layers.0.mlp.up_proj.weight", 4, shape)
    # m1: the next word of m's block; m4: the next block; m2, m3: other keys
    agree = [float((m == x).mean()) for x in (m1, m2, m3, m4)]
    _check(all(abs(a - 0.58) < 0.01 for a in agree), "bernoulli streams for position/name/seed independent %s" % agree)
    _check(bernoulli(F(0), 1, "x", 0, (100,)).sum() == 0 and bernoulli(F(1), 1, "x", 0, (100,)).sum() == 100,
           "bernoulli p=0 none, p=1 all")
    # position p reads word p % 4 of the block at counter (index, p // 4)
    idx4 = np.arange(4, dtype=np.uint64)
    for pos, block, word in [(0, 0, 0), (1, 0, 1), (3, 0, 3), (4, 1, 0), (6, 1, 2)]:
        w = philox4x32_10((idx4, 0, block, 0), (0, fnv1a32("t")))[word]
        _check(np.array_equal(uniform(0, "t", pos, (4,)),
                              ((w >> np.uint64(8)).astype(np.float64) / 2 ** 24).astype(F)),
               "uniform at position %d from word %d of block %d, >> 8" % (pos, word, block))
    # topk_mask
    x = _f32([0.5, -2, 2, 0, 1, -1, 2, 0.25])
    _check(topk_mask(x, 0.375).tolist() == [0, 1, 1, 0, 0, 0, 1, 0], "topk_mask k=3 picks the three |2|")
    _check(topk_mask(x, 0.25).tolist() == [0, 1, 1, 0, 0, 0, 0, 0], "topk_mask ties by lowest index")
    _check(topk_mask(x, 0.5).tolist() == [0, 1, 1, 0, 1, 0, 1, 0], "topk_mask k=4 ties |1| by index")
    _check(topk_mask(x, 0.1).sum() == 0, "topk_mask int(0.8) = 0 keeps nothing")
    _check(topk_mask(x, 1.0).sum() == 8 and topk_mask(x, 2.0).sum() == 8, "topk_mask density >= 1 keeps all")
    _check(topk_mask(x, 0.25, skip=0.125).tolist() == [0, 0, 1, 0, 0, 0, 1, 0], "topk_mask skip 1 keeps ranks 1-2")
    _check(topk_mask(x, 0.75, skip=0.5).tolist() == [1, 0, 0, 1, 1, 1, 1, 1], "topk_mask s+k>n lowers s to n-k")
    _check(topk_mask(x, 0.5, nonzero=True).tolist() == [0, 1, 1, 0, 0, 0, 1, 0], "topk_mask nonzero: k=int(.5*6)=3")
    y = _f32([1, np.nan, np.inf, -np.inf, 0, -0.0, 3])
    _check(topk_mask(y, 3 / 7).tolist() == [0, 1, 1, 1, 0, 0, 0], "topk_mask NaN above inf, then inf, -inf")
    z = _f32(np.arange(30) % 3)
    _check(int(topk_mask(z, 0.7).sum()) == 21, "topk_mask k = int(0.7 * 30) = 21 (float64, not float32: 20)")
    _check(int(topk_mask(_f32(np.ones(100)), 0.57).sum()) == 56, "topk_mask k = int(0.57 * 100) = 56")
    # quantile
    q = _f32([3, 1, 2, 10])
    _check(quantile(q, 0.5) == F(2.5) and quantile(q, 0.9) == F(7.9) and quantile(q, 0) == 1 and quantile(q, 1) == 10,
           "quantile linear interpolation")
    # ties by hand: tvs [1, -2, 3, 0.5], [-1, 1, -4, 0.5] density 0.5, weights 1
    a = _f32([1, -2, 3, 0.5])
    b = _f32([-1, 1, -4, 0.5])
    # masks: a keeps |3|, |-2| -> [0,-2,3,0]; b keeps |-4| then |1| lowest index -> [-1,0,-4,0]
    # sum [-1,-2,-1,0] -> elected [-1,-1,-1,+1]; agree a: [0,1,0,0] b: [1,0,1,0]
    # mixed [-1,-2,-4,0] divisor [1,1,1,1 (0->1)]
    _check(ties([a, b], density=0.5).tolist() == [-1, -2, -4, 0], "ties by hand")
    _check(ties([a, b], weights=[2, 1], density=0.5, normalize=False).tolist() == [-1, -4, 6, 0],
           "ties weighted, not normalized, by hand")
    # L1 rescale: a masked [0,-2,3,0], ratio 6.5/5 = 1.3
    r = rescaled_masked(a, topk_mask(a, 0.5), True)
    _check(np.allclose(r, [0, -2.6, 3.9, 0]), "L1 rescale by hand")
    # breadcrumbs: a gamma 0.25 density 0.5: drop |3|, keep |-2|, |1|
    _check(breadcrumbs([a], density=0.5, gamma=0.25).tolist() == [1, -2, 0, 0], "breadcrumbs by hand")
    # dare with density 1 = task arithmetic
    _check(np.array_equal(dare_linear([a, b], weights=[1, 1], density=1, name="x"), a + b), "dare density 1")
    # della probabilities: row [0.1, -0.3, 0.2] -> ranks 1,3,2 -> p = 0.4, 0.6, 0.5 (d .5 e .1)
    p = della_probs(_f32([[0.1, -0.3, 0.2]]), 0.5, 0.1)
    _check(np.allclose(p, [[0.4, 0.6, 0.5]]), "della probabilities by hand")
    # rows of one element keep with probability density (the mean of every longer row)
    for shape in [(4, 1), (1,), ()]:
        p = della_probs(np.full(shape, F(0.3)), 0.5, 0.1)
        _check(p.shape == shape and np.all(p == F(0.5)), "della rows of one element %s" % (shape,))
    # sce with select 1: weights by mean square; a ms = 3.5625, b ms = 4.5625
    s = sce([a, b])
    wa, wb = 3.5625 / 8.125, 4.5625 / 8.125
    # elected sign of a+b = [0->+1, -1, -1, 1]: agree a [1,1,0,1] b [0,0,1,1]
    want = [1.0, -2.0, -4.0, (0.5 * wa + 0.5 * wb) / (wa + wb)]
    _check(np.allclose(s, want), "sce by hand")
    # mergekit 0.1.5's thresholds: mean squares summing below 1e-6 give uniform weights (1/2):
    # a*1e-4, b*1e-4 -> [1e-4, -2e-4, -4e-4, (0.5e-4 * 0.5 * 2) / 1]
    s = sce([a * F(1e-4), b * F(1e-4)])
    _check(np.allclose(s, [1e-4, -2e-4, -4e-4, 0.5e-4], rtol=1e-6), "sce uniform weights below 1e-6")
    # and an element whose surviving weights sum below 1e-6 is divided by 1e-6: at index 3 only
    # c (weight ~1e-8) is non-zero, so c[3] * wc / 1e-6, not c[3]
    x, c = _f32([1, -2, 3, 0]), _f32([1e-4, 1e-4, 1e-4, -1e-4])
    s = sce([x, c])
    ms_x, ms_c = _sum64(x * x) / F(4), _sum64(c * c) / F(4)
    wc = F(ms_c / F(ms_x + ms_c))
    _check(wc < 1e-6 and np.isclose(s[3], F(-1e-4) * wc / F(1e-6), rtol=1e-5), "sce divisor clamped at 1e-6")
    # variance: population (divisor m), in f64, rounded once
    _check(variance([_f32([1, 2]), _f32([3, 2]), _f32([5, 2])]).tolist() == [F(8 / 3), 0], "variance by hand")
    # slerp: orthogonal unit vectors, t = 0.5 -> (e1 + e2) / sqrt(2)
    r, lerped = slerp(_f32([1, 0]), _f32([0, 1]), 0.5)
    _check(not lerped and np.allclose(r, [math.sqrt(0.5)] * 2), "slerp orthogonal midpoint")
    r, lerped = slerp(_f32([1, 2]), _f32([2, 4]), 0.25)
    _check(lerped and np.allclose(r, [1.25, 2.5]), "slerp colinear lerps")
    r, col = nuslerp(_f32([2, 0]), _f32([0, 3]), 0.5)
    _check(not col and np.allclose(r, [math.sqrt(2), 1.5 * math.sqrt(2)]), "nuslerp keeps the norms (no renormalize)")
    r = multislerp([_f32([1, 0]), _f32([0, 1])])
    _check(np.allclose(r, [math.sqrt(0.5)] * 2, atol=1e-6), "multislerp orthogonal midpoint")
    r = karcher([_f32([1, 0]), _f32([0, 1])])
    _check(np.allclose(r, [math.sqrt(0.5)] * 2, atol=1e-6), "karcher orthogonal midpoint")
    r = karcher([_f32([2, 0]), _f32([0, 1]), _f32([1, 1])])
    _check(abs(float(np.linalg.norm(r)) - (2 + 1 + math.sqrt(2)) / 3) < 1e-5, "karcher scale = mean norm")
    # model stock: two orthogonal offsets -> cos 0 -> t 0 -> base
    r = model_stock(_f32([1, 1]), [_f32([2, 1]), _f32([1, 2])])
    _check(np.allclose(r, [1, 1]), "model_stock orthogonal offsets give base")
    r = model_stock(_f32([0, 0]), [_f32([1, 0]), _f32([1, 0.0001])])
    _check(np.allclose(r, [1, 0.00005], atol=1e-6), "model_stock parallel offsets give the average")
    # geometric median of a triangle with a 120+ degree angle at a vertex is that vertex
    pts = [_f32([0, 0]), _f32([1, 0]), _f32([-1, 0.1])]
    r = geomedian(pts, max_iter=1000, tol=1e-9)
    _check(np.allclose(r, [0, 0], atol=1e-3), "geomedian obtuse vertex %s" % r)
    pts = [_f32([0, 0]), _f32([1, 0]), _f32([0.5, math.sqrt(3) / 2])]
    r = geomedian(pts, max_iter=1000, tol=1e-9)
    _check(np.allclose(r, [0.5, math.sqrt(3) / 6], atol=1e-4), "geomedian equilateral = centroid")
    print("PASS")


if __name__ == "__main__":
    _selftest()


# --- RAM / RAM+ (mergekit ram.py), Arcee Fusion (mergekit arcee_fusion.py) -------------------
def _ram_masks(tvs, epsilon):
    changed = [np.abs(t) > F(epsilon) for t in tvs]
    counts = np.zeros(tvs[0].shape, dtype=np.int64)
    for m in changed:
        counts += m
    return changed, counts


def ram(tvs, epsilon=1e-5):
    """mergekit's ram_merge: sum over models of tv*changed*unique + tv*changed*overlap/count."""
    changed, counts = _ram_masks(tvs, epsilon)
    divisor = np.maximum(counts, 1).astype(F)
    out = np.zeros(tvs[0].shape, dtype=F)
    for t, m in zip(tvs, changed):
        z = _f32(t * m)
        out = _f32(out + _f32(_f32(z * (counts == 1)) + _f32(_f32(z * (counts > 1)) / divisor)))
    return out


def ramplus_tl(tvs, r=0.1, alpha=0.2, epsilon=1e-5):
    """mergekit's ramplus_tl_merge: unique changes scaled by 1 + r * clamp(shared/unique, 0, alpha)."""
    changed, counts = _ram_masks(tvs, epsilon)
    divisor = np.maximum(counts, 1).astype(F)
    out = np.zeros(tvs[0].shape, dtype=F)
    for t, m in zip(tvs, changed):
        shared = F(np.count_nonzero(m & (counts > 1)))
        unique = F(np.count_nonzero(m & (counts == 1)))
        rho = F(shared / max(unique, F(epsilon)))
        lam = F(F(1) + F(F(r) * F(min(max(rho, F(0)), F(alpha)))))
        z = _f32(t * m)
        out = _f32(out + _f32(_f32(_f32(z * (counts == 1)) * lam) + _f32(_f32(z * (counts > 1)) / divisor)))
    return out


def arcee_fusion(base, tuned):
    """mergekit's arcee_fusion with exact quartiles (numpy's linear quantile over the whole
    tensor, where mergekit samples large tensors and indexes floor(q * (n - 1))): importance =
    |tuned - base| * KL(softmax rows of tuned + 1e-8 || of base + 1e-8), kept where it reaches
    median + 1.5 * IQR. Softmax and KL in f64 (mergec computes them in f32: a few elements at
    the threshold may land on the other side)."""
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    b64, t64 = base.astype(np.float64), tuned.astype(np.float64)
    p, q = softmax(t64) + 1e-8, softmax(b64) + 1e-8
    kl = np.sum(p * np.log(p / q), axis=-1)
    importance = (np.abs(t64 - b64) * kl[..., None]).astype(F)
    threshold = F(np.quantile(importance, 0.5)) + F(1.5) * (F(np.quantile(importance, 0.75)) -
                                                           F(np.quantile(importance, 0.25)))
    return _f32(base + _f32(tuned - base) * (importance >= threshold))
