//===- KernelABI.h - what compiled phases and the runtime agree on -*- C++ -*-===//
// The scalars array every phase function receives (f64): per-tensor context first, then four
// slots per phase for the results of the phases before it (reductions use one, selections
// four). Shared by the lowering (which loads from it) and the executor (which fills it).
#pragma once
#include <cstdint>
#include <string_view>

namespace mergec::rt::abi {

constexpr int64_t kNameHashSlot = 0; ///< FNV-1a 32-bit hash of the tensor's name
constexpr int64_t kColsSlot = 1;     ///< the length of the last dimension (1 for a 0-d tensor)
constexpr int64_t kNumelSlot = 2;    ///< the number of elements
constexpr int64_t kFirstPhaseSlot = 4;
constexpr int64_t kSlotsPerPhase = 4;

constexpr int64_t phaseSlot(int64_t phase, int64_t result = 0) {
  return kFirstPhaseSlot + kSlotsPerPhase * phase + result;
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
