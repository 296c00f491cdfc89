//===- KernelABI.h - what compiled phases and the runtime agree on -*- C++ -*-===//
// The scalars array every phase function receives (f64): per-tensor context first, then the
// scalar results of the rule's phases back to back, in phase order (a reduction phase has one
// per reduction it computes, a selection four, a ranking none). Shared by the lowering (which
// loads from it) and the executor (which fills it); both lay it out with firstPhaseSlots.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace mergec::rt::abi {

constexpr int64_t kNameHashSlot = 0; ///< FNV-1a 32-bit hash of the tensor's name
constexpr int64_t kColsSlot = 1;     ///< the length of the last dimension (1 for a 0-d tensor)
constexpr int64_t kNumelSlot = 2;    ///< the number of elements
constexpr int64_t kFirstPhaseSlot = 4;

/// The first slot of each phase given how many scalars each produces; the last entry is the
/// size of the whole array.
inline std::vector<int64_t> firstPhaseSlots(const std::vector<int64_t> &scalarsPerPhase) {
  std::vector<int64_t> first{kFirstPhaseSlot};
  for (int64_t count : scalarsPerPhase)
    first.push_back(first.back() + count);
  return first;
}

/// FNV-1a, 32 bits, over the name's bytes: the tensor key of merge.bernoulli's generator.
constexpr uint32_t nameHash(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

} // namespace mergec::rt::abi
