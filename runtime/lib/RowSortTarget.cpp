//===- RowSortTarget.cpp - vqsort for one x86 SIMD level -------------------===//
// Compiled once per level (runtime/CMakeLists.txt: MERGEC_ROWSORT_LEVEL names it and the
// -march flags select it), each copy in its own namespace; RowSort.cpp picks the widest the
// CPU runs. Highway's static target only (no libhwy at link or run time), and our own pivot
// generator seed instead of Sorter's (which lives in libhwy_contrib): the keys are distinct,
// so the pivots change how fast, never what the result is. Everything this file defines lies
// in a per-level namespace (Highway's N_AVX3..., ours), so the linker never takes a wider
// level's copy of an inline function for code that runs on any CPU.
#define HWY_COMPILE_ONLY_STATIC 1
#include <hwy/highway.h>
#include <hwy/contrib/sort/traits-inl.h>
#include <hwy/contrib/sort/vqsort-inl.h>

#include <cstddef>
#include <cstdint>

#ifndef MERGEC_ROWSORT_LEVEL
#error "MERGEC_ROWSORT_LEVEL (avx3, avx2, sse4) must name the level this copy is built for"
#endif
#ifndef MERGEC_ROWSORT_HWY_TARGET
#error "MERGEC_ROWSORT_HWY_TARGET must name the Highway target the flags select"
#endif
// The flags and the level must agree: a copy built for less than its name would run, slower,
// where RowSort.cpp expects the wider one.
static_assert(HWY_STATIC_TARGET == MERGEC_ROWSORT_HWY_TARGET,
              "the -march flags do not select the Highway target this copy is named for");

namespace hn = hwy::HWY_NAMESPACE;

namespace mergec::rt::rowsort::MERGEC_ROWSORT_LEVEL {

namespace {
template <typename T> void sortAscending(T *keys, size_t n) {
  if (n < 2)
    return;
  hn::SortTag<T> d;
  hn::detail::SharedTraits<hn::detail::TraitsLane<hn::detail::OrderAscending<T>>> st;
  HWY_ALIGN T buf[hwy::SortConstants::BufNum<T>(HWY_LANES(T))];
  hn::detail::Generator rng(uint64_t{0x9E3779B97F4A7C15u} ^ n);
  hn::detail::Recurse(d, st, keys, keys + n, n, buf, rng, 2 * hwy::CeilLog2(n) + 4);
}
} // namespace

void sort(uint64_t *keys, size_t n) { sortAscending(keys, n); }
void sort(uint32_t *keys, size_t n) { sortAscending(keys, n); }

} // namespace mergec::rt::rowsort::MERGEC_ROWSORT_LEVEL
