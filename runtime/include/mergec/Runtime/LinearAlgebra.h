//===- LinearAlgebra.h - the matrix operations compiled kernels call --*- C++ -*-===//
// The C ABI behind the language's matrix operations (`@`, svd, rsvd, orth, lowrank, highpass,
// lowpass): compiled kernels (JIT-linked into mergec, or linked into merge executables with
// MergecRuntime) call these by symbol. Backed by OpenBLAS (GEMM), LAPACKE (SVD, QR) and kissfft
// (FFT); no hand-written factorisation or transform.
//
// Conventions shared by every function:
// - Matrices are dense row-major f32; dimensions are int64_t. Outputs are preallocated by the
//   caller with the sizes stated, and are written only on success (an error may leave them
//   partly written, never read past their sizes).
// - Every function returns 0 on success and nonzero on failure; mergec_la_error() then gives a
//   message naming the operation and the shapes (thread-local, valid until the next call on the
//   same thread; empty after a success). No function throws or aborts.
// - Dimensions above 2^31 - 1 are rejected: Debian's OpenBLAS and LAPACKE use 32-bit integers.
// - The decompositions (svd, rsvd, orth, lowrank) reject non-finite input (LAPACK may loop or
//   return garbage on NaN/inf); gemm propagates NaN/inf as arithmetic does.
// - Singular vectors are made deterministic: each pair (u_i, vt_i) is flipped so that the
//   largest-magnitude entry of u_i (the lowest row on ties) is positive. Reconstructions do not
//   depend on it.
// - Results are the same bytes for any mergec_la_set_threads() value (tested for 1 and 2).
#pragma once
#include <cstdint>

#ifdef __cplusplus
extern "C" {
#endif

/// The message of the calling thread's last failed call ("" after a success).
const char *mergec_la_error(void);

/// c (m×n) = alpha · op(a) · op(b): op(a) is m×k (a stored k×m when transA is nonzero), op(b)
/// is k×n (b stored n×k when transB is nonzero). k = 0 gives zeros.
int32_t mergec_la_gemm(int32_t transA, int32_t transB, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, const float *b, float *c);

/// Thin SVD of x (m×n) truncated to its k largest singular values, 1 <= k <= min(m, n):
/// u m×k, s k (descending), vt k×n. LAPACK sgesdd (divide and conquer); where it reports no
/// convergence, sgesvd (QR iteration) on a fresh copy.
int32_t mergec_la_svd(int64_t m, int64_t n, const float *x, int64_t k, float *u, float *s,
                      float *vt);

/// Randomised SVD of rank k (Halko, Martinsson, Tropp 2011, Algorithm 4.4: subspace iteration
/// with a QR re-orthonormalisation after every product), l = k + p columns with p = oversample
/// clipped so that l <= min(m, n), `iters` power iterations. The test matrix Ω (n×l, row-major)
/// is standard normal: element e = r·l + c takes word e mod 4 of block e / 4 of Philox4x32-10
/// with key (seed, stream) and counter (e/4 low 32 bits, e/4 high 32 bits, 0, 0); words
/// (w0, w1) and (w2, w3) each become two normals by Box–Muller in f64:
/// u1 = (w0 + 0.5)·2^-32, u2 = (w1 + 0.5)·2^-32, z0 = √(-2 ln u1)·cos(2π u2),
/// z1 = √(-2 ln u1)·sin(2π u2), rounded to f32. Outputs as mergec_la_svd.
int32_t mergec_la_rsvd(int64_t m, int64_t n, const float *x, int64_t k, int64_t oversample,
                       int64_t iters, uint32_t seed, uint32_t stream, float *u, float *s,
                       float *vt);

/// The polar factor u·vt of x's thin SVD (m×n); for a rank-deficient x, still u·vt (with the
/// singular vectors LAPACK completes the basis with). An empty x gives an empty result.
int32_t mergec_la_orth(int64_t m, int64_t n, const float *x, float *out);

/// The best rank-k approximation u_k·diag(s_k)·vt_k of x (m×n, Eckart–Young), k >= 1;
/// k >= min(m, n) copies x.
int32_t mergec_la_lowrank(int64_t m, int64_t n, const float *x, int64_t k, float *out);

/// The spectral filters of FR-Merging (Zheng & Wang, "FREE-Merging: Fourier Transform for
/// Efficient Model Merging", ICCV 2025, arXiv 2411.16815): out (m×n) = Re(ifft2(M ∘ fft2(x))),
/// where M keeps the frequency (u, v), 0 <= u < m, 0 <= v < n, when
/// d = √((u − ⌊m/2⌋)² + (v − ⌊n/2⌋)²) <= ratio · min(m, n) (d and the product in f64, ratio as
/// given), or, with keep_low nonzero, when d is larger. Distances are measured on the unshifted
/// spectrum, as the FREE-Merging reference code does: the kept disc is centred on the highest
/// frequency, so the "high pass" removes the lowest frequencies, at the corners. Every frequency
/// is counted once, so keep_low 0 and 1 add up to x. A matrix of one row (a 1-D tensor) is
/// copied unchanged; ratio must be in (0, 1]. The transforms are kissfft's, in f32 (twiddles in
/// f64); a column whose frequencies are all kept (or all removed) skips its column transforms,
/// which is the same in exact arithmetic. Rows and columns are transformed independently, so
/// the result is the same bytes for any thread count. NaN/inf propagate through the transform.
int32_t mergec_la_spectral_filter(int64_t m, int64_t n, const float *x, float ratio,
                                  int32_t keep_low, float *out);

/// OpenBLAS's thread count for every later call (mergec --threads); threads <= 0 means one
/// per processor. Process-wide.
void mergec_la_set_threads(int32_t threads);

/// The operations mergec_la_workspace_bytes() knows.
enum MergecLaOp {
  MERGEC_LA_GEMM = 0,
  MERGEC_LA_SVD = 1,
  MERGEC_LA_RSVD = 2,
  MERGEC_LA_ORTH = 3,
  MERGEC_LA_LOWRANK = 4,
  MERGEC_LA_SPECTRAL = 5
};

/// The peak bytes one call of `op` on an m×n matrix with rank k allocates beyond its inputs
/// and outputs (copies, LAPACK's workspace from its size query), for --max-memory. For gemm,
/// (m, n, k) are its dimensions (0: OpenBLAS packs into its own buffers, allocated once per
/// process); for rsvd, k is k + oversample (clipped to min(m, n) here, as the call does). -1
/// (with a message) for an unknown op or invalid dimensions. For the spectral filter k is
/// ignored: the spectrum (complex f32, m·n), each thread's transform buffers (the thread count
/// of mergec_la_set_threads) and kissfft's plans.
int64_t mergec_la_workspace_bytes(int32_t op, int64_t m, int64_t n, int64_t k);

#ifdef __cplusplus
}
#endif
