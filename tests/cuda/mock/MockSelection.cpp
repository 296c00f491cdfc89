//===- MockSelection.cpp - SelectionKernels.cu compiled for the CPU -------===//
// The very source GpuSelection launches (runtime/cuda/SelectionKernels.cu), built as host C++
// over CudaEmulation.h; MockCuda.cpp runs its kernels with emu::launch.
#define MERGEC_EMU_DEFINE_SWITCH
#include "CudaEmulation.h"

#include "SelectionKernels.cu"
