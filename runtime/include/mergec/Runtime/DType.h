//===- DType.h - safetensors element types ----------------------*- C++ -*-===//
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mergec::rt {

/// Every dtype the safetensors format defines. Only F32/F16/BF16 are computed on; the
/// others can be copied through by a rule that is just a model name.
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

/// "F32" -> DType::F32 (the safetensors spelling); nullopt for an unknown name.
std::optional<DType> parseDType(std::string_view name);
/// DType::BF16 -> "BF16".
const char *dtypeName(DType dtype);
/// Bytes per element.
size_t dtypeSize(DType dtype);
/// True for the dtypes a kernel can load and store (F32, F16, BF16).
bool isComputeDType(DType dtype);

/// Element `i` of a tensor stored in a compute dtype (F32, BF16, F16), as f32: exact for each.
/// Other dtypes read as 0 (callers pass compute dtypes only).
float loadAsF32(DType dtype, const uint8_t *data, int64_t i);
/// The inverse for `count` values: f32 into a compute dtype at `out` (F32 as is, BF16 rounded to
/// nearest even as the kernels round, a NaN staying a quiet NaN; F16 by the conversion).
void storeFromF32(DType dtype, const float *values, size_t count, uint8_t *out);

/// How many NaNs and infinities some stored values hold.
struct NonFinite {
  uint64_t nan = 0, inf = 0;
  uint64_t total() const { return nan + inf; }
  NonFinite &operator+=(const NonFinite &o) {
    nan += o.nan;
    inf += o.inf;
    return *this;
  }
};
/// Counts NaNs and infinities among elements [begin, end) of `data`, stored as a compute
/// dtype, from their bits (no conversion): one vectorizable pass.
NonFinite countNonFinite(DType dtype, const void *data, int64_t begin, int64_t end);

} // namespace mergec::rt
