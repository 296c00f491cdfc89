//===- AheadOfTime.h - mergec compile --emit=obj|exe ------------*- C++ -*-===//
#pragma once
#include "mergec/Frontend/Sema.h"
#include "mergec/JIT/KernelJIT.h"
#include "mergec/Runtime/RuleDescription.h"
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mergec {

/// The runtime's view of the program: its models, and its rules as patterns (with the model a
/// rule copies, when `withCopies`).
std::vector<rt::ModelSpec> modelSpecs(const sema::Program &program);
std::vector<rt::RuleSpec> ruleSpecs(const sema::Program &program, bool withCopies = true);

/// The signatures each rule is compiled for: every input and the output in one of bf16, f16,
/// f32; plus, when the models can be read now, each signature their tensors need, with each of
/// the three output dtypes (so `--dtype` works in the executable).
std::vector<std::vector<rt::KernelSignature>>
aheadOfTimeSignatures(const sema::Program &program, KernelJIT &jit, bool verbose);

/// The program description an executable embeds (KernelABI.h's mergec_program), without the
/// kernels (MergeObject adds them).
nlohmann::json aheadOfTimeProgram(const sema::Program &program, KernelJIT &jit,
                                  const rt::RunOptions::Provenance &provenance);

/// `object` (from buildMergeObject) linked with mergec's runtime and main(): the executable's
/// bytes. Runs the C++ compiler driver ($MERGEC_LINKER, else the one mergec was built with).
std::string linkExecutable(const std::string &object, bool verbose);

} // namespace mergec
