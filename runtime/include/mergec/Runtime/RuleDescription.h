//===- RuleDescription.h - a compiled rule as data --------------*- C++ -*-===//
// What the runtime must know about a compiled rule besides its code: the phases in order, their
// kinds, parameters, scalar slots, dependencies and entry-point symbols. The JIT derives it from
// the lowered module; the kernel cache and merge executables store it as JSON and load rules
// from it the same way.
#pragma once
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/Executor.h"
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

namespace mergec::rt {

/// The storage dtypes a rule was compiled for: one per input, then the output's.
struct KernelSignature {
  std::vector<DType> inputs;
  DType output = DType::F32;

  /// A name fit for symbols: "BF16_BF16__BF16".
  std::string tag() const;
  /// For people: "BF16,BF16 -> BF16".
  std::string text() const;
  bool operator<(const KernelSignature &other) const {
    return std::tie(inputs, output) < std::tie(other.inputs, other.output);
  }
  bool operator==(const KernelSignature &other) const {
    return inputs == other.inputs && output == other.output;
  }
};

nlohmann::json describeRule(const CompiledRule &rule);
/// The values of `names` from `values` (name, value pairs), in order. Throws RuntimeError for a
/// name without a value.
std::vector<double> bindParams(const std::vector<std::string> &names,
                               const std::vector<std::pair<std::string, double>> &values);
/// The rule `json` describes, with every `fn` null. Throws RuntimeError naming `what` when the
/// JSON is not such a description.
CompiledRule ruleFromDescription(const nlohmann::json &json, const std::string &what);

} // namespace mergec::rt
