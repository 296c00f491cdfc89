//===- NumberTest.cpp - the recipe grammar's numbers ----------------------===//
#include "mergec/Runtime/Number.h"

#include <gtest/gtest.h>

#include <cmath>

using mergec::rt::parseNumber;

TEST(NumberTest, TheGrammarsForms) {
  EXPECT_EQ(parseNumber("0.5"), 0.5);
  EXPECT_EQ(parseNumber(".5"), 0.5);
  EXPECT_EQ(parseNumber("5."), 5.0);
  EXPECT_EQ(parseNumber("-2e-3"), -2e-3);
  EXPECT_EQ(parseNumber("2E+1"), 20.0);
  EXPECT_EQ(parseNumber("007"), 7.0);
  EXPECT_EQ(parseNumber("0.1"), 0.1); // the same double as the literal
}

TEST(NumberTest, OutOfRange) {
  auto big = parseNumber("1e999");
  ASSERT_TRUE(big);
  EXPECT_TRUE(std::isinf(*big)); // callers say "out of range"
  EXPECT_EQ(parseNumber("1e-400"), 0.0);
  auto subnormal = parseNumber("1e-310");
  ASSERT_TRUE(subnormal);
  EXPECT_GT(*subnormal, 0.0);
  EXPECT_LT(*subnormal, 1e-307);
}

TEST(NumberTest, RejectsEverythingElse) {
  for (const char *bad : {"", "-", ".", "-.", "e5", "1e", "1e+", "+1", "--1", " 1", "1 ", "0.5 ",
                          "0x10", "inf", "-inf", "nan", "infinity", "1,5", "1.5.2", "1e5.0", "1f",
                          "\t1", "1\n", "١"})
    EXPECT_FALSE(parseNumber(bad)) << "'" << bad << "'";
}
