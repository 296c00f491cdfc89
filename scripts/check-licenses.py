#!/usr/bin/env python3
"""Checks that every library mergec and merge executables link has a license that fits
mergec's (Apache-2.0 WITH LLVM-exception, LICENSE).

Usage: scripts/check-licenses.py BINARY...   (e.g. build/bin/mergec and a merge executable)

For each binary: the shared libraries `ldd` resolves, each mapped to its Debian package
(`dpkg -S`), and what is linked in statically (libstdc++ and libgcc into merge executables).
Every package must be in KNOWN below, which records its license and why it fits, reviewed by
hand from /usr/share/doc/PACKAGE/copyright: a dependency nobody reviewed fails the check, so a
new one cannot slip in. Exit status 0 when all fit, 1 otherwise."""
import os
import re
import subprocess
import sys

# package (without the version suffix Debian puts in library package names) -> (license, why)
KNOWN = {
    "libc": ("LGPL-2.1+", "dynamically linked system C library"),
    "libllvm": ("Apache-2.0 WITH LLVM-exception", "the same license as mergec"),
    "libmlir": ("Apache-2.0 WITH LLVM-exception", "the same license as mergec"),
    "libantlr4-runtime": ("BSD-3-Clause", "permissive"),
    "libuuid": ("BSD-3-Clause", "permissive (util-linux's libuuid)"),
    "libstdc++": ("GPL-3+ WITH GCC-exception-3.1",
                  "the GCC Runtime Library Exception allows linking it, statically too, into "
                  "programs under any license"),
    "libgcc-s": ("GPL-3+ WITH GCC-exception-3.1", "as libstdc++"),
    "libgcc": ("GPL-3+ WITH GCC-exception-3.1", "as libstdc++ (static libgcc)"),
    "libffi": ("MIT", "permissive"),
    "libedit": ("BSD-3-Clause", "permissive"),
    "libz3": ("MIT", "permissive"),
    "zlib": ("Zlib", "permissive (zlib1g)"),
    "libzstd": ("BSD-3-Clause OR GPL-2.0", "dual-licensed; used under BSD-3-Clause"),
    "libxml": ("MIT", "permissive (libxml2)"),
    "libtinfo": ("MIT (X11)", "permissive (ncurses)"),
    "libbsd": ("BSD-3-Clause, ISC, public domain", "permissive"),
    "libmd": ("BSD-2-Clause, ISC, public domain", "permissive"),
    "libicu": ("Unicode-DFS-2016 / ICU", "permissive"),
    "liblzma": ("0BSD / public domain", "permissive (xz-utils' liblzma)"),
    "libyaml-cpp": ("MIT (X11)", "permissive (mergekit configurations: mergec import)"),
    # Open MPI and what it loads: mergec only (MERGEC_MPI), never merge executables.
    "libopenmpi": ("BSD-3-Clause", "permissive (Open MPI: mergec run under mpirun)"),
    "libhwloc": ("BSD-3-Clause", "permissive (Open MPI's hwloc)"),
    "libevent-core-2.1": ("BSD-3-Clause", "permissive (Open MPI's libevent)"),
    "libevent-pthreads-2.1": ("BSD-3-Clause", "permissive (Open MPI's libevent)"),
    "libudev": ("LGPL-2.1+", "dynamically linked system library (hwloc's, through Open MPI)"),
    # The runtime's linear algebra (runtime/lib/LinearAlgebra.cpp, LoRA deltas): loaded with
    # dlopen on first use (RUNTIME_LOADED below), by mergec and by merge executables alike.
    "libopenblas0-pthread": ("BSD-3-Clause", "permissive (OpenBLAS; also Debian's libblas.so.3 "
                             "and liblapack.so.3 through the alternatives)"),
    "liblapacke": ("BSD-3-Clause", "permissive (LAPACKE, the C interface of LAPACK)"),
    "libtmglib": ("BSD-3-Clause", "permissive (LAPACK's test matrix library, which liblapacke "
                  "links)"),
    "libgfortran": ("GPL-3+ WITH GCC-exception-3.1",
                    "OpenBLAS's Fortran runtime; the GCC Runtime Library Exception allows "
                    "linking it into programs under any license"),
    "libquadmath": ("LGPL-2.1+", "dynamically linked (libgfortran's __float128 math)"),
    # highpass/lowpass (mergec_la_spectral_filter): loaded with dlopen on first use like OpenBLAS
    # (runtime/lib/FftLibrary.h). /usr/share/doc/libkissfft-float131/copyright: BSD-3-clause.
    "libkissfft-float": ("BSD-3-Clause", "permissive (kissfft, the f32 FFT behind highpass "
                         "and lowpass)"),
}
# Opened with dlopen when a merge first needs them (runtime/lib/BlasLibrary.h, FftLibrary.h),
# never linked: checked with what they link themselves.
RUNTIME_LOADED = ["libopenblas.so.0", "liblapacke.so.3", "libkissfft-float.so.131"]
# Statically linked into merge executables (AheadOfTime.cpp links them with -static-*).
STATIC = {"libstdc++": "libstdc++", "libgcc": "libgcc"}
# Linked into mergec from their static archives when the build has MERGEC_STATIC_LLVM (the
# default where Debian's archives and lld are installed): checked by the package that ships them.
STATIC_LLVM = {"libLLVM": "/usr/lib/llvm-22/lib/libLLVMSupport.a",
               "libMLIR": "/usr/lib/llvm-22/lib/libMLIRIR.a"}
# Build-time only, never linked: recorded for the README.
BUILD_ONLY = {
    "nlohmann-json (header only)": "MIT",
    "Highway (libhwy-dev, header only: vqsort compiled into the runtime's row ranks, "
    "runtime/lib/RowSortTarget.cpp)": "Apache-2.0",
    "googletest (tests only)": "BSD-3-Clause",
    "CUDA toolkit: cuda.h (types only; the driver is loaded at run time, never linked), nvcc "
    "and libdevice (embedded in generated PTX)": "NVIDIA CUDA EULA: libdevice is among its "
    "redistributable components",
}


def package_of(path):
    real = os.path.realpath(path)
    candidates = [real]
    # merged /usr: dpkg knows a file under the path its package installed it at
    if real.startswith("/usr/lib/"):
        candidates.append(real[len("/usr"):])
    elif real.startswith("/lib/"):
        candidates.append("/usr" + real)
    for c in candidates:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout:
            return r.stdout.split(":")[0].strip()
    return None


def base_name(package):
    """libllvm22 -> libllvm, libicu72 -> libicu, libstdc++6 -> libstdc++, libgcc-s1 -> libgcc-s."""
    if package in ("libc6",):
        return "libc"
    return re.sub(r"[-.]?[0-9][0-9.a-z]*$", "", package) or package


def soname_path(soname):
    """Where the dynamic loader finds `soname` (ldconfig's cache), or None."""
    r = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        parts = line.strip().split(" => ")
        if len(parts) == 2 and parts[0].split()[0] == soname and "x86-64" in parts[0]:
            return parts[1]
    return None


def check(binary, include_self=False):
    ok = True
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:
        print("%s: ldd failed: %s" % (binary, r.stderr.strip()))
        return False
    static = (os.path.basename(binary) != "mergec" and not include_self
              and "libstdc++" not in r.stdout)
    print("%s:" % binary)
    seen = set()
    lines = r.stdout.splitlines()
    if include_self:
        lines = ["%s => %s" % (os.path.basename(binary), binary)] + lines
    for line in lines:
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if not m:
            continue
        lib = m.group(1)
        package = package_of(lib)
        if package is None:
            print("  %-40s no Debian package owns it: review its license" % lib)
            ok = False
            continue
        name = base_name(package)
        if name in seen:
            continue
        seen.add(name)
        if name not in KNOWN:
            print("  %-40s %s: license not reviewed (add it to KNOWN after reading "
                  "/usr/share/doc/%s/copyright)" % (os.path.basename(lib), package, package))
            ok = False
            continue
        lic, why = KNOWN[name]
        print("  %-40s %-22s %s: %s" % (os.path.basename(lib), package, lic, why))
    if os.path.basename(binary) == "mergec" and "libLLVM" not in r.stdout:
        for name, archive in STATIC_LLVM.items():
            package = package_of(archive)
            known = {"llvm-22-dev": "libllvm", "libmlir-22-dev": "libmlir"}.get(package or "")
            if known is None:
                print("  %-40s %s: license not reviewed" % (archive, package))
                ok = False
                continue
            lic, why = KNOWN[known]
            print("  %-40s %-22s %s: %s" % ("(static) " + name, package, lic, why))
    if static:
        for name in STATIC:
            lic, why = KNOWN[name]
            print("  %-40s %-22s %s: %s" % ("(static) " + name, "", lic, why))
    return ok


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    ok = all([check(b) for b in sys.argv[1:]])
    print("loaded at run time (dlopen):")
    for soname in RUNTIME_LOADED:
        path = soname_path(soname)
        if path is None:
            print("  %s: not installed here (Debian's libopenblas0 / liblapacke / "
                  "libkissfft-float131)" % soname)
            ok = False
            continue
        ok = check(path, include_self=True) and ok
    print("build-time only:")
    for what, lic in BUILD_ONLY.items():
        print("  %s: %s" % (what, lic))
    print("licenses: %s" % ("every linked library fits Apache-2.0 WITH LLVM-exception" if ok
                            else "FAILED: see above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
