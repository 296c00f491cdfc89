//===- LinearAlgebraTest.cpp - GEMM, SVD, rsvd, orth, lowrank -------------===//
// Each function of LinearAlgebra.h against values computed here: matrices with a known SVD
// (diagonal, rank one, Q·diag·Qᵀ), reconstruction errors, the sign convention, randomised SVD
// on a decaying spectrum, reproducibility, 1 vs 2 OpenBLAS threads, every error path, and the
// workspace sizes against what the calls really allocate.
#include "LinearAlgebraInternal.h"
#include "mergec/Runtime/LinearAlgebra.h"
#include "mergec/Runtime/Philox.h"
#include <gtest/gtest.h>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace mergec::rt;

namespace {

using Matrix = std::vector<float>;

Matrix randomMatrix(int64_t m, int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  Matrix x(m * n);
  for (float &v : x)
    v = normal(gen);
  return x;
}

/// Row-major a (m×k) · b (k×n) in f64.
std::vector<double> multiply(const Matrix &a, const Matrix &b, int64_t m, int64_t k, int64_t n) {
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j)
        c[i * n + j] += double(a[i * k + p]) * b[p * n + j];
  return c;
}

Matrix transpose(const Matrix &x, int64_t m, int64_t n) {
  Matrix t(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      t[j * m + i] = x[i * n + j];
  return t;
}

/// u·diag(s)·vt in f64.
std::vector<double> reconstruct(const Matrix &u, const Matrix &s, const Matrix &vt, int64_t m,
                                int64_t k, int64_t n) {
  Matrix us = u;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < k; ++c)
      us[i * k + c] *= s[c];
  return multiply(us, vt, m, k, n);
}

double frobenius(const std::vector<double> &x) {
  double sum = 0;
  for (double v : x)
    sum += v * v;
  return std::sqrt(sum);
}

template <typename A, typename B> double relativeError(const A &x, const B &ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (double(x[i]) - double(ref[i])) * (double(x[i]) - double(ref[i]));
    norm += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(diff / norm);
}

/// max |QᵀQ - I| for the m×k row-major q (orthonormal columns).
double orthonormalityError(const Matrix &q, int64_t m, int64_t k) {
  std::vector<double> g = multiply(transpose(q, m, k), q, k, m, k);
  double worst = 0;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      worst = std::max(worst, std::fabs(g[i * k + j] - (i == j ? 1.0 : 0.0)));
  return worst;
}

/// An orthogonal n×n matrix: the product of three Householder reflections.
Matrix orthogonal(int64_t n, unsigned seed) {
  Matrix q(n * n, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    q[i * n + i] = 1;
  for (unsigned r = 0; r < 3; ++r) {
    Matrix v = randomMatrix(n, 1, seed + r);
    double vv = 0;
    for (float e : v)
      vv += double(e) * e;
    Matrix h(n * n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        h[i * n + j] = float((i == j ? 1.0 : 0.0) - 2.0 * v[i] * v[j] / vv);
    std::vector<double> p = multiply(q, h, n, n, n);
    q.assign(p.begin(), p.end());
  }
  return q;
}

struct Svd {
  Matrix u, s, vt;
};

Svd svd(const Matrix &x, int64_t m, int64_t n, int64_t k) {
  Svd r{Matrix(m * k), Matrix(k), Matrix(k * n)};
  EXPECT_EQ(mergec_la_svd(m, n, x.data(), k, r.u.data(), r.s.data(), r.vt.data()), 0)
      << mergec_la_error();
  return r;
}

Svd rsvd(const Matrix &x, int64_t m, int64_t n, int64_t k, int64_t p, int64_t iters,
         uint32_t seed, uint32_t stream = 0) {
  Svd r{Matrix(m * k), Matrix(k), Matrix(k * n)};
  EXPECT_EQ(mergec_la_rsvd(m, n, x.data(), k, p, iters, seed, stream, r.u.data(), r.s.data(),
                           r.vt.data()),
            0)
      << mergec_la_error();
  return r;
}

/// Every column of u has its largest-magnitude entry (lowest row on ties) positive.
void expectSignConvention(const Matrix &u, int64_t m, int64_t k) {
  for (int64_t c = 0; c < k; ++c) {
    int64_t best = 0;
    for (int64_t r = 1; r < m; ++r)
      if (std::fabs(u[r * k + c]) > std::fabs(u[best * k + c]))
        best = r;
    EXPECT_GT(u[best * k + c], 0) << "column " << c;
  }
}

TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  // Random123's kat_vectors for philox4x32 with 10 rounds.
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, 0, 0),
            (PhiloxBlock{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({~0u, ~0u, ~0u, ~0u}, ~0u, ~0u),
            (PhiloxBlock{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822,
                          0x299f31d0),
            (PhiloxBlock{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(LinearAlgebraTest, GemmMatchesTheProductForEveryTransposition) {
  const int64_t m = 7, n = 5, k = 6;
  Matrix a = randomMatrix(m, k, 1), b = randomMatrix(k, n, 2);
  std::vector<double> ref = multiply(a, b, m, k, n);
  for (double &v : ref)
    v *= 0.5;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Matrix sa = ta ? transpose(a, m, k) : a, sb = tb ? transpose(b, k, n) : b;
      Matrix c(m * n, NAN);
      ASSERT_EQ(mergec_la_gemm(ta, tb, m, n, k, 0.5f, sa.data(), sb.data(), c.data()), 0)
          << mergec_la_error();
      for (int64_t i = 0; i < m * n; ++i)
        EXPECT_NEAR(c[i], ref[i], 1e-5) << "transA " << ta << " transB " << tb << " at " << i;
      EXPECT_STREQ(mergec_la_error(), "");
    }
}

TEST(LinearAlgebraTest, GemmInBlocksMatchesTheProduct) {
  // Large enough to be cut into 256-row (tall C) or 256-column (wide C) blocks.
  for (auto [m, n] : {std::pair<int64_t, int64_t>{700, 300}, {300, 700}}) {
    const int64_t k = 200;
    Matrix a = randomMatrix(m, k, 21), b = randomMatrix(k, n, 22);
    std::vector<double> ref = multiply(a, b, m, k, n);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Matrix sa = ta ? transpose(a, m, k) : a, sb = tb ? transpose(b, k, n) : b;
        Matrix c(m * n, NAN);
        ASSERT_EQ(mergec_la_gemm(ta, tb, m, n, k, 1.0f, sa.data(), sb.data(), c.data()), 0);
        EXPECT_LT(relativeError(c, ref), 1e-6) << m << "x" << n << " transA " << ta
                                               << " transB " << tb;
      }
  }
}

TEST(LinearAlgebraTest, RsvdOfALargeExactlyLowRankMatrix) {
  // Rank 20, 2000×1500: rsvd's products with X run in column-major blocks.
  const int64_t m = 2000, n = 1500, r = 20;
  std::vector<double> x64 = multiply(randomMatrix(m, r, 23), randomMatrix(r, n, 24), m, r, n);
  Matrix x(x64.begin(), x64.end());
  Svd result = rsvd(x, m, n, r, 8, 1, 9);
  EXPECT_LT(relativeError(reconstruct(result.u, result.s, result.vt, m, r, n), x), 1e-5);
  EXPECT_LT(orthonormalityError(result.u, m, r), 1e-5);
}

TEST(LinearAlgebraTest, GemmWithAnEmptySumGivesZeros) {
  Matrix c(6, NAN);
  ASSERT_EQ(mergec_la_gemm(0, 0, 2, 3, 0, 1.0f, nullptr, nullptr, c.data()), 0);
  EXPECT_EQ(c, Matrix(6, 0.0f));
  Matrix b(12, 1.0f);
  EXPECT_EQ(mergec_la_gemm(0, 0, 0, 3, 4, 1.0f, nullptr, b.data(), nullptr), 0);
}

TEST(LinearAlgebraTest, SvdOfADiagonalMatrix) {
  // diag(3, -1, 2): singular values 3, 2, 1 with u = the permuted unit vectors (positive by the
  // convention) and the sign of -1 carried by vt.
  Matrix x = {3, 0, 0, 0, -1, 0, 0, 0, 2};
  Svd r = svd(x, 3, 3, 3);
  EXPECT_EQ(r.s, (Matrix{3, 2, 1}));
  EXPECT_EQ(r.u, (Matrix{1, 0, 0, 0, 0, 1, 0, 1, 0}));
  EXPECT_EQ(r.vt, (Matrix{1, 0, 0, 0, 0, 1, 0, -1, 0}));
}

TEST(LinearAlgebraTest, SvdOfARankOneMatrix) {
  // x = 4 · a·bᵀ with unit a, b: s = (4, 0, 0), u_0 = ±a, vt_0 = ±b, signs by the convention.
  Matrix a = {0.6f, -0.8f, 0, 0}, b = {0, 0.28f, 0.96f};
  Matrix x(12);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      x[i * 3 + j] = 4 * a[i] * b[j];
  Svd r = svd(x, 4, 3, 3);
  EXPECT_NEAR(r.s[0], 4, 1e-6);
  EXPECT_LT(r.s[1], 1e-6);
  EXPECT_LT(r.s[2], 1e-6);
  // The largest entry of a is -0.8: the convention flips the pair to u_0 = -a, vt_0 = -b.
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(r.u[i * 3], -a[i], 1e-6);
  for (int j = 0; j < 3; ++j)
    EXPECT_NEAR(r.vt[j], -b[j], 1e-6);
  Svd one = svd(x, 4, 3, 1);
  EXPECT_LT(relativeError(reconstruct(one.u, one.s, one.vt, 4, 1, 3), x), 1e-6);
}

TEST(LinearAlgebraTest, SvdOfASymmetricMatrixWithKnownEigenvectors) {
  // x = Q·diag(5, 4, 3, 2, 1)·Qᵀ: s = (5..1) and u_i = ±Q's column i = vt_i.
  const int64_t n = 5;
  Matrix q = orthogonal(n, 10), d(n * n, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    d[i * n + i] = float(n - i);
  std::vector<double> qd = multiply(q, d, n, n, n);
  std::vector<double> x64 = multiply(Matrix(qd.begin(), qd.end()), transpose(q, n, n), n, n, n);
  Matrix x(x64.begin(), x64.end());
  Svd r = svd(x, n, n, n);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_NEAR(r.s[i], float(n - i), 1e-5);
  for (int64_t c = 0; c < n; ++c) {
    double dot = 0;
    for (int64_t i = 0; i < n; ++i)
      dot += double(r.u[i * n + c]) * q[i * n + c];
    EXPECT_NEAR(std::fabs(dot), 1, 1e-5) << "column " << c;
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(r.vt[c * n + i], r.u[i * n + c], 1e-5);
  }
  expectSignConvention(r.u, n, n);
}

TEST(LinearAlgebraTest, TruncatedSvdIsTheBestApproximation) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{40, 30}, {30, 40}}) {
    int64_t mn = std::min(m, n);
    Matrix x = randomMatrix(m, n, 3);
    Svd full = svd(x, m, n, mn);
    EXPECT_LT(relativeError(reconstruct(full.u, full.s, full.vt, m, mn, n), x), 2e-6);
    EXPECT_LT(orthonormalityError(full.u, m, mn), 2e-6);
    EXPECT_LT(orthonormalityError(transpose(full.vt, mn, n), n, mn), 2e-6);
    for (int64_t i = 1; i < mn; ++i)
      EXPECT_GE(full.s[i - 1], full.s[i]);
    expectSignConvention(full.u, m, mn);
    // Rank 10: the first 10 triplets of the full SVD, and the Eckart–Young error.
    const int64_t k = 10;
    Svd part = svd(x, m, n, k);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t c = 0; c < k; ++c)
        EXPECT_EQ(part.u[i * k + c], full.u[i * mn + c]);
    EXPECT_EQ(part.s, Matrix(full.s.begin(), full.s.begin() + k));
    EXPECT_EQ(part.vt, Matrix(full.vt.begin(), full.vt.begin() + k * n));
    std::vector<double> approx = reconstruct(part.u, part.s, part.vt, m, k, n);
    for (int64_t i = 0; i < m * n; ++i)
      approx[i] -= x[i];
    double tail = 0;
    for (int64_t i = k; i < mn; ++i)
      tail += double(full.s[i]) * full.s[i];
    EXPECT_NEAR(frobenius(approx), std::sqrt(tail), 1e-5 * std::sqrt(tail));
  }
}

TEST(LinearAlgebraTest, SignTiesGoToTheLowestRow) {
  // u (3×2): column 0 ties between rows 0 (-0.5) and 2 (+0.5), column 1 between rows 1 (+0.5)
  // and 2 (-0.5): the lowest row decides, so only column 0 (and vt's row 0) flips.
  Matrix u = {-0.5f, 0.25f, 0.25f, 0.5f, 0.5f, -0.5f}, vt = {1, 2, 3, 4};
  linalg::fixSigns(3, 2, 2, u.data(), vt.data());
  EXPECT_EQ(u, (Matrix{0.5f, 0.25f, -0.25f, 0.5f, -0.5f, -0.5f}));
  EXPECT_EQ(vt, (Matrix{-1, -2, 3, 4}));
}

TEST(LinearAlgebraTest, TheGesvdFallbackAgreesWithGesdd) {
  const int64_t m = 50, n = 35;
  Matrix x = randomMatrix(m, n, 4);
  Svd dc = svd(x, m, n, 20);
  linalg::setForceGesvdForTesting(true);
  Svd qr = svd(x, m, n, 20);
  linalg::setForceGesvdForTesting(false);
  EXPECT_LT(relativeError(qr.s, dc.s), 1e-6);
  EXPECT_LT(relativeError(reconstruct(qr.u, qr.s, qr.vt, m, 20, n),
                          reconstruct(dc.u, dc.s, dc.vt, m, 20, n)),
            1e-5);
  expectSignConvention(qr.u, m, 20);
}

/// A 200×150 matrix with singular values 0.7^i and random singular vectors.
Matrix decayingSpectrum(int64_t m, int64_t n, std::vector<double> &sigma) {
  int64_t mn = std::min(m, n);
  Svd left = svd(randomMatrix(m, mn, 5), m, mn, mn);
  Svd right = svd(randomMatrix(mn, n, 6), mn, n, mn);
  sigma.resize(mn);
  Matrix s(mn);
  for (int64_t i = 0; i < mn; ++i)
    s[i] = float(sigma[i] = std::pow(0.7, double(i)));
  std::vector<double> x = reconstruct(left.u, s, right.vt, m, mn, n);
  return Matrix(x.begin(), x.end());
}

TEST(LinearAlgebraTest, RsvdFindsTheLeadingTripletsOfADecayingSpectrum) {
  const int64_t m = 200, n = 150, k = 10;
  std::vector<double> sigma;
  Matrix x = decayingSpectrum(m, n, sigma);
  Svd exact = svd(x, m, n, k);
  Svd r = rsvd(x, m, n, k, 8, 2, 7);
  for (int64_t i = 0; i < k; ++i)
    EXPECT_NEAR(r.s[i], sigma[i], 1e-4 * sigma[0]) << "singular value " << i;
  EXPECT_LT(orthonormalityError(r.u, m, k), 1e-5);
  EXPECT_LT(relativeError(reconstruct(r.u, r.s, r.vt, m, k, n),
                          reconstruct(exact.u, exact.s, exact.vt, m, k, n)),
            1e-4);
  expectSignConvention(r.u, m, k);
  // Without power iterations and oversampling the subspace is visibly worse: they matter.
  Svd rough = rsvd(x, m, n, k, 0, 0, 7);
  EXPECT_GT(relativeError(rough.s, r.s), 1e-3);
}

TEST(LinearAlgebraTest, RsvdIsReproducibleFromItsSeed) {
  const int64_t m = 60, n = 45, k = 5;
  Matrix x = randomMatrix(m, n, 8);
  Svd a = rsvd(x, m, n, k, 4, 1, 42), b = rsvd(x, m, n, k, 4, 1, 42);
  EXPECT_EQ(std::memcmp(a.u.data(), b.u.data(), a.u.size() * 4), 0);
  EXPECT_EQ(a.s, b.s);
  EXPECT_EQ(std::memcmp(a.vt.data(), b.vt.data(), a.vt.size() * 4), 0);
  Svd otherSeed = rsvd(x, m, n, k, 4, 1, 43), otherStream = rsvd(x, m, n, k, 4, 1, 42, 1);
  EXPECT_NE(a.s, otherSeed.s);
  EXPECT_NE(a.s, otherStream.s);
  // Oversampling past min(m, n) is clipped: l = n = 45 columns, the exact subspace.
  Svd clipped = rsvd(x, m, n, k, 1000, 0, 1);
  Svd exact = svd(x, m, n, k);
  EXPECT_LT(relativeError(clipped.s, exact.s), 1e-5);
}

TEST(LinearAlgebraTest, OrthIsThePolarFactor) {
  const int64_t m = 30, n = 20;
  Matrix x = randomMatrix(m, n, 9);
  Matrix out(m * n);
  ASSERT_EQ(mergec_la_orth(m, n, x.data(), out.data()), 0) << mergec_la_error();
  EXPECT_LT(orthonormalityError(out, m, n), 2e-6);
  Svd r = svd(x, m, n, n);
  std::vector<double> uvt = multiply(r.u, r.vt, m, n, n);
  EXPECT_LT(relativeError(out, uvt), 1e-6);
  // The polar factor is the orthogonal matrix nearest to x: here x = P·H with H symmetric
  // positive definite, so orth(P·H) = P.
  Matrix p = orthogonal(n, 20), h(n * n, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    h[i * n + i] = float(1 + i);
  std::vector<double> ph = multiply(p, h, n, n, n);
  Matrix phf(ph.begin(), ph.end()), polar(n * n);
  ASSERT_EQ(mergec_la_orth(n, n, phf.data(), polar.data()), 0);
  EXPECT_LT(relativeError(polar, p), 1e-5);
  // Rank-deficient (rank one): still u·vt, an orthogonal matrix.
  Matrix rank1(9), q1(9);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      rank1[i * 3 + j] = float((i + 1) * (j + 2));
  ASSERT_EQ(mergec_la_orth(3, 3, rank1.data(), q1.data()), 0);
  EXPECT_LT(orthonormalityError(q1, 3, 3), 2e-6);
  // Empty: nothing to write, no error.
  EXPECT_EQ(mergec_la_orth(0, 5, nullptr, nullptr), 0);
}

TEST(LinearAlgebraTest, LowrankIsTheTruncatedReconstruction) {
  const int64_t m = 25, n = 35, k = 4;
  Matrix x = randomMatrix(m, n, 11);
  Matrix out(m * n);
  ASSERT_EQ(mergec_la_lowrank(m, n, x.data(), k, out.data()), 0) << mergec_la_error();
  Svd r = svd(x, m, n, k);
  EXPECT_LT(relativeError(out, reconstruct(r.u, r.s, r.vt, m, k, n)), 1e-6);
  // k >= min(m, n): x itself, bit for bit.
  for (int64_t full : {m, m + 10}) {
    Matrix copy(m * n);
    ASSERT_EQ(mergec_la_lowrank(m, n, x.data(), full, copy.data()), 0);
    EXPECT_EQ(std::memcmp(copy.data(), x.data(), x.size() * 4), 0);
  }
}

TEST(LinearAlgebraTest, ResultsAreTheSameBytesForOneAndTwoThreads) {
  // Shapes large enough for OpenBLAS to thread its GEMM, GEMV and dot kernels (vectors longer
  // than 10000 elements), tall and wide.
  struct Case {
    int64_t m, n, k;
  };
  auto runAll = [](int32_t threads) {
    mergec_la_set_threads(threads);
    std::vector<Matrix> results;
    for (Case c : {Case{300, 200, 20}, Case{48, 12000, 8}, Case{12000, 40, 8}}) {
      Matrix x = randomMatrix(c.m, c.n, unsigned(c.m + c.n));
      int64_t mn = std::min(c.m, c.n);
      Svd full = svd(x, c.m, c.n, mn);
      Svd r = rsvd(x, c.m, c.n, c.k, 6, 2, 3);
      Matrix orth(c.m * c.n), low(c.m * c.n), gram(c.n <= 300 ? c.n * c.n : 0);
      EXPECT_EQ(mergec_la_orth(c.m, c.n, x.data(), orth.data()), 0) << mergec_la_error();
      EXPECT_EQ(mergec_la_lowrank(c.m, c.n, x.data(), c.k, low.data()), 0) << mergec_la_error();
      if (c.n <= 300)
        EXPECT_EQ(mergec_la_gemm(1, 0, c.n, c.n, c.m, 1.0f, x.data(), x.data(), gram.data()), 0);
      for (Matrix *v : {&full.u, &full.s, &full.vt, &r.u, &r.s, &r.vt, &orth, &low, &gram})
        results.push_back(*v);
    }
    // Large enough for the library to split GEMM across threads: row-major (gemm itself) and
    // column-major (rsvd's products with X).
    Matrix a = randomMatrix(1024, 512, 1), b = randomMatrix(256, 512, 2), c(1024 * 256);
    EXPECT_EQ(mergec_la_gemm(0, 1, 1024, 256, 512, 0.5f, a.data(), b.data(), c.data()), 0);
    results.push_back(c);
    Matrix big = randomMatrix(2000, 1500, 3);
    Svd r = rsvd(big, 2000, 1500, 32, 8, 1, 4);
    for (Matrix *v : {&r.u, &r.s, &r.vt})
      results.push_back(*v);
    return results;
  };
  std::vector<Matrix> one = runAll(1), two = runAll(2);
  mergec_la_set_threads(0);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].size(), two[i].size()) << "result " << i;
    // memcmp of an empty result would pass it null pointers, which it must not get.
    if (!one[i].empty())
      EXPECT_EQ(std::memcmp(one[i].data(), two[i].data(), one[i].size() * 4), 0) << "result " << i;
  }
}

/// The most a call allocated at once, over both SVD drivers: sgesdd's path, and sgesvd's as
/// after a convergence failure. mergec_la_workspace_bytes must be exactly that.
template <typename Call> int64_t peakOverBothDrivers(Call call) {
  linalg::takePeakBytesForTesting();
  call();
  int64_t gesdd = linalg::takePeakBytesForTesting();
  linalg::setForceGesvdForTesting(true);
  call();
  linalg::setForceGesvdForTesting(false);
  return std::max(gesdd, linalg::takePeakBytesForTesting());
}

TEST(LinearAlgebraTest, WorkspaceBytesIsWhatTheCallsAllocate) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{64, 48}, {48, 64}, {1, 30}, {30, 1}}) {
    Matrix x = randomMatrix(m, n, 12), out(m * n);
    int64_t mn = std::min(m, n), k = std::max<int64_t>(1, mn / 2);
    EXPECT_EQ(peakOverBothDrivers([&] { svd(x, m, n, k); }),
              mergec_la_workspace_bytes(MERGEC_LA_SVD, m, n, k))
        << m << "x" << n;
    EXPECT_EQ(peakOverBothDrivers([&] { svd(x, m, n, mn); }),
              mergec_la_workspace_bytes(MERGEC_LA_SVD, m, n, mn));
    EXPECT_EQ(peakOverBothDrivers([&] { rsvd(x, m, n, k, 3, 2, 0); }),
              mergec_la_workspace_bytes(MERGEC_LA_RSVD, m, n, k + 3));
    EXPECT_EQ(peakOverBothDrivers([&] { mergec_la_orth(m, n, x.data(), out.data()); }),
              mergec_la_workspace_bytes(MERGEC_LA_ORTH, m, n, 0));
    EXPECT_EQ(peakOverBothDrivers([&] { mergec_la_lowrank(m, n, x.data(), k, out.data()); }),
              mergec_la_workspace_bytes(MERGEC_LA_LOWRANK, m, n, k));
  }
  EXPECT_EQ(mergec_la_workspace_bytes(MERGEC_LA_GEMM, 100, 100, 100), 0);
  EXPECT_EQ(mergec_la_workspace_bytes(MERGEC_LA_LOWRANK, 10, 20, 10), 0);
  // The big shapes of the benchmark: the matrix copy plus LAPACK's workspace, at least.
  EXPECT_GT(mergec_la_workspace_bytes(MERGEC_LA_SVD, 4096, 14336, 64), int64_t{4096} * 14336 * 4);
}

/// The call fails (status 1, or -1 from mergec_la_workspace_bytes) and the thread's message
/// contains `message`.
#define EXPECT_LA_ERROR(call, message)                                                             \
  do {                                                                                             \
    auto status = (call);                                                                          \
    EXPECT_TRUE(status == 1 || status == -1) << #call;                                             \
    std::string text = mergec_la_error(), expected = (message);                                    \
    EXPECT_NE(text.find(expected), std::string::npos) << text << "\n  lacks: " << expected;         \
  } while (0)

TEST(LinearAlgebraTest, ErrorsNameTheOperationAndTheShapes) {
  Matrix x = randomMatrix(4, 3, 13), u(12), s(3), vt(9), out(12);
  float *U = u.data(), *S = s.data(), *VT = vt.data(), *O = out.data();
  const float *X = x.data();
  EXPECT_LA_ERROR(mergec_la_svd(4, 3, X, 0, U, S, VT),
                  "svd of a 4x3 matrix: rank 0 is out of range 1..3");
  EXPECT_LA_ERROR(mergec_la_svd(4, 3, X, 4, U, S, VT), "rank 4 is out of range 1..3");
  EXPECT_LA_ERROR(mergec_la_svd(0, 3, X, 1, U, S, VT),
                  "svd of a 0x3 matrix: an empty matrix has no singular values");
  EXPECT_LA_ERROR(mergec_la_svd(-1, 3, X, 1, U, S, VT), "svd of a -1x3 matrix: rows = -1 is negative");
  EXPECT_LA_ERROR(mergec_la_svd(int64_t{1} << 31, 3, X, 1, U, S, VT),
                  "rows = 2147483648 exceeds 2^31 - 1");
  EXPECT_LA_ERROR(mergec_la_svd(4, 3, nullptr, 1, U, S, VT), "x is a null pointer");
  EXPECT_LA_ERROR(mergec_la_svd(4, 3, X, 1, U, nullptr, VT), "s is a null pointer");
  EXPECT_LA_ERROR(mergec_la_rsvd(4, 3, X, 2, -1, 1, 0, 0, U, S, VT),
                  "rsvd of a 4x3 matrix: oversample -1 is negative");
  EXPECT_LA_ERROR(mergec_la_rsvd(4, 3, X, 2, 1, -2, 0, 0, U, S, VT), "iters -2 is negative");
  EXPECT_LA_ERROR(mergec_la_rsvd(4, 3, X, 5, 1, 1, 0, 0, U, S, VT), "rank 5 is out of range 1..3");
  EXPECT_LA_ERROR(mergec_la_lowrank(4, 3, X, 0, O), "lowrank of a 4x3 matrix to rank 0: rank 0 is below 1");
  EXPECT_LA_ERROR(mergec_la_orth(4, -3, X, O), "orth of a 4x-3 matrix: columns = -3 is negative");
  EXPECT_LA_ERROR(mergec_la_gemm(0, 0, 2, 2, -1, 1, X, X, O), "gemm of a (2x-1) @ b (-1x2): k = -1 is negative");
  EXPECT_LA_ERROR(mergec_la_gemm(1, 0, 2, 2, 3, 1, X, nullptr, O), "gemm of a^T (2x3) @ b (3x2): b is a null pointer");
  EXPECT_LA_ERROR(mergec_la_workspace_bytes(7, 4, 3, 1), "unknown operation");
  EXPECT_LA_ERROR(mergec_la_workspace_bytes(MERGEC_LA_SVD, 4, 3, 9), "rank 9 is out of range 1..3");
  // Non-finite input: a clear error before LAPACK sees it.
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    Matrix y = x;
    y[7] = bad;
    const char *kind = std::isnan(bad) ? "is NaN" : "is infinite";
    EXPECT_LA_ERROR(mergec_la_svd(4, 3, y.data(), 2, U, S, VT),
                    std::string("svd of a 4x3 matrix: element (2, 1) ") + kind);
    EXPECT_LA_ERROR(mergec_la_rsvd(4, 3, y.data(), 2, 1, 1, 0, 0, U, S, VT), kind);
    EXPECT_LA_ERROR(mergec_la_orth(4, 3, y.data(), O), kind);
    EXPECT_LA_ERROR(mergec_la_lowrank(4, 3, y.data(), 1, O), kind);
    EXPECT_LA_ERROR(mergec_la_lowrank(4, 3, y.data(), 3, O), kind);
  }
  // Allocation failure, simulated: an error naming what could not be allocated.
  linalg::setAllocationLimitForTesting(100);
  EXPECT_LA_ERROR(mergec_la_svd(4, 3, X, 2, U, S, VT),
                  "svd of a 4x3 matrix: cannot allocate");
  EXPECT_LA_ERROR(mergec_la_rsvd(4, 3, X, 2, 1, 1, 0, 0, U, S, VT), "cannot allocate");
  EXPECT_LA_ERROR(mergec_la_orth(4, 3, X, O), "cannot allocate");
  EXPECT_LA_ERROR(mergec_la_lowrank(4, 3, X, 1, O), "cannot allocate");
  linalg::setAllocationLimitForTesting(-1);
  // A success clears the message.
  EXPECT_EQ(mergec_la_svd(4, 3, X, 2, U, S, VT), 0);
  EXPECT_STREQ(mergec_la_error(), "");
}

TEST(LinearAlgebraTest, OneByNAndNByOneMatrices) {
  Matrix row = {3, 0, -4};
  Svd r = svd(row, 1, 3, 1);
  EXPECT_FLOAT_EQ(r.s[0], 5);
  EXPECT_FLOAT_EQ(r.u[0], 1);
  Matrix vt = {0.6f, 0, -0.8f}, u = {-0.6f, 0, 0.8f};
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(r.vt[i], vt[i], 1e-7);
  Svd c = svd(row, 3, 1, 1);
  EXPECT_FLOAT_EQ(c.s[0], 5);
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(c.u[i], u[i], 1e-7);
  EXPECT_FLOAT_EQ(c.vt[0], -1);
}

} // namespace

//===----------------------------------------------------------------------===//
// mergec_la_spectral_filter (highpass/lowpass)
//===----------------------------------------------------------------------===//

Matrix filter(const Matrix &x, int64_t m, int64_t n, float ratio, bool keepLow) {
  Matrix out(m * n, -7.0f);
  EXPECT_EQ(mergec_la_spectral_filter(m, n, x.data(), ratio, keepLow ? 1 : 0, out.data()), 0)
      << mergec_la_error();
  return out;
}

TEST(LinearAlgebraTest, SpectralFilterWorkedExample) {
  // docs/language.md's 4x4 example: at ratio 0.5 the radius is 2 around (2, 2) of the unshifted
  // spectrum, which drops the mean (0, 0) and the four lowest frequencies (0, ±1), (±1, 0). A
  // constant goes with the mean; the checkerboard (-1)^(u+v) is frequency (2, 2), kept.
  Matrix x(16), board(16);
  for (int u = 0; u < 4; ++u)
    for (int v = 0; v < 4; ++v) {
      board[u * 4 + v] = ((u + v) % 2 == 0) ? 1.0f : -1.0f;
      x[u * 4 + v] = 3.0f + board[u * 4 + v];
    }
  Matrix high = filter(x, 4, 4, 0.5f, false), low = filter(x, 4, 4, 0.5f, true);
  for (int i = 0; i < 16; ++i) {
    EXPECT_NEAR(high[i], board[i], 1e-6) << i;
    EXPECT_NEAR(low[i], 3.0f, 1e-6) << i;
  }
  // ratio 0.9: a radius of 3.6, beyond the farthest corner (2.83): every frequency is kept and
  // the all-kept shortcut copies x exactly.
  EXPECT_EQ(filter(x, 4, 4, 0.9f, false), x);
  Matrix zeros(16, 0.0f);
  EXPECT_EQ(filter(x, 4, 4, 0.9f, true), zeros);
}

TEST(LinearAlgebraTest, SpectralFilterKeepsEveryFrequencyOnce) {
  // highpass + lowpass = x on odd and even, square and non-square shapes, a column, and the
  // exact boundary ring (ratio 0.5 of 64: radius 32 = the distance of (0, 32) and (32, 0)).
  struct Case {
    int64_t m, n;
    float ratio;
  };
  for (Case c : {Case{64, 64, 0.5f}, Case{45, 77, 0.3f}, Case{33, 64, 0.7f}, Case{64, 31, 0.2f},
                 Case{40, 1, 0.5f}}) {
    Matrix x = randomMatrix(c.m, c.n, unsigned(c.m * 7 + c.n));
    Matrix high = filter(x, c.m, c.n, c.ratio, false), low = filter(x, c.m, c.n, c.ratio, true);
    double err = 0, norm = 0, part = 0;
    for (int64_t i = 0; i < c.m * c.n; ++i) {
      err += std::pow(double(high[i]) + low[i] - x[i], 2);
      norm += double(x[i]) * x[i];
      part += double(high[i]) * high[i];
    }
    EXPECT_LT(std::sqrt(err / norm), 1e-6) << c.m << "x" << c.n;
    EXPECT_GT(part, 0.0) << c.m << "x" << c.n;
  }
}

TEST(LinearAlgebraTest, SpectralFilterOneRowAndErrors) {
  Matrix row = randomMatrix(1, 9, 5);
  EXPECT_EQ(filter(row, 1, 9, 0.3f, false), row);
  EXPECT_EQ(filter(row, 1, 9, 0.3f, true), row);
  Matrix out(16);
  EXPECT_LA_ERROR(mergec_la_spectral_filter(4, 4, row.data(), 0.0f, 0, out.data()),
                  "highpass of a 4x4 matrix: ratio must be in (0, 1], got 0.000000");
  EXPECT_LA_ERROR(mergec_la_spectral_filter(4, 4, row.data(), 1.5f, 1, out.data()),
                  "lowpass of a 4x4 matrix: ratio must be in (0, 1], got 1.500000");
  EXPECT_LA_ERROR(mergec_la_spectral_filter(4, 4, row.data(), std::nanf(""), 1, out.data()),
                  "ratio must be in (0, 1]");
  EXPECT_LA_ERROR(mergec_la_spectral_filter(-1, 4, row.data(), 0.5f, 0, out.data()),
                  "rows = -1 is negative");
  EXPECT_LA_ERROR(mergec_la_spectral_filter(4, 4, nullptr, 0.5f, 0, out.data()),
                  "x is a null pointer");
  EXPECT_EQ(mergec_la_spectral_filter(0, 4, nullptr, 0.5f, 0, nullptr), 0);
}

TEST(LinearAlgebraTest, SpectralFilterSameBytesForAnyThreadCountAndWorkspace) {
  Matrix x = randomMatrix(96, 200, 21);
  std::vector<Matrix> results;
  for (int32_t threads : {1, 2, 3}) {
    mergec_la_set_threads(threads);
    linalg::takePeakBytesForTesting();
    results.push_back(filter(x, 96, 200, 0.35f, false));
    // A filter that transforms columns allocates exactly what --max-memory counts.
    EXPECT_EQ(linalg::takePeakBytesForTesting(),
              mergec_la_workspace_bytes(MERGEC_LA_SPECTRAL, 96, 200, 0))
        << threads << " threads";
  }
  mergec_la_set_threads(0);
  for (size_t i = 1; i < results.size(); ++i)
    EXPECT_EQ(std::memcmp(results[0].data(), results[i].data(), results[0].size() * 4), 0);
  EXPECT_EQ(mergec_la_workspace_bytes(MERGEC_LA_SPECTRAL, 1, 500, 0), 0);
  // The spectrum alone is 8 bytes per element.
  EXPECT_GT(mergec_la_workspace_bytes(MERGEC_LA_SPECTRAL, 4096, 14336, 0),
            int64_t{4096} * 14336 * 8);
}
