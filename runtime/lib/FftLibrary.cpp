//===- FftLibrary.cpp - kissfft, loaded on first use -----------------------===//
#include "FftLibrary.h"

#include "DynamicLibrary.h"
#include <mutex>

namespace mergec::rt {
namespace {

constexpr const char *kFftFile = "libkissfft-float.so.131";

/// `name` from the process or from kissfft.
template <typename Fn> bool resolve(Fn &fn, const char *name, void *&library, std::string &error) {
  return resolveSymbol(fn, name, library, kFftFile,
                       "highpass/lowpass need kissfft (Debian: libkissfft-float131)",
                       "highpass/lowpass", error);
}

} // namespace

const FftLibrary &fftLibrary() {
  static FftLibrary lib;
  static std::once_flag once;
  std::call_once(once, [] {
    void *library = nullptr;
    (void)(resolve(lib.kiss_fft_alloc, "kiss_fft_alloc", library, lib.error) &&
           resolve(lib.kiss_fft, "kiss_fft", library, lib.error));
  });
  return lib;
}

} // namespace mergec::rt
