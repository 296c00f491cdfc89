//===- SizeTest.cpp - human byte sizes ------------------------------------===//
#include "mergec/Runtime/Size.h"

#include <gtest/gtest.h>

using mergec::rt::formatSize;
using mergec::rt::parseSize;

TEST(SizeTest, DecimalUnits) {
  EXPECT_EQ(parseSize("5GB"), 5'000'000'000u);
  EXPECT_EQ(parseSize("1.5GB"), 1'500'000'000u);
  EXPECT_EQ(parseSize("10KB"), 10'000u);
  EXPECT_EQ(parseSize("3MB"), 3'000'000u);
  EXPECT_EQ(parseSize("2TB"), 2'000'000'000'000u);
  EXPECT_EQ(parseSize("7B"), 7u);
}

TEST(SizeTest, BinaryUnits) {
  EXPECT_EQ(parseSize("512MiB"), 512ull << 20);
  EXPECT_EQ(parseSize("1KiB"), 1024u);
  EXPECT_EQ(parseSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(parseSize("2TiB"), 2ull << 40);
  EXPECT_EQ(parseSize("0.5KiB"), 512u);
}

TEST(SizeTest, BareNumbersCaseAndSpaces) {
  EXPECT_EQ(parseSize("100"), 100u);
  EXPECT_EQ(parseSize("0"), 0u);
  EXPECT_EQ(parseSize("5gb"), 5'000'000'000u);
  EXPECT_EQ(parseSize("512mib"), 512ull << 20);
  EXPECT_EQ(parseSize("512MIB"), 512ull << 20);
  EXPECT_EQ(parseSize("5 GB"), 5'000'000'000u);
  EXPECT_EQ(parseSize("18446744073709551615"), UINT64_MAX);
  // Fractions of a byte are truncated.
  EXPECT_EQ(parseSize("0.3KiB"), 307u);
}

TEST(SizeTest, RejectsEverythingElse) {
  for (const char *bad : {"",
                          " ",
                          "-5GB",
                          "-1",
                          "+5",
                          "GB",
                          "5XB",
                          "5G",
                          "5 ",
                          " 5",
                          "5GB ",
                          "1.",
                          ".5GB",
                          "1..5",
                          "1.5.5GB",
                          "5 G B",
                          "abc",
                          "0x10",
                          "18446744073709551616",
                          "20000000000GB",
                          "17TiB0",
                          "99999999999999999999999999",
                          "1.1234567890123456789GB"})
    EXPECT_EQ(parseSize(bad), std::nullopt) << "'" << bad << "'";
  EXPECT_EQ(parseSize("16777216TiB"), std::nullopt); // 2^64: one past the largest value
  EXPECT_EQ(parseSize("16777215TiB"), 16777215ull << 40);
}

TEST(SizeTest, FormatsWithBinaryUnits) {
  EXPECT_EQ(formatSize(0), "0 B");
  EXPECT_EQ(formatSize(1023), "1023 B");
  EXPECT_EQ(formatSize(1024), "1.0 KiB");
  EXPECT_EQ(formatSize(1536), "1.5 KiB");
  EXPECT_EQ(formatSize(512ull << 20), "512.0 MiB");
  EXPECT_EQ(formatSize(5'000'000'000ull), "4.7 GiB");
  EXPECT_EQ(formatSize((1ull << 20) - 1), "1.0 MiB"); // not "1024.0 KiB"
  EXPECT_EQ(formatSize(3ull << 40), "3.0 TiB");
  EXPECT_EQ(formatSize(UINT64_MAX), "16.0 EiB");
}
