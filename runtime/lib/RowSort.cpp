//===- RowSort.cpp - pick the widest vqsort this CPU runs ------------------===//
#include "mergec/Runtime/RowSort.h"

#include <atomic>
#include <string_view>

namespace mergec::rt::rowsort {

#ifdef MERGEC_HAVE_ROWSORT
// RowSortTarget.cpp, once per level.
#define MERGEC_ROWSORT_DECLARE(level)                                                              \
  namespace level {                                                                                \
  void sort(uint64_t *keys, size_t n);                                                             \
  void sort(uint32_t *keys, size_t n);                                                             \
  }
MERGEC_ROWSORT_DECLARE(avx3)
MERGEC_ROWSORT_DECLARE(avx2)
MERGEC_ROWSORT_DECLARE(sse4)
#undef MERGEC_ROWSORT_DECLARE

namespace {
struct Level {
  const char *name;
  void (*sort64)(uint64_t *, size_t);
  void (*sort32)(uint32_t *, size_t);
};

/// The levels this CPU runs, widest first: the features each copy's -march flags assume
/// (x86-64-v4, -v3, -v2, each with AES and CLMUL, which Highway's x86 targets require).
std::vector<Level> supported() {
  __builtin_cpu_init();
  std::vector<Level> levels;
  if (!__builtin_cpu_supports("aes") || !__builtin_cpu_supports("pclmul"))
    return levels;
  if (__builtin_cpu_supports("x86-64-v4"))
    levels.push_back({"AVX3", avx3::sort, avx3::sort});
  if (__builtin_cpu_supports("x86-64-v3"))
    levels.push_back({"AVX2", avx2::sort, avx2::sort});
  if (__builtin_cpu_supports("x86-64-v2"))
    levels.push_back({"SSE4", sse4::sort, sse4::sort});
  return levels;
}

const std::vector<Level> &levels() {
  static const std::vector<Level> all = supported();
  return all;
}

/// The level in use: the widest at start, another (or none) through use().
std::atomic<const Level *> &current() {
  static std::atomic<const Level *> level{levels().empty() ? nullptr : &levels().front()};
  return level;
}

template <typename T> bool sortOn(T *keys, size_t n) {
  const Level *l = current().load(std::memory_order_relaxed);
  if (!l)
    return false;
  if constexpr (sizeof(T) == sizeof(uint64_t))
    l->sort64(keys, n);
  else
    l->sort32(keys, n);
  return true;
}
} // namespace

bool sort(uint64_t *keys, size_t n) { return sortOn(keys, n); }
bool sort(uint32_t *keys, size_t n) { return sortOn(keys, n); }

const char *target() {
  const Level *l = current().load(std::memory_order_relaxed);
  return l ? l->name : nullptr;
}

std::vector<const char *> targets() {
  std::vector<const char *> names;
  for (const Level &l : levels())
    names.push_back(l.name);
  return names;
}

void use(const char *name) {
  const Level *pick = nullptr;
  for (const Level &l : levels())
    if (name && std::string_view(l.name) == name)
      pick = &l;
  current().store(pick, std::memory_order_relaxed);
}

#else // built without Highway's headers: the radix everywhere

bool sort(uint64_t *, size_t) { return false; }
bool sort(uint32_t *, size_t) { return false; }
const char *target() { return nullptr; }
std::vector<const char *> targets() { return {}; }
void use(const char *) {}

#endif

} // namespace mergec::rt::rowsort
