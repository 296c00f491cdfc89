"""Independent numpy references (f64 FFTs) for the spectral builtins and methods.

FR-Merging / FREE-Merging: Zheng & Wang, "FREE-Merging: Fourier Transform for Efficient Model
Merging", ICCV 2025, https://arxiv.org/abs/2411.16815; reference code
https://github.com/Zhengsh123/FREE-Merging (merge_llm/mergekit/mergekit/merge_methods/
fourier_merging.py, generalized_task_arithmetic.py: cal_low_and_high_fft_for_tensor).

highpass(x, ratio): F = fft2(x) (H x W); keep F[u, v] where
sqrt((u - H//2)^2 + (v - W//2)^2) <= ratio * min(H, W), distances on the UNSHIFTED spectrum
(the reference comments out its fftshift), so the kept disc is centred on the highest frequency
and the lowest frequencies (the corners) go; the real part of ifft2. lowpass keeps the rest.
1-D tensors (and 1 x n matrices) unchanged. The reference code returns low + band with
low = d <= min(H, W)//10 and band = low_radius <= d <= high_radius, so the ring d == min(H, W)//10
is counted twice; `highpass_reference_code` reproduces that, to measure the difference."""
import numpy as np

import ref_methods as M

F, D = np.float32, np.float64


def _distance(h, w):
    u = np.arange(h, dtype=np.int64)[:, None]
    v = np.arange(w, dtype=np.int64)[None, :]
    return np.sqrt(((u - h // 2) ** 2 + (v - w // 2) ** 2).astype(D))


def mask(h, w, ratio, keep_low=False):
    """The kept frequencies (bool H x W). ratio is the f32 value the recipe passes (mergec's
    scalars are f32), widened; the radius ratio * min(H, W) and the distances in f64."""
    inside = _distance(h, w) <= D(F(ratio)) * min(h, w)
    return ~inside if keep_low else inside


def _as_matrix(x):
    x = np.asarray(x, dtype=D)
    return x.reshape(-1, x.shape[-1]) if x.ndim >= 2 else x.reshape(1, -1)


def spectral_filter(x, ratio=0.9, keep_low=False):
    """highpass (keep_low False) or lowpass of x (any shape; taken as rows x last dimension)."""
    x = np.asarray(x, dtype=D)
    m = _as_matrix(x)
    if m.shape[0] == 1:
        return x.copy()
    spectrum = np.fft.fft2(m)
    out = np.real(np.fft.ifft2(spectrum * mask(*m.shape, ratio, keep_low)))
    return out.reshape(x.shape)


def highpass(x, ratio=0.9):
    return spectral_filter(x, ratio, False)


def lowpass(x, ratio=0.9):
    return spectral_filter(x, ratio, True)


def highpass_reference_code(x, ratio=0.9):
    """What the FREE-Merging code computes (low + band): the ring at min(H, W)//10 twice."""
    x = np.asarray(x, dtype=D)
    if x.ndim != 2:
        return x.copy()
    h, w = x.shape
    d = _distance(h, w)
    low_radius = min(h, w) // 10
    high_radius = min(h, w) * ratio
    spectrum = np.fft.fft2(x)
    low = np.real(np.fft.ifft2(spectrum * (d <= low_radius)))
    band = np.real(np.fft.ifft2(spectrum * ((d >= low_radius) & (d <= high_radius))))
    return low + band


def rel_error(actual, expected):
    """Relative Frobenius error ||a - e|| / ||e|| in f64 (absolute when e is 0)."""
    a = np.asarray(actual, dtype=D)
    e = np.asarray(expected, dtype=D)
    scale = np.linalg.norm(e)
    diff = np.linalg.norm(a - e)
    return diff / scale if scale > 0 else diff


def fr_merge(tvs, weights=1, lam=1, ratio=0.9):
    """FR-Merging: lam * TIES consensus (sum election, disjoint sum, not normalised, no
    sparsification: the reference's GeneralizedTaskArithmeticMergeFourier with
    consensus_method=sum, sparsification_method=None, default_normalize=False) of the
    high-passed task vectors. The filter in f64, rounded once to f32 (what the matrix phase
    hands the kernel); the combination in f32 in mergec's order (ref_methods.gta_combine)."""
    filtered = [highpass(tv, ratio).astype(F) for tv in tvs]
    return (F(lam) * M.gta_combine(filtered, weights, True, False)).astype(F)


def expert(tv, density=0.01):
    """FREE-Merging's lightweight expert: the density largest-magnitude entries of one task's
    (unfiltered) task vector, ties to the lowest index (mergec's topk_mask)."""
    tv = np.asarray(tv, dtype=F)
    return (tv * M.topk_mask(tv, density)).astype(F)


def free_merge(tvs, task, weights=1, lam=1, ratio=0.9, expert_density=0.01):
    return (fr_merge(tvs, weights, lam, ratio) + expert(tvs[task], expert_density)).astype(F)
