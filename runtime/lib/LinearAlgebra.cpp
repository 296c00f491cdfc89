//===- LinearAlgebra.cpp - GEMM, SVD, rsvd, spectral filters (OpenBLAS, LAPACKE, kissfft) ===//
// Implements the C ABI of LinearAlgebra.h. Row-major matrices go to LAPACK without any
// transposition: a row-major m×n matrix X is, byte for byte, the column-major n×m matrix Xᵀ,
// and the thin SVD Xᵀ = U_A·S·Vt_A gives X = Vt_Aᵀ·S·U_Aᵀ, where Vt_A (column-major mn×m) is
// X's u (row-major m×mn) and U_A (column-major n×mn) is X's vt (row-major mn×n). So sgesdd on
// Xᵀ writes u and vt straight into row-major buffers.
#include "mergec/Runtime/LinearAlgebra.h"
#include "LinearAlgebraInternal.h"
#include "mergec/Runtime/Philox.h"
#include "mergec/Runtime/ThreadPool.h"

#include "BlasLibrary.h"
#include "FftLibrary.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <numbers>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

thread_local std::string lastError;

/// A failure inside one call; the ABI boundary turns it into a return code and a message.
class LaFailure : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The operation and shape every message of one call starts with ("svd of a 64x48 matrix").
class Context {
public:
  Context(std::string what) : what_(std::move(what)) {}
  [[noreturn]] void fail(const std::string &message) const {
    throw LaFailure(what_ + ": " + message);
  }

private:
  std::string what_;
};

std::string shape(int64_t m, int64_t n) { return std::to_string(m) + "x" + std::to_string(n); }

constexpr int64_t kMaxLapackInt = std::numeric_limits<lapack_int>::max();

/// a·b, failing instead of wrapping around.
int64_t product(const Context &ctx, int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    ctx.fail("sizes overflow 64 bits");
  return r;
}

/// Checks a matrix dimension: non-negative and within LAPACK's 32-bit integers.
void checkDim(const Context &ctx, const char *name, int64_t v) {
  if (v < 0)
    ctx.fail(std::string(name) + " = " + std::to_string(v) + " is negative");
  if (v > kMaxLapackInt)
    ctx.fail(std::string(name) + " = " + std::to_string(v) +
             " exceeds 2^31 - 1, the largest dimension OpenBLAS/LAPACK take");
}

void checkPointer(const Context &ctx, const char *name, const void *p, int64_t count) {
  if (count > 0 && p == nullptr)
    ctx.fail(std::string(name) + " is a null pointer");
}

/// What the Buffers of this thread hold now and held at most (the tests compare the peak with
/// mergec_la_workspace_bytes), and the test hook's simulated allocation limit.
thread_local int64_t liveBytes = 0;
thread_local int64_t peakBytes = 0;
std::atomic<int64_t> allocationLimit{-1};

/// Uninitialised storage that reports allocation failure as an error of the call instead of
/// throwing std::bad_alloc through the C ABI.
template <typename T> class Buffer {
public:
  Buffer(const Context &ctx, int64_t count, const char *what) {
    bytes_ = product(ctx, count, sizeof(T));
    int64_t limit = allocationLimit.load(std::memory_order_relaxed);
    if (limit < 0 || liveBytes + bytes_ <= limit)
      data_.reset(new (std::nothrow) T[static_cast<size_t>(std::max<int64_t>(count, 1))]);
    if (!data_)
      ctx.fail("cannot allocate " + std::to_string(bytes_) + " bytes for " + what);
    liveBytes += bytes_;
    peakBytes = std::max(peakBytes, liveBytes);
  }
  ~Buffer() { liveBytes -= bytes_; }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  T *get() const { return data_.get(); }

private:
  std::unique_ptr<T[]> data_;
  int64_t bytes_ = 0;
};
using Floats = Buffer<float>;
using Ints = Buffer<lapack_int>;

/// LAPACK returns the optimal workspace size as a float, which rounds large sizes to 24 bits
/// of precision and may round down: take the next float up before converting.
int64_t workspaceFromQuery(const Context &ctx, float query, const char *routine) {
  double size = std::ceil(static_cast<double>(std::nextafter(query, INFINITY)));
  if (!(size <= static_cast<double>(kMaxLapackInt)))
    ctx.fail(std::string(routine) + "'s workspace of " + std::to_string(size) +
             " floats exceeds LAPACK's 32-bit sizes");
  return std::max<int64_t>(1, static_cast<int64_t>(size));
}

void checkInfo(const Context &ctx, lapack_int info, const char *routine) {
  if (info < 0)
    ctx.fail(std::string("internal: ") + routine + " rejected argument " +
             std::to_string(-info));
  if (info > 0)
    ctx.fail(std::string(routine) + " did not converge (info " + std::to_string(info) + ")");
}

void checkFinite(const Context &ctx, const float *x, int64_t m, int64_t n) {
  int64_t count = m * n;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(x[i]))
      ctx.fail("element (" + std::to_string(i / n) + ", " + std::to_string(i % n) + ") is " +
               (std::isnan(x[i]) ? "NaN" : "infinite") +
               ": the decomposition needs finite values");
}

std::atomic<bool> forceGesvd{false};

//===----------------------------------------------------------------------===//
// Threads and determinism. OpenBLAS 0.3.21 does not give the same bits for different thread
// counts (its threaded GEMM driver partitions the work by the thread count; LAPACK inherits
// that through its BLAS calls), nor, with its Haswell kernels (what it picks on this AMD EPYC),
// for the same product computed in row or column blocks of a different size: an element's
// rounding depends on the shape of the call it is in (measured: 3% of the elements of a
// 1024×256×100 product differ between one call and two of 512 rows each). So OpenBLAS always
// runs single-threaded, and the library threads GEMM itself over blocks whose shapes depend
// only on the matrices: C is cut along its longer side into blocks of kBlockSpan rows or
// columns, each one single-threaded sgemm call, and the blocks are shared among the threads.
// One thread or many, the same calls compute every element. LAPACK's factorisations run on
// one thread.
//===----------------------------------------------------------------------===//

std::mutex poolMutex;
unsigned requestedThreads = 0; // 0: one per processor
std::unique_ptr<mergec::rt::ThreadPool> pool;

/// The BLAS and LAPACK functions, loaded on first use (BlasLibrary.h: OpenBLAS made
/// single-threaded there), or the call fails saying why they are missing.
const mergec::rt::BlasLibrary &blas() {
  const mergec::rt::BlasLibrary &lib = mergec::rt::blasLibrary();
  if (!lib.error.empty())
    throw LaFailure(lib.error);
  return lib;
}

mergec::rt::ThreadPool &threadPool() {
  std::lock_guard<std::mutex> lock(poolMutex);
  if (!pool)
    pool = std::make_unique<mergec::rt::ThreadPool>(requestedThreads);
  return *pool;
}

/// GEMMs with fewer multiply-adds (m·n·k) than this run as one call: a block would not repay
/// its thread hand-off and the repacking of the other operand.
constexpr double kMinSplitWork = double(1 << 24);
/// The rows (or columns) of C in one block: a multiple of every kernel's unroll, and enough to
/// amortise packing the shared operand once per block.
constexpr int64_t kBlockSpan = 256;

/// C = alpha·op(A)·op(B) (beta 0) in the layout `order`, in blocks as described above.
void gemm(CBLAS_ORDER order, bool transA, bool transB, int64_t m, int64_t n, int64_t k,
          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
          int64_t ldc) {
  (void)blas();
  bool rowMajor = order == CblasRowMajor;
  bool splitRows = m >= n;
  int64_t span = splitRows ? m : n;
  // How far one row of op(A), one column of op(B) and one row or column of C are apart.
  bool aRowsContiguous = rowMajor != transA, bContiguousColumns = rowMajor == transB;
  int64_t aRow = aRowsContiguous ? lda : 1, bColumn = bContiguousColumns ? ldb : 1;
  int64_t cRow = rowMajor ? ldc : 1, cColumn = rowMajor ? 1 : ldc;
  auto run = [&](int64_t begin, int64_t end) {
    const float *blockA = splitRows ? a + begin * aRow : a;
    const float *blockB = splitRows ? b : b + begin * bColumn;
    blas().cblas_sgemm(order, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                splitRows ? end - begin : m, splitRows ? n : end - begin, k, alpha, blockA, lda,
                blockB, ldb, 0.0f, c + begin * (splitRows ? cRow : cColumn), ldc);
  };
  double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (work < kMinSplitWork || span <= kBlockSpan) {
    run(0, span);
    return;
  }
  int64_t blocks = (span + kBlockSpan - 1) / kBlockSpan;
  threadPool().parallelFor(static_cast<size_t>(blocks), [&](size_t block) {
    int64_t begin = static_cast<int64_t>(block) * kBlockSpan;
    run(begin, std::min(span, begin + kBlockSpan));
  });
}

//===----------------------------------------------------------------------===//
// Workspace queries: what each LAPACK routine wants for a shape.
//===----------------------------------------------------------------------===//

/// sgesdd's workspace (floats) for the column-major rows×cols matrix, jobz 'S'.
int64_t gesddWork(const Context &ctx, int64_t rows, int64_t cols) {
  int64_t mn = std::min(rows, cols);
  float query = 0, dummy = 0;
  lapack_int iwork = 0;
  lapack_int info = blas().LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', rows, cols, &dummy,
                                        std::max<int64_t>(1, rows), &dummy, &dummy,
                                        std::max<int64_t>(1, rows), &dummy,
                                        std::max<int64_t>(1, mn), &query, -1, &iwork);
  checkInfo(ctx, info, "sgesdd (workspace query)");
  return workspaceFromQuery(ctx, query, "sgesdd");
}

/// sgesvd's workspace (floats) for the column-major rows×cols matrix, jobu = jobvt = 'S'.
int64_t gesvdWork(const Context &ctx, int64_t rows, int64_t cols) {
  int64_t mn = std::min(rows, cols);
  float query = 0, dummy = 0;
  lapack_int info = blas().LAPACKE_sgesvd_work(LAPACK_COL_MAJOR, 'S', 'S', rows, cols, &dummy,
                                        std::max<int64_t>(1, rows), &dummy, &dummy,
                                        std::max<int64_t>(1, rows), &dummy,
                                        std::max<int64_t>(1, mn), &query, -1);
  checkInfo(ctx, info, "sgesvd (workspace query)");
  return workspaceFromQuery(ctx, query, "sgesvd");
}

/// The larger of sgeqrf's and sorgqr's workspaces (floats) for a column-major rows×cols
/// matrix, rows >= cols.
int64_t qrWork(const Context &ctx, int64_t rows, int64_t cols) {
  float query = 0, dummy = 0;
  lapack_int info = blas().LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, rows, cols, &dummy,
                                        std::max<int64_t>(1, rows), &dummy, &query, -1);
  checkInfo(ctx, info, "sgeqrf (workspace query)");
  int64_t work = workspaceFromQuery(ctx, query, "sgeqrf");
  info = blas().LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, rows, cols, cols, &dummy,
                             std::max<int64_t>(1, rows), &dummy, &query, -1);
  checkInfo(ctx, info, "sorgqr (workspace query)");
  return std::max(work, workspaceFromQuery(ctx, query, "sorgqr"));
}

//===----------------------------------------------------------------------===//
// The building blocks.
//===----------------------------------------------------------------------===//

/// Peak bytes fullSvd allocates: the copy LAPACK overwrites plus the larger of the two
/// routines' workspaces (sgesvd's only runs after sgesdd's is freed).
int64_t fullSvdBytes(const Context &ctx, int64_t m, int64_t n) {
  int64_t mn = std::min(m, n);
  int64_t gesdd = gesddWork(ctx, n, m) * 4 + 8 * mn * static_cast<int64_t>(sizeof(lapack_int));
  int64_t gesvd = gesvdWork(ctx, n, m) * 4;
  return product(ctx, product(ctx, m, n), 4) + std::max(gesdd, gesvd);
}

/// The full thin SVD of the row-major m×n matrix x (finite, m, n >= 1), mn = min(m, n):
/// u m×mn and vt mn×n row-major, s descending. No sign convention applied.
void fullSvd(const Context &ctx, int64_t m, int64_t n, const float *x, float *u, float *s,
             float *vt) {
  (void)blas();
  int64_t mn = std::min(m, n);
  Floats a(ctx, m * n, "the copy of the matrix LAPACK overwrites");
  std::memcpy(a.get(), x, static_cast<size_t>(m * n) * sizeof(float));
  if (!forceGesvd.load(std::memory_order_relaxed)) {
    int64_t lwork = gesddWork(ctx, n, m);
    Floats work(ctx, lwork, "sgesdd's workspace");
    Ints iwork(ctx, 8 * mn, "sgesdd's integer workspace");
    // Column-major Xᵀ (n×m, lda n): its U (n×mn) is our vt, its Vt (mn×m) our u.
    lapack_int info = blas().LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', n, m, a.get(), n, s, vt, n,
                                          u, mn, work.get(), lwork, iwork.get());
    if (info <= 0) {
      checkInfo(ctx, info, "sgesdd");
      return;
    }
    // info > 0: sbdsdc's divide and conquer did not converge. sgesvd's QR iteration on the
    // bidiagonal is slower but converges where it does not (the usual LAPACK remedy; scipy's
    // lapack_driver='gesvd'). sgesdd has overwritten a: start again from x.
    std::memcpy(a.get(), x, static_cast<size_t>(m * n) * sizeof(float));
  }
  int64_t lwork = gesvdWork(ctx, n, m);
  Floats work(ctx, lwork, "sgesvd's workspace");
  lapack_int info = blas().LAPACKE_sgesvd_work(LAPACK_COL_MAJOR, 'S', 'S', n, m, a.get(), n, s, vt, n,
                                        u, mn, work.get(), lwork);
  checkInfo(ctx, info, "sgesvd (after sgesdd did not converge)");
}

/// Peak bytes truncatedSvd allocates.
int64_t truncatedSvdBytes(const Context &ctx, int64_t m, int64_t n, int64_t k) {
  int64_t mn = std::min(m, n);
  int64_t full = k < mn ? (product(ctx, m + n, mn) + mn) * 4 : 0;
  return full + fullSvdBytes(ctx, m, n);
}

/// The SVD truncated to k (1 <= k <= mn) with the sign convention: u m×k, s k, vt k×n.
void truncatedSvd(const Context &ctx, int64_t m, int64_t n, const float *x, int64_t k, float *u,
                  float *s, float *vt) {
  int64_t mn = std::min(m, n);
  if (k == mn) {
    fullSvd(ctx, m, n, x, u, s, vt);
  } else {
    Floats fu(ctx, m * mn, "the full u"), fs(ctx, mn, "the singular values"),
        fvt(ctx, mn * n, "the full vt");
    fullSvd(ctx, m, n, x, fu.get(), fs.get(), fvt.get());
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(u + r * k, fu.get() + r * mn, static_cast<size_t>(k) * sizeof(float));
    std::memcpy(s, fs.get(), static_cast<size_t>(k) * sizeof(float));
    std::memcpy(vt, fvt.get(), static_cast<size_t>(k * n) * sizeof(float));
  }
  mergec::rt::linalg::fixSigns(m, k, n, u, vt);
}

/// Replaces the column-major rows×cols matrix q (rows >= cols) by the Q of its QR
/// factorisation (orthonormal columns spanning the same space).
void orthonormalize(const Context &ctx, int64_t rows, int64_t cols, float *q, float *tau,
                    float *work, int64_t lwork) {
  (void)blas();
  checkInfo(ctx, blas().LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, rows, cols, q, rows, tau, work, lwork),
            "sgeqrf");
  checkInfo(ctx,
            blas().LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, rows, cols, cols, q, rows, tau, work, lwork),
            "sorgqr");
}

/// Ω (n×l, row-major) standard normal from Philox4x32-10 keyed by (seed, stream), as
/// LinearAlgebra.h documents: block b = e / 4 gives four normals by Box–Muller.
void gaussianSketch(int64_t n, int64_t l, uint32_t seed, uint32_t stream, float *omega) {
  int64_t count = n * l;
  constexpr double kTwoPi = 2 * std::numbers::pi;
  constexpr double kInv2to32 = 1.0 / 4294967296.0;
  for (int64_t block = 0; block * 4 < count; ++block) {
    auto word = mergec::rt::philox4x32_10(
        {static_cast<uint32_t>(block), static_cast<uint32_t>(static_cast<uint64_t>(block) >> 32),
         0, 0},
        seed, stream);
    float z[4];
    for (int pair = 0; pair < 2; ++pair) {
      // (w + 0.5)·2^-32 lies in (0, 1): the logarithm is finite.
      double u1 = (word[2 * pair] + 0.5) * kInv2to32;
      double u2 = (word[2 * pair + 1] + 0.5) * kInv2to32;
      double radius = std::sqrt(-2 * std::log(u1));
      z[2 * pair] = static_cast<float>(radius * std::cos(kTwoPi * u2));
      z[2 * pair + 1] = static_cast<float>(radius * std::sin(kTwoPi * u2));
    }
    for (int j = 0; j < 4 && block * 4 + j < count; ++j)
      omega[block * 4 + j] = z[j];
  }
}

int64_t rsvdBytes(const Context &ctx, int64_t m, int64_t n, int64_t l) {
  // Ω, Y (m×l), Z (n×l), τ, the QR workspace; then the SVD of B (l×n) and its full factors.
  int64_t sketch = (product(ctx, 2 * n + m, l) + l + std::max(qrWork(ctx, m, l), qrWork(ctx, n, l))) * 4;
  int64_t small = (product(ctx, l, l) + l + product(ctx, l, n)) * 4;
  return sketch + small + fullSvdBytes(ctx, l, n);
}

//===----------------------------------------------------------------------===//
// Spectral filters (highpass/lowpass) on kissfft. The 2-D transform is rows then columns:
// each row's FFT (from the real row) into the complex spectrum, then each column's FFT, the
// mask, the inverse column FFT, and each row's inverse FFT, of which the real part is the
// result. The spectrum is row-major, so columns are gathered kColumnBlock at a time into
// contiguous vectors (whole cache lines of each row). Work is cut into one contiguous range of
// rows or column blocks per thread, each with its own transform buffers; no transform depends
// on the cut, so the bytes do not depend on the thread count. kissfft transforms out of place
// (in place it allocates a temporary per call), and its plans are read-only while it runs, so
// threads share them.
//===----------------------------------------------------------------------===//

const mergec::rt::FftLibrary &fft() {
  const mergec::rt::FftLibrary &lib = mergec::rt::fftLibrary();
  if (!lib.error.empty())
    throw LaFailure(lib.error);
  return lib;
}

/// Columns of the spectrum one column task gathers and transforms at once.
constexpr int64_t kColumnBlock = 16;

/// Which frequencies a filter keeps; distances to (⌊m/2⌋, ⌊n/2⌋) of the unshifted spectrum.
struct SpectralMask {
  int64_t m, n;
  double radius;
  bool keepLow;
  bool keeps(int64_t u, int64_t v) const {
    int64_t du = u - m / 2, dv = v - n / 2;
    bool inside = std::sqrt(static_cast<double>(du * du + dv * dv)) <= radius;
    return inside != keepLow;
  }
};

/// The threads the filter's work is cut for (the library's pool).
int64_t spectralThreads() { return static_cast<int64_t>(threadPool().size()); }

/// kissfft's plan size for an FFT of length `length`, from its size query (mem = NULL).
int64_t fftPlanBytes(const Context &ctx, int64_t length) {
  size_t bytes = 0;
  fft().kiss_fft_alloc(static_cast<int>(length), 0, nullptr, &bytes);
  if (bytes == 0)
    ctx.fail("kissfft cannot plan an FFT of length " + std::to_string(length));
  return static_cast<int64_t>(bytes);
}

/// Per thread: a row (n) or a column block with its transform (kColumnBlock + 1 columns of m).
int64_t spectralScratch(const Context &ctx, int64_t m, int64_t n) {
  return std::max(n, product(ctx, kColumnBlock + 1, m));
}

/// Peak bytes mergec_la_spectral_filter allocates: the spectrum, every thread's buffers and the
/// four plans (forward and inverse for rows and columns).
int64_t spectralBytes(const Context &ctx, int64_t m, int64_t n) {
  if (m <= 1 || n == 0)
    return 0;
  int64_t cpx = static_cast<int64_t>(sizeof(kiss_fft_cpx));
  int64_t spectrum = product(ctx, product(ctx, m, n), cpx);
  int64_t scratch = product(ctx, product(ctx, spectralThreads(), spectralScratch(ctx, m, n)), cpx);
  return spectrum + scratch + 2 * (fftPlanBytes(ctx, n) + fftPlanBytes(ctx, m));
}

/// A kissfft plan in a Buffer (so it counts in the workspace like everything else).
class FftPlan {
public:
  FftPlan(const Context &ctx, int64_t length, bool inverse)
      : memory_(ctx, fftPlanBytes(ctx, length), "an FFT plan") {
    size_t bytes = static_cast<size_t>(fftPlanBytes(ctx, length));
    plan_ = fft().kiss_fft_alloc(static_cast<int>(length), inverse ? 1 : 0, memory_.get(), &bytes);
    if (!plan_)
      ctx.fail("kissfft cannot plan an FFT of length " + std::to_string(length));
  }
  void run(const kiss_fft_cpx *in, kiss_fft_cpx *out) const { fft().kiss_fft(plan_, in, out); }

private:
  Buffer<char> memory_;
  kiss_fft_cfg plan_ = nullptr;
};

/// Splits [0, count) into `parts` contiguous ranges and runs body(part, begin, end) for each.
void forRanges(int64_t count, int64_t parts, const std::function<void(int64_t, int64_t, int64_t)> &body) {
  parts = std::max<int64_t>(1, std::min(parts, count));
  threadPool().parallelFor(static_cast<size_t>(parts), [&](size_t part) {
    int64_t p = static_cast<int64_t>(part);
    body(p, count * p / parts, count * (p + 1) / parts);
  });
}

void spectralFilter(const Context &ctx, int64_t m, int64_t n, const float *x,
                    const SpectralMask &mask, float *out) {
  // Columns whose frequencies are all kept need no column transforms (the inverse undoes the
  // forward exactly in exact arithmetic); columns with none kept become zero.
  std::vector<int64_t> partial;
  std::vector<char> none(static_cast<size_t>(n), 0);
  int64_t allKept = 0;
  for (int64_t v = 0; v < n; ++v) {
    int64_t kept = 0;
    for (int64_t u = 0; u < m; ++u)
      kept += mask.keeps(u, v);
    if (kept == m)
      ++allKept;
    else if (kept == 0)
      none[static_cast<size_t>(v)] = 1;
    else
      partial.push_back(v);
  }
  if (allKept == n) {
    std::memcpy(out, x, static_cast<size_t>(m * n) * sizeof(float));
    return;
  }
  if (partial.empty() && allKept == 0) {
    std::fill(out, out + m * n, 0.0f);
    return;
  }
  int64_t threads = spectralThreads(), scratchEach = spectralScratch(ctx, m, n);
  Buffer<kiss_fft_cpx> spectrum(ctx, m * n, "the spectrum");
  Buffer<kiss_fft_cpx> scratch(ctx, product(ctx, threads, scratchEach), "the FFT buffers");
  FftPlan rowForward(ctx, n, false), rowInverse(ctx, n, true);
  FftPlan columnForward(ctx, m, false), columnInverse(ctx, m, true);
  kiss_fft_cpx *s = spectrum.get();

  forRanges(m, threads, [&](int64_t part, int64_t begin, int64_t end) {
    kiss_fft_cpx *row = scratch.get() + part * scratchEach;
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t j = 0; j < n; ++j)
        row[j] = {x[r * n + j], 0.0f};
      rowForward.run(row, s + r * n);
    }
  });
  int64_t blocks = (static_cast<int64_t>(partial.size()) + kColumnBlock - 1) / kColumnBlock;
  // The inverse column FFT is unnormalised (a factor m); the skipped columns have none.
  float columnScale = static_cast<float>(1.0 / static_cast<double>(m));
  forRanges(blocks, threads, [&](int64_t part, int64_t begin, int64_t end) {
    kiss_fft_cpx *gathered = scratch.get() + part * scratchEach;
    kiss_fft_cpx *freq = gathered + kColumnBlock * m;
    for (int64_t blk = begin; blk < end; ++blk) {
      int64_t first = blk * kColumnBlock;
      int64_t count = std::min<int64_t>(kColumnBlock, static_cast<int64_t>(partial.size()) - first);
      for (int64_t u = 0; u < m; ++u)
        for (int64_t k = 0; k < count; ++k)
          gathered[k * m + u] = s[u * n + partial[static_cast<size_t>(first + k)]];
      for (int64_t k = 0; k < count; ++k) {
        int64_t v = partial[static_cast<size_t>(first + k)];
        columnForward.run(gathered + k * m, freq);
        for (int64_t u = 0; u < m; ++u)
          if (!mask.keeps(u, v))
            freq[u] = {0.0f, 0.0f};
        columnInverse.run(freq, gathered + k * m);
      }
      for (int64_t u = 0; u < m; ++u)
        for (int64_t k = 0; k < count; ++k) {
          kiss_fft_cpx c = gathered[k * m + u];
          s[u * n + partial[static_cast<size_t>(first + k)]] = {c.r * columnScale, c.i * columnScale};
        }
    }
  });
  double rowScale = 1.0 / static_cast<double>(n);
  forRanges(m, threads, [&](int64_t part, int64_t begin, int64_t end) {
    kiss_fft_cpx *row = scratch.get() + part * scratchEach;
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t v = 0; v < n; ++v)
        if (none[static_cast<size_t>(v)])
          s[r * n + v] = {0.0f, 0.0f};
      rowInverse.run(s + r * n, row);
      for (int64_t j = 0; j < n; ++j)
        out[r * n + j] = static_cast<float>(static_cast<double>(row[j].r) * rowScale);
    }
  });
}

/// Runs `body` at the ABI boundary: a failure becomes 1 and the thread's message.
template <typename Body> int32_t guarded(Body &&body) {
  try {
    body();
    lastError.clear();
    return 0;
  } catch (const LaFailure &e) {
    lastError = e.what();
  } catch (const std::bad_alloc &) {
    lastError = "linear algebra: out of memory";
  } catch (const std::exception &e) {
    lastError = std::string("linear algebra: internal error: ") + e.what();
  } catch (...) {
    lastError = "linear algebra: internal error";
  }
  return 1;
}

/// The checks svd and rsvd share: dimensions, k's range, pointers, finite input.
void checkDecomposition(const Context &ctx, int64_t m, int64_t n, const float *x, int64_t k) {
  checkDim(ctx, "rows", m);
  checkDim(ctx, "columns", n);
  int64_t mn = std::min(m, n);
  if (mn == 0)
    ctx.fail("an empty matrix has no singular values (rank " + std::to_string(k) +
             " requested)");
  if (k < 1 || k > mn)
    ctx.fail("rank " + std::to_string(k) + " is out of range 1.." + std::to_string(mn));
  product(ctx, product(ctx, m, n), 4);
  checkPointer(ctx, "x", x, m * n);
  checkFinite(ctx, x, m, n);
}

} // namespace

namespace mergec::rt::linalg {

// Flips each pair (column i of u, row i of vt) so that the largest-magnitude entry of u's
// column i (the lowest row on ties) is positive: LAPACK's signs are arbitrary, and a fixed
// choice makes results comparable across versions and thread counts.
void fixSigns(int64_t m, int64_t k, int64_t n, float *u, float *vt) {
  for (int64_t c = 0; c < k; ++c) {
    int64_t best = 0;
    float bestMagnitude = -1;
    for (int64_t r = 0; r < m; ++r)
      if (std::fabs(u[r * k + c]) > bestMagnitude) {
        bestMagnitude = std::fabs(u[r * k + c]);
        best = r;
      }
    if (u[best * k + c] >= 0)
      continue;
    for (int64_t r = 0; r < m; ++r)
      u[r * k + c] = -u[r * k + c];
    for (int64_t j = 0; j < n; ++j)
      vt[c * n + j] = -vt[c * n + j];
  }
}

void setForceGesvdForTesting(bool force) { forceGesvd.store(force); }
void setAllocationLimitForTesting(int64_t bytes) { allocationLimit.store(bytes); }
int64_t takePeakBytesForTesting() { return std::exchange(peakBytes, 0); }
} // namespace mergec::rt::linalg

extern "C" {

const char *mergec_la_error(void) { return lastError.c_str(); }

int32_t mergec_la_gemm(int32_t transA, int32_t transB, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, const float *b, float *c) {
  Context ctx("gemm of " + std::string(transA ? "a^T" : "a") + " (" + shape(m, k) + ") @ " +
              (transB ? "b^T" : "b") + " (" + shape(k, n) + ")");
  return guarded([&] {
    checkDim(ctx, "m", m);
    checkDim(ctx, "n", n);
    checkDim(ctx, "k", k);
    product(ctx, product(ctx, std::max(m, k), std::max(n, k)), 4);
    checkPointer(ctx, "a", a, m * k);
    checkPointer(ctx, "b", b, k * n);
    checkPointer(ctx, "c", c, m * n);
    if (m == 0 || n == 0)
      return;
    if (k == 0) {
      // An empty sum; not left to BLAS, whose quick return may leave c untouched.
      std::fill(c, c + m * n, 0.0f);
      return;
    }
    gemm(CblasRowMajor, transA, transB, m, n, k, alpha, a, transA ? m : k, b, transB ? k : n, c,
         n);
  });
}

int32_t mergec_la_svd(int64_t m, int64_t n, const float *x, int64_t k, float *u, float *s,
                      float *vt) {
  Context ctx("svd of a " + shape(m, n) + " matrix");
  return guarded([&] {
    checkDecomposition(ctx, m, n, x, k);
    checkPointer(ctx, "u", u, 1);
    checkPointer(ctx, "s", s, 1);
    checkPointer(ctx, "vt", vt, 1);
    truncatedSvd(ctx, m, n, x, k, u, s, vt);
  });
}

int32_t mergec_la_rsvd(int64_t m, int64_t n, const float *x, int64_t k, int64_t oversample,
                       int64_t iters, uint32_t seed, uint32_t stream, float *u, float *s,
                       float *vt) {
  Context ctx("rsvd of a " + shape(m, n) + " matrix");
  return guarded([&] {
    checkDecomposition(ctx, m, n, x, k);
    if (oversample < 0)
      ctx.fail("oversample " + std::to_string(oversample) + " is negative");
    if (iters < 0)
      ctx.fail("iters " + std::to_string(iters) + " is negative");
    checkPointer(ctx, "u", u, 1);
    checkPointer(ctx, "s", s, 1);
    checkPointer(ctx, "vt", vt, 1);
    int64_t mn = std::min(m, n);
    int64_t l = std::min(mn, k + std::min(oversample, mn));
    Floats omega(ctx, n * l, "the Gaussian test matrix"), y(ctx, m * l, "the sketch X·Ω"),
        z(ctx, n * l, "the sketch Xᵀ·Q"), tau(ctx, l, "the QR reflectors");
    int64_t lwork = std::max(qrWork(ctx, m, l), qrWork(ctx, n, l));
    Floats work(ctx, lwork, "the QR workspace");
    gaussianSketch(n, l, seed, stream, omega.get());
    // Y = X·Ω as column-major m×l (= row-major l×m, = Ωᵀ·Xᵀ), ready for sgeqrf.
    gemm(CblasColMajor, true, true, m, l, n, 1.0f, x, n, omega.get(), l, y.get(), m);
    orthonormalize(ctx, m, l, y.get(), tau.get(), work.get(), lwork);
    for (int64_t it = 0; it < iters; ++it) {
      // Z = Xᵀ·Q (column-major n×l; row-major X is column-major Xᵀ), re-orthonormalised.
      gemm(CblasColMajor, false, false, n, l, m, 1.0f, x, n, y.get(), m, z.get(), n);
      orthonormalize(ctx, n, l, z.get(), tau.get(), work.get(), lwork);
      // Y = X·Z, re-orthonormalised.
      gemm(CblasColMajor, true, false, m, l, n, 1.0f, x, n, z.get(), n, y.get(), m);
      orthonormalize(ctx, m, l, y.get(), tau.get(), work.get(), lwork);
    }
    // B = Qᵀ·X (l×n row-major) is Xᵀ·Q column-major n×l: the product above, into z.
    gemm(CblasColMajor, false, false, n, l, m, 1.0f, x, n, y.get(), m, z.get(), n);
    Floats ub(ctx, l * l, "the small SVD's u"), sb(ctx, l, "the small SVD's singular values"),
        vtb(ctx, l * n, "the small SVD's vt");
    fullSvd(ctx, l, n, z.get(), ub.get(), sb.get(), vtb.get());
    // u = Q·ub[:, :k]: Q is column-major m×l, i.e. row-major l×m transposed.
    gemm(CblasRowMajor, true, false, m, k, l, 1.0f, y.get(), m, ub.get(), l, u, k);
    std::memcpy(s, sb.get(), static_cast<size_t>(k) * sizeof(float));
    std::memcpy(vt, vtb.get(), static_cast<size_t>(k * n) * sizeof(float));
    mergec::rt::linalg::fixSigns(m, k, n, u, vt);
  });
}

int32_t mergec_la_orth(int64_t m, int64_t n, const float *x, float *out) {
  Context ctx("orth of a " + shape(m, n) + " matrix");
  return guarded([&] {
    checkDim(ctx, "rows", m);
    checkDim(ctx, "columns", n);
    product(ctx, product(ctx, m, n), 4);
    int64_t mn = std::min(m, n);
    if (mn == 0)
      return;
    checkPointer(ctx, "x", x, m * n);
    checkPointer(ctx, "out", out, m * n);
    checkFinite(ctx, x, m, n);
    Floats u(ctx, m * mn, "u"), s(ctx, mn, "the singular values"), vt(ctx, mn * n, "vt");
    fullSvd(ctx, m, n, x, u.get(), s.get(), vt.get());
    gemm(CblasRowMajor, false, false, m, n, mn, 1.0f, u.get(), mn, vt.get(), n, out, n);
  });
}

int32_t mergec_la_lowrank(int64_t m, int64_t n, const float *x, int64_t k, float *out) {
  Context ctx("lowrank of a " + shape(m, n) + " matrix to rank " + std::to_string(k));
  return guarded([&] {
    checkDim(ctx, "rows", m);
    checkDim(ctx, "columns", n);
    product(ctx, product(ctx, m, n), 4);
    if (k < 1)
      ctx.fail("rank " + std::to_string(k) + " is below 1");
    checkPointer(ctx, "x", x, m * n);
    checkPointer(ctx, "out", out, m * n);
    checkFinite(ctx, x, m, n);
    int64_t mn = std::min(m, n);
    if (k >= mn) {
      // Eckart–Young with nothing to drop: x itself, not a round trip through the SVD.
      if (m * n > 0)
        std::memcpy(out, x, static_cast<size_t>(m * n) * sizeof(float));
      return;
    }
    Floats u(ctx, m * k, "u"), s(ctx, k, "the singular values"), vt(ctx, k * n, "vt");
    truncatedSvd(ctx, m, n, x, k, u.get(), s.get(), vt.get());
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c)
        u.get()[r * k + c] *= s.get()[c];
    gemm(CblasRowMajor, false, false, m, n, k, 1.0f, u.get(), k, vt.get(), n, out, n);
  });
}

int32_t mergec_la_spectral_filter(int64_t m, int64_t n, const float *x, float ratio,
                                  int32_t keep_low, float *out) {
  Context ctx(std::string(keep_low ? "lowpass" : "highpass") + " of a " + shape(m, n) +
              " matrix");
  return guarded([&] {
    checkDim(ctx, "rows", m);
    checkDim(ctx, "columns", n);
    product(ctx, product(ctx, m, n), static_cast<int64_t>(sizeof(kiss_fft_cpx)));
    if (!(ratio > 0.0f && ratio <= 1.0f))
      ctx.fail("ratio must be in (0, 1], got " + std::to_string(ratio));
    if (m == 0 || n == 0)
      return;
    checkPointer(ctx, "x", x, m * n);
    checkPointer(ctx, "out", out, m * n);
    if (m == 1) {
      // A 1-D tensor: FR-Merging filters matrices only.
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    }
    SpectralMask mask{m, n, static_cast<double>(ratio) * static_cast<double>(std::min(m, n)),
                      keep_low != 0};
    spectralFilter(ctx, m, n, x, mask, out);
  });
}

void mergec_la_set_threads(int32_t threads) {
  std::lock_guard<std::mutex> lock(poolMutex);
  unsigned wanted = threads > 0 ? static_cast<unsigned>(threads) : 0;
  if (pool && wanted == requestedThreads)
    return;
  requestedThreads = wanted;
  pool.reset(); // the next call starts a pool of the new size
}

int64_t mergec_la_workspace_bytes(int32_t op, int64_t m, int64_t n, int64_t k) {
  Context ctx("workspace of op " + std::to_string(op) + " on a " + shape(m, n) +
              " matrix with k = " + std::to_string(k));
  int64_t bytes = -1;
  int32_t status = guarded([&] {
    checkDim(ctx, "rows", m);
    checkDim(ctx, "columns", n);
    checkDim(ctx, "k", k);
    int64_t mn = std::min(m, n);
    switch (op) {
    case MERGEC_LA_GEMM:
      bytes = 0;
      return;
    case MERGEC_LA_SVD:
    case MERGEC_LA_LOWRANK:
      if (mn == 0 || (op == MERGEC_LA_LOWRANK && k >= mn)) {
        bytes = 0;
        return;
      }
      if (k < 1 || (op == MERGEC_LA_SVD && k > mn))
        ctx.fail("rank " + std::to_string(k) + " is out of range 1.." + std::to_string(mn));
      bytes = truncatedSvdBytes(ctx, m, n, k) +
              (op == MERGEC_LA_LOWRANK ? (product(ctx, m + n, k) + k) * 4 : 0);
      return;
    case MERGEC_LA_RSVD: {
      if (mn == 0 || k < 1)
        ctx.fail("rank " + std::to_string(k) + " is out of range 1.." + std::to_string(mn));
      bytes = rsvdBytes(ctx, m, n, std::min(k, mn));
      return;
    }
    case MERGEC_LA_ORTH:
      bytes = mn == 0 ? 0 : (product(ctx, m + n, mn) + mn) * 4 + fullSvdBytes(ctx, m, n);
      return;
    case MERGEC_LA_SPECTRAL:
      bytes = spectralBytes(ctx, m, n);
      return;
    }
    ctx.fail("unknown operation (0 gemm, 1 svd, 2 rsvd, 3 orth, 4 lowrank, 5 spectral)");
  });
  return status == 0 ? bytes : -1;
}

} // extern "C"
