"""Independent numpy references (f64, np.linalg.svd) for the SVD family of merges in
stdlib/svd.merge, written from the papers and FusionBench's code rather than from mergec's
recipe text, so that a slip in either shows up as a disagreement.

Every function takes one tensor's task vectors (or models, for cart) as float arrays of the
tensor's shape and returns the merged task vector (a model, for cart) in f64, same shape.

A tensor is a matrix when it has more than one row as (numel / cols) x cols, cols its last
dimension. FusionBench merges only 2-D tensors by SVD and averages everything else; for the
1-D tensors (norms, biases) the tests use, both rules give the mean. cart has no such branch:
a 1-D tensor is a 1 x n matrix there (the natural result: lowrank of a one-row matrix is the
row itself, so cart gives back the mean).

Sources:
  iso_c, iso_cts  FusionBench fusion_bench/method/isotropic_merging/iso_utils.py
                  (Marczak et al., ICML 2025, arXiv:2502.04959)
  tsv_merge       FusionBench fusion_bench/method/task_singular_vector/utils/TSVM_utils.py,
                  compute_and_sum_svd_mem_reduction (Gargiulo et al., CVPR 2025, arXiv:2412.00081)
  cart            Choi et al. 2024, arXiv:2412.12153: mean + lam * sum_i lowrank(m_i - mean, k)
  star            Lee et al., NAACL 2025, arXiv:2502.10339: spectral truncation to eta % of the
                  nuclear norm, rescaled to keep the nuclear norm, then the average
"""
import math

import numpy as np

D = np.float64


def as_matrix(x):
    """The tensor as mergec sees it: (numel / cols) x cols; a 1-D tensor is 1 x n."""
    x = np.asarray(x, dtype=D)
    cols = x.shape[-1] if x.ndim else 1
    return x.reshape(-1, cols)


def is_matrix(x):
    """More than one row: what the stdlib methods take the SVD branch for."""
    m = as_matrix(x)
    return m.shape[0] > 1


def svd(m):
    """Thin SVD in f64: u (m x r), s (r), vt (r x n)."""
    return np.linalg.svd(np.asarray(m, dtype=D), full_matrices=False)


def polar(m):
    """The orthogonal polar factor u @ vt of m's thin SVD (FusionBench's 'orthogonalize')."""
    u, _, vt = svd(m)
    return u @ vt


def lowrank(m, k):
    """The best rank-k approximation (Eckart-Young), k clamped to [1, min(m, n)] like mergec."""
    u, s, vt = svd(m)
    k = max(1, min(int(math.floor(k)), s.size))
    return (u[:, :k] * s[:k]) @ vt[:k]


def _mean(xs):
    return np.mean([np.asarray(x, dtype=D) for x in xs], axis=0)


def _per_matrix(xs, fn):
    """fn on the matrix views of xs, reshaped back to the tensor's shape; the mean for
    non-matrix tensors (FusionBench's rule for anything that is not 2-D)."""
    shape = np.shape(xs[0])
    if not is_matrix(xs[0]):
        return _mean(xs)
    return fn([as_matrix(x) for x in xs]).reshape(shape)


def iso_c(tvs, alpha=1.0):
    """FusionBench iso_c: svd of the sum, every singular value replaced by their mean."""
    def merge(ms):
        u, s, vt = svd(sum(ms))
        return (u * np.full_like(s, s.mean())) @ vt
    return alpha * _per_matrix(tvs, merge)


def iso_cts_split(r, t, common):
    """FusionBench iso_cts' sizes: (k_c common directions, n per task). Python's round (half to
    even) is the point: the task-specific total is a multiple of t."""
    kc = int(r * common)
    kc = r - round((r - kc) / t) * t
    n = int((r - kc) / t)
    return kc, n


def iso_cts(tvs, common=0.8, alpha=1.0):
    """FusionBench iso_cts: the top k_c directions of the sum (common space), then per task the
    top n directions of the task vector with the common space projected out of its columns;
    both concatenated bases orthogonalised by their polar factors, the spectrum flattened to
    the mean of all kept singular values."""
    def merge(ms):
        t = len(ms)
        r = min(ms[0].shape)
        kc, n = iso_cts_split(r, t, common)
        u, s, vt = svd(sum(ms))
        uc, sc, vc = u[:, :kc], s[:kc], vt[:kc]
        cu, cs, cv = [], [], []
        for w in ms:
            u_ts, s_ts, v_ts = svd(w - uc @ (uc.T @ w))
            cu.append(u_ts[:, :n])
            cs.append(s_ts[:n])
            cv.append(v_ts[:n])
        cu = np.hstack(cu + [uc])
        cs = np.concatenate(cs + [sc])
        cv = np.vstack(cv + [vc])
        return (polar(cu) * np.full_like(cs, cs.mean())) @ polar(cv)
    return alpha * _per_matrix(tvs, merge)


def tsv_k(r, t):
    """FusionBench's per-task rank, int(s.shape[0] * sv_reduction) with sv_reduction = 1 / t,
    which is int(r / t) for every size the tests use (tsv_merge checks that)."""
    return int(r * (1 / t))


def tsv_merge(tvs, alpha=1.0):
    """FusionBench compute_and_sum_svd_mem_reduction: each task's top k = int(r / t) singular
    triplets placed side by side; U and Vt orthogonalised by their polar factors;
    alpha * polar(U) @ diag(S) @ polar(Vt). FusionBench pads U, S, Vt with zeros up to r
    columns; the padding meets zero singular values, so it changes nothing and is left out."""
    def merge(ms):
        t = len(ms)
        k = tsv_k(min(ms[0].shape), t)
        us, ss, vts = [], [], []
        for w in ms:
            u, s, vt = svd(w)
            us.append(u[:, :k])
            ss.append(s[:k])
            vts.append(vt[:k])
        return (polar(np.hstack(us)) * np.concatenate(ss)) @ polar(np.vstack(vts))
    return alpha * _per_matrix(tvs, merge)


def cart_k(r, rank_fraction):
    """CART's rank: floor(rank_fraction * r), at least 1."""
    return max(1, int(math.floor(rank_fraction * r)))


def cart(models, rank_fraction=0.08, lam=1.0):
    """CART: the mean of the models plus lam times each model's deviation from the mean at its
    best rank k. Every tensor is a matrix here, 1-D ones as 1 x n."""
    shape = np.shape(models[0])
    ms = [as_matrix(m) for m in models]
    center = _mean(ms)
    k = cart_k(min(center.shape), rank_fraction)
    out = center + lam * sum(lowrank(m - center, k) for m in ms)
    return out.reshape(shape)


def star_keep(s, eta):
    """How many singular values STAR keeps: up to and including the first whose running sum
    reaches eta % of the nuclear norm. Also returns the distance of the running sums from the
    threshold at the decision (the tests require it to be well clear of f32 rounding)."""
    c = np.cumsum(s)
    threshold = eta / 100.0 * c[-1]
    keep = int(np.count_nonzero(c - s < threshold))
    margin = float(np.min(np.abs(c - s - threshold)) / c[-1])
    return keep, margin


def star(tvs, eta=40.0):
    """STAR: each task vector truncated to its top singular values holding eta % of the nuclear
    norm, the kept ones rescaled so the nuclear norm is unchanged; then the average."""
    def merge(ms):
        out = []
        for w in ms:
            u, s, vt = svd(w)
            keep, _ = star_keep(s, eta)
            kept = s[:keep] * (s.sum() / s[:keep].sum())
            out.append((u[:, :keep] * kept) @ vt[:keep])
        return np.mean(out, axis=0)
    return _per_matrix(tvs, merge)


def star_margin(tvs, eta=40.0):
    """The smallest relative distance of any task's running sums from STAR's threshold."""
    if not is_matrix(tvs[0]):
        return float("inf")
    return min(star_keep(svd(as_matrix(w))[1], eta)[1] for w in tvs)


def rel_fro(actual, expected):
    """||actual - expected||_F / ||expected||_F in f64 (0 when both are 0)."""
    a, e = np.asarray(actual, dtype=D), np.asarray(expected, dtype=D)
    den = np.linalg.norm(e)
    num = np.linalg.norm(a - e)
    return float(num / den) if den else float(num)
