//===- Size.cpp - human byte sizes ----------------------------------------===//
#include "mergec/Runtime/Size.h"

#include <array>
#include <cctype>
#include <cstdio>

namespace mergec::rt {

namespace {
struct Unit {
  const char *name;
  uint64_t multiplier;
};

constexpr uint64_t kKi = 1024, kK = 1000;
constexpr std::array<Unit, 9> kUnits = {{{"b", 1},
                                         {"kb", kK},
                                         {"mb", kK *kK},
                                         {"gb", kK *kK *kK},
                                         {"tb", kK *kK *kK *kK},
                                         {"kib", kKi},
                                         {"mib", kKi *kKi},
                                         {"gib", kKi *kKi *kKi},
                                         {"tib", kKi *kKi *kKi *kKi}}};

std::optional<uint64_t> unitMultiplier(std::string_view unit) {
  if (unit.empty())
    return 1;
  std::string lower;
  for (char c : unit)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Unit &u : kUnits)
    if (lower == u.name)
      return u.multiplier;
  return std::nullopt;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }
} // namespace

std::optional<uint64_t> parseSize(std::string_view text) {
  // Integer and fraction are kept apart as exact integers (whole + frac / 10^fracDigits), so
  // "1.5GiB" is exact and no floating-point rounding can move a size across a boundary.
  // whole <= 2^64, multiplier <= 2^40 and frac < 10^18 < 2^60 keep every product below 2^128.
  __extension__ typedef unsigned __int128 u128; // GCC/Clang builtin; silences -Wpedantic
  size_t i = 0, intDigits = 0, fracDigits = 0;
  u128 whole = 0, frac = 0, scale = 1;
  for (; i < text.size() && isDigit(text[i]); ++i, ++intDigits) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > UINT64_MAX)
      return std::nullopt;
  }
  if (intDigits == 0)
    return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && isDigit(text[i]); ++i, ++fracDigits) {
      if (fracDigits == 18) // beyond any byte-level meaning; bounds the arithmetic
        return std::nullopt;
      frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
      scale *= 10;
    }
    if (fracDigits == 0)
      return std::nullopt;
  }
  size_t numberEnd = i;
  while (i < text.size() && text[i] == ' ')
    ++i;
  if (i > numberEnd && i == text.size()) // a space must be followed by a unit
    return std::nullopt;
  auto multiplier = unitMultiplier(text.substr(i));
  if (!multiplier)
    return std::nullopt;
  // Fractions of a byte are truncated.
  u128 bytes = whole * *multiplier + frac * *multiplier / scale;
  if (bytes > UINT64_MAX)
    return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::string formatSize(uint64_t bytes) {
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024)
    return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  // Move up while the value would print as 1024.0 or more in the current unit.
  while (value >= 1023.95 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  return buf;
}

} // namespace mergec::rt
