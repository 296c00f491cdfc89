//===- FftLibrary.cpp - kissfft, loaded on first use -----------------------===//
#include "FftLibrary.h"

#include <dlfcn.h>
#include <mutex>

namespace mergec::rt {
namespace {

constexpr const char *kFftFile = "libkissfft-float.so.131";

/// `name` from the process (RTLD_DEFAULT) or from kissfft, opened when first needed.
template <typename Fn> bool resolve(Fn &fn, const char *name, void *&library, std::string &error) {
  if (void *f = ::dlsym(RTLD_DEFAULT, name)) {
    fn = reinterpret_cast<Fn>(f);
    return true;
  }
  if (!library)
    library = ::dlopen(kFftFile, RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *why = ::dlerror();
    error = std::string("highpass/lowpass need kissfft (Debian: libkissfft-float131): cannot "
                        "load ") +
            kFftFile + (why ? std::string(": ") + why : std::string());
    return false;
  }
  if (void *f = ::dlsym(library, name)) {
    fn = reinterpret_cast<Fn>(f);
    return true;
  }
  error = std::string("highpass/lowpass: ") + kFftFile + " has no " + name;
  return false;
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
