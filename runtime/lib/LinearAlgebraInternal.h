//===- LinearAlgebraInternal.h - test hooks of LinearAlgebra.cpp -*- C++ -*-===//
// Not part of the ABI: lets the unit tests reach what no small input reliably triggers (the
// path after LAPACK's divide-and-conquer SVD fails to converge, an allocation failure) and
// measure what a call allocates.
#pragma once
#include <cstdint>

namespace mergec::rt::linalg {

/// Flips each pair (column i of u, m×k row-major; row i of vt, k×n) so that the largest-magnitude
/// entry of u's column i (the lowest row on ties) is positive.
void fixSigns(int64_t m, int64_t k, int64_t n, float *u, float *vt);

/// When set, every SVD goes straight to sgesvd, as after an sgesdd convergence failure.
void setForceGesvdForTesting(bool force);

/// When >= 0, an allocation that would take this thread's live workspace above `bytes` fails as
/// if the system had refused it. -1 turns the limit off.
void setAllocationLimitForTesting(int64_t bytes);

/// The most bytes this thread's calls held in workspace at once since the last take; resets it.
int64_t takePeakBytesForTesting();

} // namespace mergec::rt::linalg
