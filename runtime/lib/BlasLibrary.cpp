//===- BlasLibrary.cpp - OpenBLAS and LAPACKE, loaded on first use --------===//
#include "BlasLibrary.h"

#include "DynamicLibrary.h"
#include <mutex>

namespace mergec::rt {
namespace {

/// `name` from the process or from `file`.
template <typename Fn>
bool resolve(Fn &fn, const char *name, void *&library, const char *file, std::string &error) {
  return resolveSymbol(fn, name, library, file,
                       "linear algebra needs OpenBLAS and LAPACKE (Debian: libopenblas0, "
                       "liblapacke)",
                       "linear algebra", error);
}

} // namespace

const BlasLibrary &blasLibrary() {
  static BlasLibrary lib;
  static std::once_flag once;
  std::call_once(once, [] {
    void *openblas = nullptr, *lapacke = nullptr;
    const char *blasFile = "libopenblas.so.0", *lapackeFile = "liblapacke.so.3";
    bool ok = resolve(lib.cblas_sgemm, "cblas_sgemm", openblas, blasFile, lib.error) &&
              resolve(lib.openblas_set_num_threads, "openblas_set_num_threads", openblas,
                      blasFile, lib.error) &&
              resolve(lib.LAPACKE_sgesdd_work, "LAPACKE_sgesdd_work", lapacke, lapackeFile,
                      lib.error) &&
              resolve(lib.LAPACKE_sgesvd_work, "LAPACKE_sgesvd_work", lapacke, lapackeFile,
                      lib.error) &&
              resolve(lib.LAPACKE_sgeqrf_work, "LAPACKE_sgeqrf_work", lapacke, lapackeFile,
                      lib.error) &&
              resolve(lib.LAPACKE_sorgqr_work, "LAPACKE_sorgqr_work", lapacke, lapackeFile,
                      lib.error);
    if (ok)
      lib.openblas_set_num_threads(1);
  });
  return lib;
}

} // namespace mergec::rt
