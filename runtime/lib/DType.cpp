//===- DType.cpp - safetensors element types ------------------------------===//
#include "mergec/Runtime/DType.h"

#include <cstring>

#include <algorithm>
#include <array>

namespace mergec::rt {

namespace {
struct DTypeEntry {
  DType dtype;
  const char *name;
  size_t size;
};

// One row per enumerator, in declaration order, so dtypeName/dtypeSize can index by value.
constexpr std::array<DTypeEntry, 15> kDTypes = {{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},
    {DType::U16, "U16", 2},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
}};

constexpr bool tableMatchesEnum() {
  for (size_t i = 0; i < kDTypes.size(); ++i)
    if (static_cast<size_t>(kDTypes[i].dtype) != i)
      return false;
  return true;
}
static_assert(tableMatchesEnum(), "kDTypes must follow the DType enumerator order");

const DTypeEntry &entry(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }
} // namespace

std::optional<DType> parseDType(std::string_view name) {
  for (const auto &e : kDTypes)
    if (name == e.name)
      return e.dtype;
  return std::nullopt;
}

const char *dtypeName(DType dtype) { return entry(dtype).name; }

size_t dtypeSize(DType dtype) { return entry(dtype).size; }

bool isComputeDType(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

namespace {
/// Values of type T whose exponent bits (`exponent`, all ones) mark them non-finite: the
/// magnitude bits equal to it are infinities, above it NaNs. The counters have the values'
/// width and blocks fit them, so the compares accumulate lane by lane without widening; a
/// block is split into NaN and inf only when it has any (rarely), so the usual cost is one
/// compare per element.
/// Inlined into the per-width entry points below, so it is built for each of their targets;
/// plain counters out (clang does not emit code, NonFinite's constructor here, that only
/// target_clones functions use).
template <typename T>
[[gnu::always_inline]] inline void countBits(const T *x, int64_t n, T exponent, uint64_t *nan,
                                             uint64_t *infinities) {
  constexpr int64_t kBlock = 1 << 15;
  const T magnitude = static_cast<T>(~(T(1) << (sizeof(T) * 8 - 1)));
  uint64_t nans = 0, infs = 0;
  for (int64_t start = 0; start < n; start += kBlock) {
    const T *b = x + start;
    int64_t len = std::min(kBlock, n - start);
    T any = 0;
    for (int64_t i = 0; i < len; ++i)
      any += (b[i] & magnitude) >= exponent;
    if (!any)
      continue;
    T inf = 0;
    for (int64_t i = 0; i < len; ++i)
      inf += (b[i] & magnitude) == exponent;
    infs += inf;
    nans += static_cast<T>(any - inf);
  }
  *nan = nans;
  *infinities = infs;
}

// Every output chunk is counted: built for AVX2 too (the runtime's baseline is SSE2), twice
// the lanes a compare.
__attribute__((target_clones("avx2", "default"))) void
countBits32(const uint32_t *x, int64_t n, uint64_t *nan, uint64_t *inf) {
  countBits(x, n, uint32_t{0x7F800000}, nan, inf);
}
__attribute__((target_clones("avx2", "default"))) void
countBits16(const uint16_t *x, int64_t n, uint16_t exponent, uint64_t *nan, uint64_t *inf) {
  countBits(x, n, exponent, nan, inf);
}
} // namespace

NonFinite countNonFinite(DType dtype, const void *data, int64_t begin, int64_t end) {
  int64_t n = end - begin;
  NonFinite total;
  switch (dtype) {
  case DType::F32:
    countBits32(static_cast<const uint32_t *>(data) + begin, n, &total.nan, &total.inf);
    break;
  case DType::BF16:
    countBits16(static_cast<const uint16_t *>(data) + begin, n, uint16_t{0x7F80}, &total.nan,
                &total.inf);
    break;
  case DType::F16:
    countBits16(static_cast<const uint16_t *>(data) + begin, n, uint16_t{0x7C00}, &total.nan,
                &total.inf);
    break;
  default:
    break;
  }
  return total;
}

float loadAsF32(DType dtype, const uint8_t *data, int64_t i) {
  switch (dtype) {
  case DType::F32: {
    float f;
    std::memcpy(&f, data + 4 * i, 4);
    return f;
  }
  case DType::BF16: {
    uint16_t h;
    std::memcpy(&h, data + 2 * i, 2);
    uint32_t bits = static_cast<uint32_t>(h) << 16; // bf16 is the top half of an f32
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  case DType::F16: {
    _Float16 h;
    std::memcpy(&h, data + 2 * i, 2);
    return static_cast<float>(h);
  }
  default:
    return 0;
  }
}

namespace {
/// f32 to bf16, rounding to nearest even as the kernels do; a NaN stays a (quiet) NaN.
uint16_t toBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
} // namespace

void storeFromF32(DType dtype, const float *values, size_t count, uint8_t *out) {
  if (dtype == DType::F32) {
    std::memcpy(out, values, count * sizeof(float));
  } else if (dtype == DType::BF16) {
    for (size_t i = 0; i < count; ++i) {
      uint16_t h = toBf16(values[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  } else {
    for (size_t i = 0; i < count; ++i) {
      _Float16 h = static_cast<_Float16>(values[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

} // namespace mergec::rt
