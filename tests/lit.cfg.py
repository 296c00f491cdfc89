# lit configuration for mergec: .merge / .mlir / .test files, run from the build tree.
import os
import shutil

import lit.formats

config.name = "mergec"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".merge", ".mlir", ".test"]
config.excludes = ["Inputs", "lib", "unit", "jit", "fuzz", "gpu", "cuda", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.mergec_obj_root, "tests")
config.environment["FILECHECK_OPTS"] = "--enable-var-scope"
# The independent references use Debian's numpy, which lives with the system interpreter.
python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
e2e = os.path.join(config.test_source_root, "e2e")
config.environment["PYTHONPATH"] = os.path.join(e2e, "lib")
config.environment["MERGEC"] = os.path.join(config.mergec_tools_dir, "mergec")
# The tests' kernel cache lives in the build tree, never in the user's ~/.cache.
config.environment["MERGEC_CACHE_DIR"] = os.path.join(config.test_exec_root, "kernel-cache")

config.substitutions.append(("%mergec", os.path.join(config.mergec_tools_dir, "mergec")))
config.substitutions.append(("%merge-opt", os.path.join(config.mergec_tools_dir, "merge-opt")))
config.substitutions.append(("%python", python))
config.substitutions.append(("%e2e", e2e))
config.substitutions.append(("%stdlib", os.path.join(config.mergec_src_root, "stdlib")))
# mergec, merge-opt, FileCheck, not, ... by their plain names.
config.environment["PATH"] = os.pathsep.join(
    [config.mergec_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])

# The CUDA target: `cuda-target` when mergec was built with it (PTX generation needs no GPU);
# `cuda` when this machine can also run kernels (a driver that loads and a device). GPU
# execution tests say REQUIRES: cuda and show as UNSUPPORTED, with this reason, elsewhere.
if getattr(config, "mergec_cuda", False):
    config.available_features.add("cuda-target")
    import ctypes
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0:
            config.available_features.add("cuda")
        else:
            lit_config.note("GPU execution tests skipped: no CUDA device")
    except OSError as e:
        lit_config.note("GPU execution tests skipped: no CUDA driver (%s)" % e)

# ptxas (the toolkit's; the CUDA build needs it for SelectionKernels.cu): `%ptxas` assembles the
# compiler's PTX for sm_90 as the driver would, so a kernel over a resource limit of the device
# (registers, 48 KiB of static shared memory) fails here and not first on a GPU.
ptxas = getattr(config, "mergec_ptxas", "")
if ptxas and not ptxas.endswith("NOTFOUND") and os.path.exists(ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))

# The mock CUDA driver (tests/cuda/mock, built with MERGEC_CUDA): `%mock-cuda CMD` runs CMD with
# the mock's libcuda.so.1 first on LD_LIBRARY_PATH, so the CUDA device's host code runs on a
# machine without a GPU (the cuda-mock-*.test files; UNSUPPORTED where a real GPU is there).
if getattr(config, "mergec_cuda", False):
    mock_dir = getattr(config, "mergec_mock_cuda_dir", os.path.join(config.mergec_obj_root, "mock-cuda"))
    config.substitutions.append(("%mock-cuda-dir", mock_dir))
    config.substitutions.append(("%mergec-cuda-tests", os.path.join(config.mergec_tools_dir, "mergec-cuda-tests")))
    config.substitutions.append(("%mock-cuda", "env LD_LIBRARY_PATH=%s MERGEC_MOCK_CUDA=1" % mock_dir))
    config.substitutions.append(("%gpu-tests", os.path.join(config.test_source_root, "gpu")))

# `mpi`: mergec was built with MERGEC_MPI and Open MPI's mpirun is here (tests/e2e/mpi.test runs
# 2 and 3 processes on this machine). Elsewhere those tests show as UNSUPPORTED, with this reason.
if not getattr(config, "mergec_mpi", False):
    lit_config.note("MPI tests skipped: mergec was built without MPI (MERGEC_MPI=OFF; install libopenmpi-dev)")
elif not shutil.which("mpirun"):
    lit_config.note("MPI tests skipped: no mpirun on PATH (install openmpi-bin)")
else:
    config.available_features.add("mpi")
    config.substitutions.append(("%mpirun", shutil.which("mpirun")))

# `transformers`: a Python environment with transformers and torch (the mergekit parity venv,
# tests/parity/setup_venv.sh: $PARITY_VENV, else .venv-parity in this checkout or, from a git
# worktree, in the main checkout). `%hf-python` runs it. Elsewhere the tests that load outputs
# in transformers show as UNSUPPORTED, with this reason.
def _parity_venvs():
    if os.environ.get("PARITY_VENV"):
        yield os.environ["PARITY_VENV"]
    yield os.path.join(config.mergec_src_root, ".venv-parity")
    git = os.path.join(config.mergec_src_root, ".git")
    if os.path.isfile(git):  # a worktree: "gitdir: MAIN/.git/worktrees/NAME"
        with open(git) as f:
            gitdir = f.read().strip().partition("gitdir: ")[2]
        yield os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(gitdir))), ".venv-parity")
import glob as _glob
for _venv in _parity_venvs():
    if _glob.glob(os.path.join(_venv, "lib", "python*", "site-packages", "transformers")) and \
            _glob.glob(os.path.join(_venv, "lib", "python*", "site-packages", "torch")):
        config.available_features.add("transformers")
        config.substitutions.append(("%hf-python", os.path.join(_venv, "bin", "python")))
        break
else:
    lit_config.note("transformers load tests skipped: no .venv-parity with transformers and torch "
                    "(tests/parity/setup_venv.sh, or PARITY_VENV=DIR)")
