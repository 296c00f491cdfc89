//===- DType.cpp - safetensors element types ------------------------------===//
#include "mergec/Runtime/DType.h"

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

} // namespace mergec::rt
