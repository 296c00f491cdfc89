//===- GpuKernelEmulation.h - CPU builds of the GPU kernels, for tests -*- C++ -*-===//
// The mock CUDA driver (tests/cuda/mock) runs a merge executable's GPU launches on the CPU. By
// default it runs each phase's CPU twin: that checks the runtime's GPU path (allocations,
// streams, launch geometry, arguments) but not the kernels' own code, which only a GPU runs.
// `mergec compile --emit=exe --device cuda --gpu-emulation` also links the GPU kernels built
// for the host CPU from their LLVM IR (the cuda target's nvvm-llvm stage, the IR the NVPTX
// backend compiles), so the mock can run those instead, every thread of a block as a fiber:
// the grid-stride loops, the block trees of the reductions and their barriers, the workgroup
// memory, the thread and block indices, exactly as lowered for the GPU.
//
// What changes on the way to the host: calling conventions (ptx_kernel -> C), workgroup
// (addrspace 3) globals -> ordinary globals (one block runs at a time), and every NVVM
// intrinsic and libdevice function (__nv_*) the kernels call -> a stub that asks the mock
// for its implementation by name on first use (through `mergec_gpu_emulation_resolve`, a
// pointer the mock sets), since what a thread index or a barrier is belongs to the emulator.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
} // namespace llvm

namespace mergec::cpu {

/// The global every stub calls through: `void *(*)(const char *name)`, set by the mock.
inline constexpr const char *kGpuEmulationResolver = "mergec_gpu_emulation_resolve";
/// {kernel symbol, entry} pairs, and their count: what the mock looks up with dlsym.
inline constexpr const char *kGpuEmulationTable = "mergec_gpu_emulation_table";
inline constexpr const char *kGpuEmulationCount = "mergec_gpu_emulation_count";

struct EmulatedKernel {
  std::string symbol;     ///< the kernel's name in the PTX (mergec_<function>__<tag>)
  std::string entry;      ///< `void entry(void **params)`: cuLaunchKernel's kernelParams
};

/// Parses `nvvmIR` (the nvvm-llvm stage of one rule and signature), makes it host code for
/// `tm` (optimized at -O2) and returns the module with one entry per kernel; the kernels
/// themselves are internal, so it links beside the CPU twins of the same names.
std::unique_ptr<llvm::Module> buildGpuEmulation(const std::string &nvvmIR, llvm::LLVMContext &ctx,
                                                llvm::TargetMachine &tm,
                                                std::vector<EmulatedKernel> &kernels);

} // namespace mergec::cpu
