//===- Size.h - human byte sizes --------------------------------*- C++ -*-===//
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mergec::rt {

/// "5GB" -> 5e9, "512MiB" -> 512*2^20, "100" -> 100, "1.5GB" -> 1.5e9; units B, KB, MB, GB,
/// TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), case-insensitive, optional
/// space before the unit. nullopt for anything else (negative, empty, unknown unit, overflow).
std::optional<uint64_t> parseSize(std::string_view text);
/// 1536 -> "1.5 KiB" (for progress and messages).
std::string formatSize(uint64_t bytes);

} // namespace mergec::rt
