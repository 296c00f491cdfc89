//===- RunOptionsParser.h - the run options mergec and executables share -*- C++ -*-===//
// `mergec run` and merge executables take the same run options with the same meaning and the
// same messages: this is their one parser. Each front end keeps what is its own (-o, --model
// and --set, which an executable checks against its embedded program, --help, compile's
// options) and hands every other option here.
#pragma once
#include "mergec/Runtime/Executor.h"
#include <optional>
#include <string>
#include <string_view>

namespace mergec::rt {

enum class RunOptionArity { NotARunOption, Flag, Value };

/// Whether `name` ("--threads") is a shared run option, and whether it takes a value.
RunOptionArity runOptionArity(std::string_view name);

/// Applies run option `name` to `options`: `value` is its value (a Value option; nullopt when
/// the command line ended before it) or, for a Flag, a value given as `--flag=value` (an error).
/// Returns the usage error, or "" when it applied.
std::string applyRunOption(std::string_view name, const std::optional<std::string> &value,
                           RunOptions &options);

/// The largest --emit-lora RANK (a rank is clamped to each tensor's min(rows, cols) anyway).
inline constexpr unsigned kMaxEmitLoraRank = 65536;

/// The checks between options, once all are parsed (--sv-epsilon without --emit-lora, ...).
/// Returns the usage error, or "".
std::string checkRunOptions(const RunOptions &options);

} // namespace mergec::rt
