//===- DynamicLibrary.h - a library's function, found or dlopen'ed -*- C++ -*-===//
// The runtime loads third-party libraries on first use (BlasLibrary.h says why): each function
// comes from the process when a program is linked with the library, else from the library file,
// opened once.
#pragma once
#include <dlfcn.h>
#include <string>

namespace mergec::rt {

/// Sets `fn` to `name` from the process, else from `file` (dlopen'ed into `library` when first
/// needed). On failure `error` says why: "<need>: cannot load FILE: ..." (need: what to install
/// for what) or "<user>: FILE has no NAME".
template <typename Fn>
bool resolveSymbol(Fn &fn, const char *name, void *&library, const char *file, const char *need,
                   const char *user, std::string &error) {
  if (void *f = ::dlsym(RTLD_DEFAULT, name)) {
    fn = reinterpret_cast<Fn>(f);
    return true;
  }
  if (!library)
    library = ::dlopen(file, RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    const char *why = ::dlerror();
    error = std::string(need) + ": cannot load " + file +
            (why ? std::string(": ") + why : std::string());
    return false;
  }
  if (void *f = ::dlsym(library, name)) {
    fn = reinterpret_cast<Fn>(f);
    return true;
  }
  error = std::string(user) + ": " + file + " has no " + name;
  return false;
}

} // namespace mergec::rt
