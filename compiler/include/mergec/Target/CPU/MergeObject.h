//===- MergeObject.h - every kernel of a recipe in one object file -*- C++ -*-===//
// `mergec compile --emit=obj` and `--emit=exe`: the kernels of every rule for every requested
// dtype signature, compiled exactly as the JIT compiles them (same lowering, same optimizer, same
// target machine, so merge executables produce the same bytes as `mergec run`), linked into one
// module with the C symbols of KernelABI.h: mergec_kernel_table, mergec_kernel_count and
// mergec_program.
#pragma once
#include "mergec/JIT/KernelJIT.h"
#include "mergec/Runtime/RuleDescription.h"
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mergec::cpu {

/// `program` is completed with each rule's kernels ("kernels": [{rule, inputs, output,
/// description}]) and embedded. With `withDeviceKernels` (--device cuda), each kernel entry
/// also carries "ptx": the GPU's module for those phases (the jit's gpuBackend), so the
/// program runs on either device. `cpu`: compile for that CPU instead of the host
/// (hostTargetMachine). `withGpuEmulation` (with device kernels; tests only): also the GPU
/// kernels built for the host, for the mock CUDA driver (GpuKernelEmulation.h). Returns the
/// object's bytes.
std::string buildMergeObject(KernelJIT &jit,
                             const std::vector<std::vector<rt::KernelSignature>> &signatures,
                             nlohmann::json program, bool withDeviceKernels = false,
                             const std::string &cpu = "", bool withGpuEmulation = false);

} // namespace mergec::cpu
