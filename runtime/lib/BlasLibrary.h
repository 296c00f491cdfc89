//===- BlasLibrary.h - OpenBLAS and LAPACKE, loaded on first use -*- C++ -*-===//
// The runtime's BLAS and LAPACK (LinearAlgebra.cpp; LoRA deltas) are looked up with dlopen the
// first time a merge needs them, not linked: OpenBLAS starts its worker threads when it is
// loaded, and threads that exist before main() blocks SIGINT/SIGTERM/SIGHUP
// (Interrupts.h) would take those signals and kill mergec without removing its unfinished
// output. Loaded later, from a thread with the signals blocked, its threads inherit the mask.
// Programs that never need them (mergec-cuda-tests on the GPU machine, a merge executable
// without linear algebra) never load them.
#pragma once
#include <cblas.h>
#include <lapacke.h>
#include <string>

namespace mergec::rt {

struct BlasLibrary {
  decltype(&::cblas_sgemm) cblas_sgemm = nullptr;
  decltype(&::openblas_set_num_threads) openblas_set_num_threads = nullptr;
  decltype(&::LAPACKE_sgesdd_work) LAPACKE_sgesdd_work = nullptr;
  decltype(&::LAPACKE_sgesvd_work) LAPACKE_sgesvd_work = nullptr;
  decltype(&::LAPACKE_sgeqrf_work) LAPACKE_sgeqrf_work = nullptr;
  decltype(&::LAPACKE_sorgqr_work) LAPACKE_sorgqr_work = nullptr;
  /// Empty once everything resolved; else why not (which library or symbol, dlerror's text).
  std::string error;
};

/// The process's BLAS and LAPACK: found already loaded in the process (a program linked with
/// them), else dlopen'ed from Debian's libopenblas.so.0 and liblapacke.so.3 (OpenBLAS made
/// single-threaded right away: LinearAlgebra.cpp threads GEMM itself, deterministically). Thread
/// safe; loads once.
const BlasLibrary &blasLibrary();

} // namespace mergec::rt
