//===- NonFiniteTest.cpp - counting NaN and inf in stored values ----------===//
#include "mergec/Runtime/DType.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using mergec::rt::countNonFinite;
using mergec::rt::DType;

namespace {

std::vector<uint32_t> f32Bits(const std::vector<float> &values) {
  std::vector<uint32_t> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(float));
  return bits;
}

} // namespace

TEST(NonFiniteTest, F32) {
  float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  auto bits = f32Bits({1, -inf, nan, -nan, inf, 3.4e38f, -0.0f, 1e-45f, inf});
  auto n = countNonFinite(DType::F32, bits.data(), 0, static_cast<int64_t>(bits.size()));
  EXPECT_EQ(n.nan, 2u);
  EXPECT_EQ(n.inf, 3u);
  // A range: [2, 5) holds NaN, -NaN, inf.
  n = countNonFinite(DType::F32, bits.data(), 2, 5);
  EXPECT_EQ(n.nan, 2u);
  EXPECT_EQ(n.inf, 1u);
}

TEST(NonFiniteTest, HalfPrecisionBits) {
  // bf16: exponent 0x7F80; f16: 0x7C00. 0x7C00 is a finite bf16, 0x7F80 a NaN in f16.
  std::vector<uint16_t> bits = {0x3F80, 0x7F80, 0xFF80, 0x7FC0, 0xFFFF, 0x7C00, 0x7F7F, 0x8000};
  auto bf = countNonFinite(DType::BF16, bits.data(), 0, static_cast<int64_t>(bits.size()));
  EXPECT_EQ(bf.inf, 2u);
  EXPECT_EQ(bf.nan, 2u);
  auto f16 = countNonFinite(DType::F16, bits.data(), 0, static_cast<int64_t>(bits.size()));
  EXPECT_EQ(f16.inf, 1u); // 0x7C00
  EXPECT_EQ(f16.nan, 5u); // 0x7F80, 0xFF80, 0x7FC0, 0xFFFF, 0x7F7F
}

TEST(NonFiniteTest, LongRunsCrossCounterBlocks) {
  // More non-finite values than a 16-bit counter holds, spread over several blocks.
  std::vector<uint16_t> bits(200000, 0x7F80);
  for (size_t i = 0; i < bits.size(); i += 3)
    bits[i] = 0x7FC1;
  for (size_t i = 1; i < bits.size(); i += 3)
    bits[i] = 0x3F80;
  auto n = countNonFinite(DType::BF16, bits.data(), 0, static_cast<int64_t>(bits.size()));
  EXPECT_EQ(n.nan, 66667u);
  EXPECT_EQ(n.inf, 66666u);
  EXPECT_EQ(countNonFinite(DType::BF16, bits.data(), 7, 7).total(), 0u);
}
