//===- Philox.h - Philox4x32-10 counter-based random numbers ----*- C++ -*-===//
// The host twin of the generator merge.bernoulli inlines into kernels (ElementMath.cpp
// buildBernoulli) and of tests/e2e/lib/ref_methods.py's philox4x32_10: Salmon, Moraes, Dror,
// Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11), Random123's philox4x32_R with
// R = 10. A draw is a pure function of (counter, key), so any element of a random matrix can be
// computed by any thread in any order and the result is reproducible from the seed.
#pragma once
#include <array>
#include <cstdint>

namespace mergec::rt {

using PhiloxBlock = std::array<uint32_t, 4>;

/// The four output words of Philox4x32-10 for `counter` under the key (key0, key1). Round r
/// (0..9) uses the key bumped r times by the Weyl constants (0x9E3779B9, 0xBB67AE85).
constexpr PhiloxBlock philox4x32_10(PhiloxBlock counter, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t{0xD2511F53u} * counter[0];
    uint64_t p1 = uint64_t{0xCD9E8D57u} * counter[2];
    auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    counter = {hi1 ^ counter[1] ^ key0, lo1, hi0 ^ counter[3] ^ key1, lo0};
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  return counter;
}

} // namespace mergec::rt
