//===- FftLibrary.h - kissfft, loaded on first use ---------------*- C++ -*-===//
// The spectral filters (mergec_la_spectral_filter, LinearAlgebra.cpp) use Debian's kissfft
// (BSD-3-Clause, the f32 build libkissfft-float). Like OpenBLAS (BlasLibrary.h) it is looked up
// with dlopen the first time a merge needs it, not linked, so that only a merge that filters a
// spectrum needs it where it runs, and every third-party library the runtime uses is loaded the
// same way (scripts/check-licenses.py checks the loaded ones by name).
#pragma once
#include <kissfft/kiss_fft.h>
#include <string>

namespace mergec::rt {

struct FftLibrary {
  decltype(&::kiss_fft_alloc) kiss_fft_alloc = nullptr;
  decltype(&::kiss_fft) kiss_fft = nullptr;
  /// Empty once everything resolved; else why not (which library or symbol, dlerror's text).
  std::string error;
};

/// The process's kissfft: found already loaded in the process, else dlopen'ed from Debian's
/// libkissfft-float.so.131. Thread safe; loads once.
const FftLibrary &fftLibrary();

} // namespace mergec::rt
