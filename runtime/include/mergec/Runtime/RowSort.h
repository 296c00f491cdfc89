//===- RowSort.h - SIMD sorts of packed (key, index) items -------*- C++ -*-===//
// Row ranks (Selection.cpp's rankRow) sort each row's (magnitude, index) items. Highway's
// vqsort (Debian's libhwy-dev, Apache-2.0: its headers only, compiled here once per x86
// SIMD level in RowSortTarget.cpp) sorts them 1.5-2x faster than the byte radix on rows of
// differences of bf16 weights; the radix stays for CPUs with none of those levels and for
// builds without the headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mergec::rt::rowsort {

/// Sorts keys[0..n) ascending, where every key is distinct (the low bits an index), so the
/// order is the same whatever the algorithm. False, with nothing done, when this build or
/// this CPU has no SIMD sort.
bool sort(uint64_t *keys, size_t n);
bool sort(uint32_t *keys, size_t n);

/// The Highway target the sorts run on ("AVX3", "AVX2", "SSE4"), or nullptr when they do not.
const char *target();

/// For tests: the targets this build and CPU can run, widest first.
std::vector<const char *> targets();
/// For tests: sorts on `name` (one of targets()) from now on, or (nullptr) on none, so that
/// sort() returns false and the radix runs. The widest is chosen at start.
void use(const char *name);

} // namespace mergec::rt::rowsort
