//===- CUDABackend.h - NVIDIA GPU code generation ---------------*- C++ -*-===//
#pragma once
#include "mergec/Target/TargetBackend.h"

namespace mergec::cuda {

/// The GPU architecture kernels are compiled for unless --gpu-arch says otherwise (Hopper).
inline constexpr const char *kDefaultGpuArch = "sm_90";

/// Whether `arch` names an NVIDIA architecture the NVPTX backend knows (sm_NN or sm_NNa).
bool isKnownGpuArch(llvm::StringRef arch);

/// The loops of a rule -> GPU kernels (merge-convert-kernels-to-gpu) -> NVVM -> PTX through
/// LLVM's NVPTX backend with libdevice for the math functions. One PTX module per rule and
/// signature; its entry points are named like the CPU's packed ones (KernelABI.h), so the
/// runtime finds phase k of a rule by the same symbol on either device.
class CUDABackend : public TargetBackend {
public:
  explicit CUDABackend(std::string arch = kDefaultGpuArch) : arch_(std::move(arch)) {}
  llvm::StringRef name() const override { return "cuda"; }
  llvm::ArrayRef<EmitStage> stages() const override;
  std::string identity() const override;
  std::string emit(mlir::ModuleOp loops, llvm::StringRef stage, const std::string &tag) override;
  llvm::StringRef binaryStage() const override { return "ptx"; }

private:
  std::string arch_;
};

} // namespace mergec::cuda
