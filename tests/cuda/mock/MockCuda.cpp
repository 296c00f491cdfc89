//===- MockCuda.cpp - a CUDA driver that runs on the CPU, for tests -------===//
// Built as libcuda.so.1 (tests/cuda/mock/CMakeLists.txt) and put first on LD_LIBRARY_PATH by
// the cuda-mock lit tests, so that CudaDriver (runtime/cuda/CudaDriver.cpp) loads it instead
// of NVIDIA's driver: every host-side line of the CUDA device (CudaDevice, GpuSelection, the
// executor's GPU pipeline) then runs on a machine without a GPU, and every misuse the mock can
// see is reported on stderr ("mock-cuda: error: ...") and returned as an error code, so the
// runtime surfaces it.
//
// What it emulates:
//  - one device, "Mock GPU (CPU)", sm_90's attributes (132 SMs, 227 KiB opt-in shared memory),
//    16 GiB (MERGEC_MOCK_CUDA_MEMORY=BYTES to change), device 0's primary context, current per
//    thread (calls that need a context fail with CUDA_ERROR_INVALID_CONTEXT without one);
//  - device memory and page-locked host memory as host memory in registries: every pointer an
//    API call or a kernel parameter names is checked against them (and against recently freed
//    blocks, to say "freed"); new device memory is filled with 0xA5 bytes, never zeros;
//  - streams as FIFOs of operations run LAZILY, only when something forces them:
//    cuStreamSynchronize, cuEventSynchronize / cuEventQuery (the stream up to the record),
//    cuCtxSynchronize, the synchronous cuMemcpyHtoD/DtoH (all streams first: simpler than the
//    legacy stream's rules, and what the runtime relies on), a cuStreamWaitEvent'ed stream
//    running past the wait (the other stream up to the record first), cuMemFree (the real one
//    synchronises the device too). So a host read of a download's destination without a sync
//    sees stale bytes and a host write into an upload's source before the copy ran changes
//    what is uploaded: outputs differ and the test catches it. Asynchronous copies from or to
//    pageable (not page-locked) memory are staged at the call (host-to-device) or done at the
//    call after the stream before it (device-to-host), as the real driver does;
//  - page-locked buffers of pending copies: hashed at the call and at the run; a change in
//    between (the host refilling an upload's source, or a download's destination reused before
//    the copy ran) is reported;
//  - races: when an operation runs while an operation enqueued earlier on another stream is
//    still pending and they touch the same memory (one of them writing), nothing ordered them
//    (no event wait, no host synchronisation): reported as an error;
//  - events: timestamps of a virtual clock that advances by the host time each operation took
//    (at least 1 us), so elapsed times are small positive numbers;
//  - modules: the image must be PTX text (.version, .target, .address_size, every .entry with a
//    parameter list and a braced body whose statements start with PTX opcodes); each entry's
//    .param list gives the number and sizes of the kernel parameters. Otherwise
//    CUDA_ERROR_INVALID_PTX, with a message in CU_JIT_ERROR_LOG_BUFFER;
//  - launches: dimensions, dynamic shared memory (48 KiB unless cuFuncSetAttribute raised
//    it), kernelParams (copied at the call, as the driver does), `extra` null; then the kernel
//    runs on the CPU when its stream gets to it:
//      * mergec phase kernels (mergec_<function>__<tag>), every descriptor's aligned pointer
//        checked to be device memory first: the GPU kernel itself built for the host when
//        the executable carries it (`mergec compile --gpu-emulation`: its
//        mergec_gpu_emulation_table; GpuKernelEmulation.h), every thread of every block a
//        fiber as for the selection kernels, its NVVM intrinsics and libdevice calls answered
//        by resolveEmulated below; else the CPU twin of the same symbol from the
//        executable's mergec_kernel_table (merge executables export it), called with the same
//        packed arguments, a reduction (its PTX declares .shared memory) once per block, block
//        c over elements [begin + c * 65536, ...) writing its partials at result[c * m];
//      * SelectionKernels.cu's kernels: the same source compiled for the CPU (MockSelection.cpp,
//        CudaEmulation.h), each block's threads as fibers;
//      * tests/cuda/CudaDeviceTest.cpp's hand-written PTX kernels (add_scaled, block_ids), in
//        C++ below;
//      * anything else: CUDA_ERROR_NOT_FOUND at the launch, with a message.
//    After every kernel, the 4 KiB redzone behind each device block must be intact (a kernel
//    storing past a buffer's end fails there). A kernel failing while it runs (bad pointer,
//    emulation deadlock, a redzone written) is a sticky error:
//    CUDA_ERROR_ILLEGAL_ADDRESS / CUDA_ERROR_LAUNCH_FAILED from then on, like the driver's.
//  - misuse reported: unknown or destroyed handles, pointers outside live allocations, use of
//    freed memory, pending operations on memory being freed, a stream destroyed with pending
//    work, no current context, a wrong number of kernel parameters, calls before cuInit.
//
// Knobs: MERGEC_MOCK_CUDA_LOG=1 logs every call on stderr; MERGEC_MOCK_CUDA_NO_DEVICE=1 makes
// cuDeviceGetCount report 0 devices; MERGEC_MOCK_CUDA_MEMORY=BYTES sets the device's memory;
// MERGEC_MOCK_CUDA_EMULATE=1 requires the phase kernels' host builds (=0: the CPU twins even
// when the executable has them; =compare: both, every launch, and the bytes they write must be
// the same); MERGEC_MOCK_CUDA_MISALIGN=BYTES starts device blocks BYTES
// past a 256-byte boundary (the driver's alignment), so kernels' unaligned paths run.
//
// It cannot check real concurrency (everything runs under one lock, in an order that is one
// legal schedule among many) nor the PTX itself (the emulation runs the LLVM IR the NVPTX
// backend would compile, with libm for libdevice).
#include <cuda.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "CudaEmulation.h"

// SelectionKernels.cu's kernels, compiled for the CPU (MockSelection.cpp).
extern "C" {
void mergec_sel_hist(const float *, unsigned long long, unsigned long long, unsigned, unsigned,
                     unsigned, unsigned, unsigned, unsigned, unsigned, unsigned long long *,
                     unsigned long long *);
void mergec_sel_count(const float *, unsigned long long, unsigned long long, unsigned, unsigned,
                      unsigned, unsigned, unsigned *);
void mergec_sel_hist16(const float *, unsigned long long, unsigned long long, unsigned, unsigned,
                       unsigned, unsigned long long *, unsigned long long *);
void mergec_sel_find(const float *, unsigned long long, unsigned long long, unsigned, unsigned,
                     unsigned long long, unsigned long long *);
void mergec_rank_shared(const float *, float *, unsigned long long, unsigned);
void mergec_rank_global(const float *, float *, unsigned long long, unsigned, unsigned *);
void mergec_row_reduce(const float *, float *, unsigned long long, unsigned long long, unsigned);
}

namespace {

constexpr const char *kDeviceName = "Mock GPU (CPU)";
constexpr int kSMs = 132;
constexpr int kSharedOptin = 232448;     // 227 KiB, sm_90's opt-in maximum
constexpr int kSharedDefault = 48 * 1024; // without cuFuncSetAttribute
constexpr int64_t kChunk = 1 << 16;       // Device::kChunk: a reduction block's elements

bool logging() {
  static bool on = [] {
    const char *v = std::getenv("MERGEC_MOCK_CUDA_LOG");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

/// What runs a mergec phase kernel: MERGEC_MOCK_CUDA_EMULATE unset, its GPU code built for
/// the host when the executable has it (compiled with --gpu-emulation), else its CPU twin;
/// =1, the GPU code or an error; =0, the CPU twin always; =compare, the CPU twin and then the
/// GPU code from the same device memory, and the launch fails unless every byte they write is
/// the same. Equal outputs of a whole merge do not show that a reduction's partials are the
/// same bits (bf16 products summed in f64 are mostly exact in any order); this does.
enum class Emulation { IfPresent, Required, Off, Compare };
Emulation emulation() {
  static Emulation mode = [] {
    const char *v = std::getenv("MERGEC_MOCK_CUDA_EMULATE");
    if (!v || !*v)
      return Emulation::IfPresent;
    if (std::strcmp(v, "compare") == 0)
      return Emulation::Compare;
    return std::strcmp(v, "0") == 0 ? Emulation::Off : Emulation::Required;
  }();
  return mode;
}

/// MERGEC_MOCK_CUDA_MISALIGN=BYTES: device memory starts BYTES past a 256-byte boundary instead
/// of on one (the real driver's alignment), so kernels' paths for unaligned buffers run. Use a
/// multiple of 8: the kernels' u64 and f64 buffers need their natural alignment (8 leaves that
/// and breaks the maps' 16-byte vectors).
size_t misalignment() {
  static size_t bytes = [] {
    const char *v = std::getenv("MERGEC_MOCK_CUDA_MISALIGN");
    return v && *v ? static_cast<size_t>(std::strtoul(v, nullptr, 0)) % 256 : size_t{0};
  }();
  return bytes;
}

uint64_t totalMemory() {
  static uint64_t bytes = [] {
    const char *v = std::getenv("MERGEC_MOCK_CUDA_MEMORY");
    return v && *v ? std::strtoull(v, nullptr, 0) : (16ull << 30);
  }();
  return bytes;
}

void report(const char *fmt, ...) {
  char text[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "mock-cuda: error: %s\n", text);
}

/// Reports and returns `code`.
#define FAIL(code, ...) (report(__VA_ARGS__), (code))

std::recursive_mutex &lock() {
  static std::recursive_mutex m;
  return m;
}

// --- Memory registries ------------------------------------------------------------------------

enum class MemKind { Device, Pinned, Registered };
const char *kindName(MemKind k) {
  return k == MemKind::Device ? "device" : k == MemKind::Pinned ? "page-locked" : "registered";
}
struct Block {
  uintptr_t base;
  size_t size;
  MemKind kind;
  uintptr_t storage = 0; ///< what std::free takes (base, unless MERGEC_MOCK_CUDA_MISALIGN moved it)
};
std::map<uintptr_t, Block> blocks;    // live, by base
std::deque<Block> freedBlocks;        // the last few thousand freed (for messages)
uint64_t deviceBytes = 0;

/// Bytes after every device block that no one may write, checked after each kernel: a kernel
/// storing past a buffer's end (a wrong bound in a grid-stride loop) is caught there.
constexpr size_t kRedzone = 4096;
constexpr unsigned char kRedzoneByte = 0xE7;

/// "" when every live device block's redzone is intact, else which block was overrun.
std::string overrunRedzone() {
  for (auto &[base, b] : blocks) {
    if (b.kind != MemKind::Device)
      continue;
    auto *zone = reinterpret_cast<const unsigned char *>(base + b.size);
    for (size_t i = 0; i < kRedzone; ++i)
      if (zone[i] != kRedzoneByte) {
        char s[160];
        std::snprintf(s, sizeof s, "overrun: byte %zu past the end of device block 0x%llx (%zu "
                      "bytes) was written", i, (unsigned long long)base, b.size);
        return s;
      }
  }
  return "";
}

const Block *findBlock(uintptr_t p) {
  auto it = blocks.upper_bound(p);
  if (it == blocks.begin())
    return nullptr;
  --it;
  const Block &b = it->second;
  return p >= b.base && p < b.base + std::max<size_t>(b.size, 1) ? &b : nullptr;
}

std::string describePointer(uintptr_t p) {
  for (auto it = freedBlocks.rbegin(); it != freedBlocks.rend(); ++it)
    if (p >= it->base && p < it->base + std::max<size_t>(it->size, 1))
      return "freed " + std::string(kindName(it->kind)) + " memory (block 0x" +
             [](uintptr_t v) { char s[32]; std::snprintf(s, sizeof s, "%llx", (unsigned long long)v); return std::string(s); }(it->base) +
             " of " + std::to_string(it->size) + " bytes: use after free)";
  return "not memory of this context";
}

/// Checks [p, p + bytes) lies in one live block of an accepted kind; "" when it does, else why.
std::string checkRange(uintptr_t p, size_t bytes, bool device, bool host) {
  const Block *b = findBlock(p);
  if (!b) {
    char s[64];
    std::snprintf(s, sizeof s, "0x%llx", (unsigned long long)p);
    return std::string(s) + " is " + describePointer(p);
  }
  bool isDevice = b->kind == MemKind::Device;
  if ((isDevice && !device) || (!isDevice && !host))
    return std::string("pointer into ") + kindName(b->kind) + " memory where " +
           (device ? "device" : "host") + " memory is expected";
  if (bytes > b->size - (p - b->base))
    return std::to_string(bytes) + " bytes at offset " + std::to_string(p - b->base) +
           " overrun the " + std::to_string(b->size) + "-byte " + kindName(b->kind) + " block";
  return "";
}

// --- Context, modules, streams, events --------------------------------------------------------

bool initialized = false;
int primaryRefs = 0;
struct Context {
  int tag;
} primary{0};
thread_local bool current = false;
CUresult sticky = CUDA_SUCCESS;

struct Function {
  std::string name;
  std::vector<size_t> params; // sizes in bytes
  bool shared = false;        // the body declares .shared memory (a reduction)
  int maxDynamicShared = kSharedDefault;
  struct Module *module;
};
struct Module {
  std::map<std::string, std::unique_ptr<Function>> functions;
};
std::set<Module *> modules;

struct Event;
struct Stream;
struct Region {
  uintptr_t begin, end;
  bool write;
};
struct Op {
  enum Kind { Copy, Memset, Launch, Record, Wait } kind;
  uint64_t seq = 0;
  std::string what;
  // Copy
  uintptr_t dst = 0, src = 0;
  size_t bytes = 0;
  std::vector<char> staged; // pageable host-to-device source, read at the call
  uintptr_t hostSide = 0;   // page-locked host memory of a copy, and its hash at the call:
  uint64_t hostHash = 0;    // the host must not write it until the stream ran the copy
  // Memset
  uint32_t value = 0;
  unsigned width = 0;
  size_t count = 0;
  // Launch
  Function *fn = nullptr;
  unsigned grid = 0, block = 0, smem = 0;
  std::vector<uint64_t> storage; // the parameters' bytes, 8-aligned
  std::vector<size_t> offsets;
  int twin = -1; // what runs it (Launch kinds below)
  void (*cpu)(void **) = nullptr;
  void (*emulated)(void **) = nullptr; // the GPU kernel built for the host (--gpu-emulation)
  void **resolver = nullptr;           // the pointer its stubs call through
  // Record / Wait
  Event *event = nullptr;
  Stream *other = nullptr;
  uint64_t until = 0;
  std::vector<Region> regions;
};
struct Stream {
  std::deque<Op> ops;
  bool draining = false;
  std::string name;
};
struct Event {
  unsigned flags = 0;
  Stream *stream = nullptr;
  uint64_t recordSeq = 0, completedSeq = 0;
  bool recorded = false;
  double time = 0;
};
std::set<Stream *> streams;
std::set<Event *> events;
Stream nullStream{{}, false, "the NULL stream"};
uint64_t nextSeq = 1;
double clockMs = 0;

Stream *streamOf(CUstream s) {
  if (!s || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
    return &nullStream;
  auto *p = reinterpret_cast<Stream *>(s);
  return streams.count(p) ? p : nullptr;
}
Event *eventOf(CUevent e) {
  auto *p = reinterpret_cast<Event *>(e);
  return events.count(p) ? p : nullptr;
}

// --- The CPU twins ---------------------------------------------------------------------------

enum Twin { TwinMergec, TwinSelection, TwinAddScaled, TwinBlockIds };

struct KernelEntry {
  const char *symbol;
  void (*fn)(void **);
};

/// The entry called `name` in the executable's table `tableName` (with `countName` entries,
/// both found with dlsym; MergeObject.cpp writes them); null when there is none.
void (*findInTable(const char *tableName, const char *countName,
                   const std::string &name))(void **) {
  auto *table = static_cast<const KernelEntry *>(::dlsym(RTLD_DEFAULT, tableName));
  auto *count = static_cast<const uint64_t *>(::dlsym(RTLD_DEFAULT, countName));
  if (!table || !count)
    return nullptr;
  for (uint64_t i = 0; i < *count; ++i)
    if (name == table[i].symbol)
      return table[i].fn;
  return nullptr;
}

void (*findCpuKernel(const std::string &name))(void **) {
  return findInTable("mergec_kernel_table", "mergec_kernel_count", name);
}

// --- The GPU kernels built for the host (mergec compile --gpu-emulation) --------------------
// compiler/include/mergec/Target/CPU/GpuKernelEmulation.h: each kernel's own code (what the
// NVPTX backend compiles), run with every thread of a block as a fiber. Its NVVM intrinsics
// and libdevice calls come here by name, through the resolver below.

/// The host build of kernel `name`, and in `resolver` the pointer its stubs call through:
/// from a merge executable's table (`mergec compile --gpu-emulation`), else from mergec's JIT
/// (`MERGEC_GPU_EMULATION=1 mergec run`: mergec_gpu_emulation_find).
void (*findEmulatedKernel(const std::string &name, void ***resolver))(void **) {
  if (auto fn = findInTable("mergec_gpu_emulation_table", "mergec_gpu_emulation_count", name)) {
    *resolver = static_cast<void **>(::dlsym(RTLD_DEFAULT, "mergec_gpu_emulation_resolve"));
    return fn;
  }
  using Find = void (*(*)(const char *, void ***))(void **);
  if (auto find = reinterpret_cast<Find>(::dlsym(RTLD_DEFAULT, "mergec_gpu_emulation_find")))
    return find(name.c_str(), resolver);
  return nullptr;
}

unsigned emuTidX() { return threadIdx.x; }
unsigned emuNtidX() { return blockDim.x; }
unsigned emuCtaidX() { return blockIdx.x; }
unsigned emuNctaidX() { return gridDim.x; }
unsigned emuZero() { return 0; }
unsigned emuOne() { return 1; }
void emuBarrier() { emu::syncthreads(); }
void emuBarrierId(int) { emu::syncthreads(); }

// libdevice's functions as the host's libm, which the CPU kernels call too: the emulation
// checks the kernels' structure, not libdevice's last-bit accuracy (the GPU run does). One
// list of names (X-macros), expanded into the definitions here and the resolver's table below.
#define MOCK_LIBM_UNARY(X)                                                                       \
  X(fabs) X(sqrt) X(exp) X(exp2) X(expm1) X(log) X(log2) X(log10) X(log1p) X(sin) X(cos)        \
  X(tan) X(asin) X(acos) X(atan) X(sinh) X(cosh) X(tanh) X(floor) X(ceil) X(round) X(trunc)     \
  X(rint) X(erf) X(cbrt)
#define MOCK_LIBM_BINARY(X) X(pow) X(atan2) X(fmax) X(fmin) X(fmod) X(copysign)
#define MOCK_UNARY(fn)                                                                           \
  float emu_##fn##f(float x) { return std::fn(x); }                                             \
  double emu_##fn(double x) { return std::fn(x); }
#define MOCK_BINARY(fn)                                                                          \
  float emu_##fn##f(float x, float y) { return std::fn(x, y); }                                 \
  double emu_##fn(double x, double y) { return std::fn(x, y); }
MOCK_LIBM_UNARY(MOCK_UNARY)
MOCK_LIBM_BINARY(MOCK_BINARY)
#undef MOCK_UNARY
#undef MOCK_BINARY
float emu_rsqrtf(float x) { return 1.0f / std::sqrt(x); }
double emu_rsqrt(double x) { return 1.0 / std::sqrt(x); }
float emu_fmaf(float x, float y, float z) { return std::fma(x, y, z); }
double emu_fma(double x, double y, double z) { return std::fma(x, y, z); }

std::string emulationFailure; // a name the kernels need and the mock does not have

void emuMissing() {
  report("%s", emulationFailure.c_str());
  std::abort();
}

/// What an emulated kernel's stub for `name` calls.
void *resolveEmulated(const char *name) {
  static const std::map<std::string, void *> known = [] {
    std::map<std::string, void *> m = {
        {"llvm.nvvm.read.ptx.sreg.tid.x", (void *)&emuTidX},
        {"llvm.nvvm.read.ptx.sreg.tid.y", (void *)&emuZero},
        {"llvm.nvvm.read.ptx.sreg.tid.z", (void *)&emuZero},
        {"llvm.nvvm.read.ptx.sreg.ntid.x", (void *)&emuNtidX},
        {"llvm.nvvm.read.ptx.sreg.ntid.y", (void *)&emuOne},
        {"llvm.nvvm.read.ptx.sreg.ntid.z", (void *)&emuOne},
        {"llvm.nvvm.read.ptx.sreg.ctaid.x", (void *)&emuCtaidX},
        {"llvm.nvvm.read.ptx.sreg.ctaid.y", (void *)&emuZero},
        {"llvm.nvvm.read.ptx.sreg.ctaid.z", (void *)&emuZero},
        {"llvm.nvvm.read.ptx.sreg.nctaid.x", (void *)&emuNctaidX},
        {"llvm.nvvm.read.ptx.sreg.nctaid.y", (void *)&emuOne},
        {"llvm.nvvm.read.ptx.sreg.nctaid.z", (void *)&emuOne},
        {"llvm.nvvm.barrier0", (void *)&emuBarrier},
        {"llvm.nvvm.barrier.cta.sync.aligned.all", (void *)&emuBarrierId},
        {"__nv_rsqrtf", (void *)&emu_rsqrtf}, {"__nv_rsqrt", (void *)&emu_rsqrt},
        {"__nv_fmaf", (void *)&emu_fmaf},     {"__nv_fma", (void *)&emu_fma}};
#define MOCK_NAME(fn)                                                                            \
  m["__nv_" #fn "f"] = (void *)&emu_##fn##f;                                                     \
  m["__nv_" #fn] = (void *)&emu_##fn;
    MOCK_LIBM_UNARY(MOCK_NAME)
    MOCK_LIBM_BINARY(MOCK_NAME)
#undef MOCK_NAME
    return m;
  }();
  auto it = known.find(name);
  if (it != known.end())
    return it->second;
  // The stub would call whatever it got: stop here instead, saying what is missing.
  emulationFailure = std::string("--gpu-emulation: the kernels call ") + name +
                     ", which the mock does not implement (tests/cuda/mock/MockCuda.cpp, "
                     "resolveEmulated)";
  return (void *)&emuMissing;
}



const std::set<std::string> &selectionKernels() {
  static const std::set<std::string> names = {"mergec_sel_hist",    "mergec_sel_hist16",
                                              "mergec_sel_count",
                                              "mergec_sel_find",    "mergec_rank_shared",
                                              "mergec_rank_global", "mergec_row_reduce"};
  return names;
}

template <class T> T param(Op &op, size_t i) {
  T v;
  std::memcpy(&v, reinterpret_cast<char *>(op.storage.data()) + op.offsets[i], sizeof v);
  return v;
}
void *paramPtr(Op &op, size_t i) { return reinterpret_cast<char *>(op.storage.data()) + op.offsets[i]; }

struct MemRef {
  uint64_t allocated, aligned;
  int64_t offset, size, stride;
};
MemRef memref(Op &op, size_t first) {
  return {param<uint64_t>(op, first), param<uint64_t>(op, first + 1), param<int64_t>(op, first + 2),
          param<int64_t>(op, first + 3), param<int64_t>(op, first + 4)};
}

/// A mergec phase kernel's CPU twin over the launch's packed arguments: a map once over
/// [begin, end), a reduction (its PTX declares .shared memory) once per block, block c over
/// [begin + c * 65536, ...) writing its partials at result[c * m].
std::string runTwin(Op &op, std::vector<void *> &args, int64_t begin, int64_t end, size_t k) {
  const std::string &name = op.fn->name;
  if (!op.fn->shared) {
    op.cpu(args.data());
    return "";
  }
  // A reduction: one block per chunk, block c's m partials at result[c * m + j].
  MemRef result = memref(op, 5 * k);
  int64_t chunks = (end - begin + kChunk - 1) / kChunk;
  if (static_cast<int64_t>(op.grid) != chunks)
    return "reduction kernel " + name + " launched with " + std::to_string(op.grid) +
           " blocks for " + std::to_string(end - begin) + " elements (" + std::to_string(chunks) +
           " chunks of 65536): the ABI is one block per chunk";
  int64_t m = result.size;
  std::string why = checkRange(result.aligned + 8 * static_cast<uint64_t>(result.offset),
                               8 * static_cast<size_t>(m) * op.grid, true, false);
  if (m <= 0 || !why.empty())
    return "reduction kernel " + name + ": the partials (" + std::to_string(op.grid) + " x " +
           std::to_string(m) + " doubles) do not fit the result buffer: " + why;
  for (unsigned c = 0; c < op.grid; ++c) {
    int64_t b = begin + static_cast<int64_t>(c) * kChunk, e = std::min(end, b + kChunk);
    uint64_t allocated = result.allocated + 8 * c * static_cast<uint64_t>(m),
             aligned = result.aligned + 8 * c * static_cast<uint64_t>(m);
    std::vector<void *> chunkArgs = args;
    chunkArgs[5 * k] = &allocated;
    chunkArgs[5 * k + 1] = &aligned;
    chunkArgs[5 * k + 5] = &b;
    chunkArgs[5 * k + 6] = &e;
    op.cpu(chunkArgs.data());
  }
  return "";
}

/// MERGEC_MOCK_CUDA_EMULATE=compare: the twin, then the GPU build from the same device memory;
/// "" when both wrote the same bytes into every device block the launch can reach.
std::string compareWithTwin(Op &op, const std::function<std::string()> &twin,
                            const std::function<std::string()> &emulated) {
  std::vector<Region> reach;
  for (const Region &r : op.regions)
    if (std::none_of(reach.begin(), reach.end(), [&](const Region &q) { return q.begin == r.begin; }))
      reach.push_back(r);
  std::vector<std::vector<char>> before, fromTwin;
  for (const Region &r : reach)
    before.emplace_back(reinterpret_cast<char *>(r.begin), reinterpret_cast<char *>(r.end));
  if (std::string why = twin(); !why.empty())
    return why;
  for (size_t i = 0; i < reach.size(); ++i) {
    char *bytes = reinterpret_cast<char *>(reach[i].begin);
    fromTwin.emplace_back(bytes, bytes + before[i].size());
    std::memcpy(bytes, before[i].data(), before[i].size());
  }
  if (std::string why = emulated(); !why.empty())
    return why;
  for (size_t i = 0; i < reach.size(); ++i) {
    const char *gpu = reinterpret_cast<const char *>(reach[i].begin);
    auto at = std::mismatch(fromTwin[i].begin(), fromTwin[i].end(), gpu);
    if (at.first == fromTwin[i].end())
      continue;
    size_t byte = at.first - fromTwin[i].begin();
    size_t differ = 0;
    for (size_t j = byte; j < fromTwin[i].size(); ++j)
      differ += fromTwin[i][j] != gpu[j];
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "kernel %s: its GPU build and its CPU twin wrote different bytes into device block "
                  "0x%llx (%zu bytes): %zu differ, the first at byte %zu (twin 0x%02x, GPU build "
                  "0x%02x)",
                  op.fn->name.c_str(), static_cast<unsigned long long>(reach[i].begin), before[i].size(),
                  differ, byte, static_cast<unsigned char>(fromTwin[i][byte]),
                  static_cast<unsigned char>(gpu[byte]));
    return buf;
  }
  return "";
}

/// Runs a launch's kernel; "" on success, else why it failed.
std::string runKernel(Op &op) {
  const std::string &name = op.fn->name;
  switch (op.twin) {
  case TwinMergec: {
    size_t count = op.offsets.size(), k = (count - 14) / 5;
    // Descriptors: every aligned pointer of a non-empty memref is live device memory.
    for (size_t d = 0; d <= k + 1; ++d) {
      size_t first = d <= k ? 5 * d : 5 * k + 9;
      MemRef m = memref(op, first);
      if (m.size <= 0)
        continue;
      std::string why = checkRange(m.aligned + static_cast<uint64_t>(m.offset), 1, true, false);
      if (!why.empty())
        return "kernel " + name + ": memref argument " + std::to_string(d) + " (" +
               (d < k ? "input " + std::to_string(d) : d == k ? std::string("result") : std::string("scalars")) +
               "): " + why;
    }
    int64_t begin = param<int64_t>(op, 5 * k + 5), end = param<int64_t>(op, 5 * k + 6);
    std::vector<void *> args(count);
    for (size_t i = 0; i < count; ++i)
      args[i] = paramPtr(op, i);
    // The GPU kernel itself, every thread of every block (it finds its chunk and elements from
    // the block and thread indices, as on the GPU).
    auto runEmulated = [&]() -> std::string {
      *op.resolver = reinterpret_cast<void *>(&resolveEmulated);
      if (!emu::launch(op.grid, op.block, [&] { op.emulated(args.data()); }))
        return "kernel " + name + " (emulated): " + emu::failure;
      return "";
    };
    if (op.emulated && emulation() == Emulation::Compare)
      return compareWithTwin(op, [&] { return runTwin(op, args, begin, end, k); }, runEmulated);
    if (op.emulated)
      return runEmulated();
    return runTwin(op, args, begin, end, k);
  }
  case TwinSelection: {
    // Pointer parameters (8 bytes, non-zero) must be device memory.
    std::vector<char> shared(op.smem + 64, static_cast<char>(0x5A));
    emu::dynamicShared = reinterpret_cast<unsigned *>(shared.data());
    Op &a = op;
    std::function<void()> body;
    if (name == "mergec_sel_hist")
      body = [&] {
        mergec_sel_hist(param<const float *>(a, 0), param<unsigned long long>(a, 1),
                        param<unsigned long long>(a, 2), param<unsigned>(a, 3), param<unsigned>(a, 4),
                        param<unsigned>(a, 5), param<unsigned>(a, 6), param<unsigned>(a, 7),
                        param<unsigned>(a, 8), param<unsigned>(a, 9),
                        param<unsigned long long *>(a, 10), param<unsigned long long *>(a, 11));
      };
    else if (name == "mergec_sel_hist16")
      body = [&] {
        mergec_sel_hist16(param<const float *>(a, 0), param<unsigned long long>(a, 1),
                          param<unsigned long long>(a, 2), param<unsigned>(a, 3),
                          param<unsigned>(a, 4), param<unsigned>(a, 5),
                          param<unsigned long long *>(a, 6), param<unsigned long long *>(a, 7));
      };
    else if (name == "mergec_sel_count")
      body = [&] {
        mergec_sel_count(param<const float *>(a, 0), param<unsigned long long>(a, 1),
                         param<unsigned long long>(a, 2), param<unsigned>(a, 3), param<unsigned>(a, 4),
                         param<unsigned>(a, 5), param<unsigned>(a, 6), param<unsigned *>(a, 7));
      };
    else if (name == "mergec_sel_find")
      body = [&] {
        mergec_sel_find(param<const float *>(a, 0), param<unsigned long long>(a, 1),
                        param<unsigned long long>(a, 2), param<unsigned>(a, 3), param<unsigned>(a, 4),
                        param<unsigned long long>(a, 5), param<unsigned long long *>(a, 6));
      };
    else if (name == "mergec_rank_shared")
      body = [&] {
        mergec_rank_shared(param<const float *>(a, 0), param<float *>(a, 1),
                           param<unsigned long long>(a, 2), param<unsigned>(a, 3));
      };
    else if (name == "mergec_rank_global")
      body = [&] {
        mergec_rank_global(param<const float *>(a, 0), param<float *>(a, 1),
                           param<unsigned long long>(a, 2), param<unsigned>(a, 3),
                           param<unsigned *>(a, 4));
      };
    else
      body = [&] {
        mergec_row_reduce(param<const float *>(a, 0), param<float *>(a, 1),
                          param<unsigned long long>(a, 2), param<unsigned long long>(a, 3),
                          param<unsigned>(a, 4));
      };
    bool ok = emu::launch(op.grid, op.block, body);
    emu::dynamicShared = nullptr;
    return ok ? "" : "kernel " + name + ": " + emu::failure;
  }
  case TwinAddScaled: {
    // out[i] = a[i] + b[i] * (float)scalars[4] + layer (CudaDeviceTest.cpp's PTX).
    MemRef a = memref(op, 0), b = memref(op, 5), out = memref(op, 10), s = memref(op, 19);
    int64_t begin = param<int64_t>(op, 15), end = param<int64_t>(op, 16);
    float layer = param<float>(op, 17);
    for (auto [d, what] : {std::pair{a, "a"}, {b, "b"}, {out, "out"}}) {
      std::string why = checkRange(d.aligned + 4 * d.offset, 4 * static_cast<size_t>(std::max<int64_t>(end, 0)), true, false);
      if (!why.empty() && end > 0)
        return std::string("kernel add_scaled: ") + what + ": " + why;
    }
    std::string why = checkRange(s.aligned + 8 * s.offset, 40, true, false);
    if (!why.empty())
      return "kernel add_scaled: scalars: " + why;
    auto *pa = reinterpret_cast<const float *>(a.aligned) + a.offset;
    auto *pb = reinterpret_cast<const float *>(b.aligned) + b.offset;
    auto *po = reinterpret_cast<float *>(out.aligned) + out.offset;
    float w = static_cast<float>(reinterpret_cast<const double *>(s.aligned)[s.offset + 4]);
    for (int64_t i = begin; i < end; ++i)
      po[i] = std::fma(pb[i], w, pa[i]) + layer;
    return "";
  }
  case TwinBlockIds: {
    // result[c] = c + 1000 * gridDim.x for every block c.
    MemRef r = memref(op, 5);
    std::string why = checkRange(r.aligned + 8 * r.offset, 8 * size_t{op.grid}, true, false);
    if (!why.empty())
      return "kernel block_ids: result: " + why;
    auto *p = reinterpret_cast<double *>(r.aligned) + r.offset;
    for (unsigned c = 0; c < op.grid; ++c)
      p[c] = std::fma(static_cast<double>(op.grid), 1000.0, static_cast<double>(c));
    return "";
  }
  }
  return "internal: no twin";
}

// --- Running streams ---------------------------------------------------------------------------

uint64_t hashBytes(uintptr_t p, size_t bytes) {
  const auto *c = reinterpret_cast<const unsigned char *>(p);
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, c + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < bytes; ++i)
    h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

bool overlaps(const std::vector<Region> &a, const std::vector<Region> &b) {
  for (const Region &x : a)
    for (const Region &y : b)
      if ((x.write || y.write) && x.begin < y.end && y.begin < x.end)
        return true;
  return false;
}

CUresult execute(Stream *s, Op &op);

/// Runs `s`'s operations up to sequence number `until` (inclusive).
CUresult drain(Stream *s, uint64_t until = UINT64_MAX) {
  if (s->ops.empty() || s->ops.front().seq > until)
    return sticky;
  if (s->draining) // it runs an operation that waits for a later one of its own
    return FAIL(CUDA_ERROR_LAUNCH_FAILED, "%s waits for itself through events (deadlock)",
                s->name.c_str());
  s->draining = true;
  CUresult status = CUDA_SUCCESS;
  while (!s->ops.empty() && s->ops.front().seq <= until && sticky == CUDA_SUCCESS) {
    Op op = std::move(s->ops.front());
    s->ops.pop_front();
    status = execute(s, op);
    if (status != CUDA_SUCCESS)
      break;
  }
  s->draining = false;
  if (sticky != CUDA_SUCCESS) {
    for (Stream *t : streams)
      t->ops.clear();
    nullStream.ops.clear();
    return sticky;
  }
  return status;
}

CUresult drainAll() {
  CUresult status = drain(&nullStream);
  for (Stream *s : std::vector<Stream *>(streams.begin(), streams.end()))
    if (status == CUDA_SUCCESS)
      status = drain(s);
  return status;
}

CUresult execute(Stream *s, Op &op) {
  if (op.kind == Op::Wait) {
    if (op.other && streams.count(op.other))
      return drain(op.other, op.until);
    return CUDA_SUCCESS;
  }
  if (op.kind == Op::Record) {
    if (events.count(op.event)) {
      op.event->completedSeq = std::max(op.event->completedSeq, op.seq);
      if (op.event->recordSeq == op.seq)
        op.event->time = clockMs;
    }
    return CUDA_SUCCESS;
  }
  // Races: an operation enqueued earlier on another stream, still pending, on the same memory.
  for (Stream *t : streams)
    if (t != s)
      for (const Op &y : t->ops)
        if (y.seq < op.seq && overlaps(op.regions, y.regions)) {
          report("race: %s on %s runs before %s enqueued earlier on %s, on the same memory, "
                 "with nothing ordering them (an event wait or a host synchronisation)",
                 op.what.c_str(), s->name.c_str(), y.what.c_str(), t->name.c_str());
          return sticky = CUDA_ERROR_LAUNCH_FAILED;
        }
  // The memory must still be there (freed blocks with pending work are refused at the free,
  // this is the last line).
  for (const Region &r : op.regions) {
    std::string why = checkRange(r.begin, r.end - r.begin, true, true);
    if (!why.empty()) {
      report("%s on %s: %s", op.what.c_str(), s->name.c_str(), why.c_str());
      return sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
    }
  }
  if (op.hostSide && hashBytes(op.hostSide, op.bytes) != op.hostHash) {
    report("%s on %s: its page-locked %s changed between the call and the stream running the "
           "copy (the host, or another copy, wrote it without waiting for this one: an event "
           "after the copy must be waited for before the buffer is reused)",
           op.what.c_str(), s->name.c_str(), op.hostSide == op.src ? "source" : "destination");
    return sticky = CUDA_ERROR_LAUNCH_FAILED;
  }
  auto t0 = std::chrono::steady_clock::now();
  switch (op.kind) {
  case Op::Copy:
    std::memcpy(reinterpret_cast<void *>(op.dst),
                op.staged.empty() ? reinterpret_cast<const void *>(op.src) : op.staged.data(),
                op.bytes);
    break;
  case Op::Memset:
    for (size_t i = 0; i < op.count; ++i) {
      if (op.width == 1)
        reinterpret_cast<uint8_t *>(op.dst)[i] = static_cast<uint8_t>(op.value);
      else
        reinterpret_cast<uint32_t *>(op.dst)[i] = op.value;
    }
    break;
  case Op::Launch: {
    std::string why = runKernel(op);
    if (why.empty())
      if (std::string overrun = overrunRedzone(); !overrun.empty())
        why = "kernel " + op.fn->name + ": " + overrun;
    if (!why.empty()) {
      report("%s (on %s)", why.c_str(), s->name.c_str());
      bool address = why.find(" is ") != std::string::npos || why.find("overrun") != std::string::npos ||
                     why.find("pointer into") != std::string::npos;
      return sticky = address ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_ERROR_LAUNCH_FAILED;
    }
    break;
  }
  default:
    break;
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  clockMs += std::max(ms, 0.001);
  return CUDA_SUCCESS;
}

CUresult enqueue(Stream *s, Op op) {
  op.seq = nextSeq++;
  s->ops.push_back(std::move(op));
  if (s == &nullStream) // the legacy stream: everything before it, then it, now
    return drainAll();
  return CUDA_SUCCESS;
}

/// Pending operations touching [base, base + size) (for frees).
std::string pendingUse(uintptr_t base, size_t size) {
  std::vector<Region> block = {{base, base + std::max<size_t>(size, 1), true}};
  for (Stream *t : streams)
    for (const Op &y : t->ops)
      if (overlaps(block, y.regions))
        return y.what + " pending on " + t->name;
  return "";
}

// --- API plumbing -------------------------------------------------------------------------------

template <class F> CUresult api(const char *name, bool needContext, F body) {
  std::lock_guard<std::recursive_mutex> guard(lock());
  CUresult status;
  if (!initialized && std::strcmp(name, "cuInit") != 0 && std::strcmp(name, "cuDriverGetVersion") != 0)
    status = FAIL(CUDA_ERROR_NOT_INITIALIZED, "%s before cuInit", name);
  else if (sticky != CUDA_SUCCESS && needContext)
    status = sticky;
  else if (needContext && !current)
    status = FAIL(CUDA_ERROR_INVALID_CONTEXT,
                  "%s on a thread without a current context (call cuCtxSetCurrent there first)",
                  name);
  else
    status = body();
  if (logging())
    std::fprintf(stderr, "mock-cuda: %s -> %d\n", name, static_cast<int>(status));
  return status;
}

std::string hex(uintptr_t p) {
  char s[32];
  std::snprintf(s, sizeof s, "0x%llx", static_cast<unsigned long long>(p));
  return s;
}

// --- PTX ------------------------------------------------------------------------------------------

const std::set<std::string> &opcodes() {
  static const std::set<std::string> ops = {
      "abs", "activemask", "add", "addc", "alloca", "and", "atom", "bar", "barrier", "bfe", "bfi",
      "bfind", "bmsk", "bra", "brev", "brkpt", "brx", "call", "clz", "cnot", "copysign", "cos",
      "cp", "createpolicy", "cvt", "cvta", "discard", "div", "dp2a", "dp4a", "elect", "ex2",
      "exit", "fence", "fma", "fns", "getctarank", "isspacep", "ld", "ldmatrix", "ldu", "lg2",
      "lop3", "mad", "mad24", "madc", "mapa", "match", "max", "mbarrier", "membar", "min", "mma",
      "mov", "movmatrix", "mul", "mul24", "multimem", "nanosleep", "neg", "not", "or", "pmevent",
      "popc", "prefetch", "prefetchu", "prmt", "rcp", "red", "redux", "rem", "ret", "rsqrt",
      "sad", "selp", "set", "setmaxnreg", "setp", "shf", "shfl", "shl", "shr", "sin", "slct",
      "sqrt", "st", "stackrestore", "stacksave", "stmatrix", "sub", "subc", "suld", "suq", "sured",
      "sust", "szext", "tanh", "testp", "tex", "tld4", "trap", "txq", "vabsdiff", "vadd", "vmax",
      "vmin", "vote", "vset", "vshl", "vshr", "vsub", "wgmma", "wmma", "xor"};
  return ops;
}

std::string stripComments(const std::string &text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 2, "//") == 0) {
      while (i < text.size() && text[i] != '\n')
        ++i;
    } else if (text.compare(i, 2, "/*") == 0) {
      size_t e = text.find("*/", i + 2);
      i = e == std::string::npos ? text.size() : e + 2;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

size_t paramSize(const std::string &decl, std::string &why) {
  // .param .TYPE [.ptr [.space] [.align N]] [.align N] NAME[[N]]
  std::vector<std::string> words;
  size_t i = 0;
  while (i < decl.size()) {
    while (i < decl.size() && std::isspace(static_cast<unsigned char>(decl[i])))
      ++i;
    size_t j = i;
    while (j < decl.size() && !std::isspace(static_cast<unsigned char>(decl[j])))
      ++j;
    if (j > i)
      words.push_back(decl.substr(i, j - i));
    i = j;
  }
  if (words.size() < 3 || words[0] != ".param") {
    why = "malformed parameter '" + decl + "'";
    return 0;
  }
  const std::string &type = words[1];
  size_t bits = 0;
  if (type.size() >= 3 && std::string(".u.s.b.f").find(type.substr(0, 2)) != std::string::npos)
    bits = std::strtoul(type.c_str() + 2, nullptr, 10);
  if (bits != 8 && bits != 16 && bits != 32 && bits != 64) {
    why = "parameter type '" + type + "' in '" + decl + "'";
    return 0;
  }
  const std::string &name = words.back();
  size_t bracket = name.find('[');
  if (bracket != std::string::npos)
    return bits / 8 * std::strtoul(name.c_str() + bracket + 1, nullptr, 10);
  return bits / 8;
}

/// Parses a PTX module; "" or why it is malformed.
std::string parsePtx(const std::string &raw, Module &module) {
  std::string text = stripComments(raw);
  for (const char *d : {".version", ".target", ".address_size"})
    if (text.find(d) == std::string::npos)
      return std::string("ptxas fatal: not a PTX module: no ") + d + " directive";
  size_t at = 0;
  while ((at = text.find(".entry", at)) != std::string::npos) {
    size_t nameBegin = at + 6;
    size_t open = text.find('(', nameBegin);
    size_t brace = text.find('{', nameBegin);
    if (open == std::string::npos || (brace != std::string::npos && brace < open))
      return "ptxas: .entry without a parameter list";
    std::string name = trim(text.substr(nameBegin, open - nameBegin));
    size_t close = text.find(')', open);
    if (close == std::string::npos || name.empty())
      return "ptxas: malformed .entry " + name;
    auto fn = std::make_unique<Function>();
    fn->name = name;
    fn->module = &module;
    std::string params = text.substr(open + 1, close - open - 1);
    size_t p = 0;
    while (!trim(params).empty() && p <= params.size()) {
      size_t comma = params.find(',', p);
      std::string decl = trim(params.substr(p, comma == std::string::npos ? std::string::npos : comma - p));
      std::string why;
      size_t bytes = paramSize(decl, why);
      if (!bytes)
        return "ptxas: entry " + name + ": " + why;
      fn->params.push_back(bytes);
      if (comma == std::string::npos)
        break;
      p = comma + 1;
    }
    // The body: balanced braces, statements starting with an opcode or a directive.
    size_t b = text.find_first_not_of(" \t\r\n", close + 1);
    while (b != std::string::npos && text[b] == '.') { // performance directives (.maxntid ...)
      size_t e = text.find_first_of("{\n", b);
      b = e == std::string::npos ? e : text.find_first_not_of(" \t\r\n", e);
    }
    if (b == std::string::npos || text[b] != '{')
      return "ptxas: entry " + name + " has no body";
    int depth = 0;
    size_t e = b;
    for (; e < text.size(); ++e) {
      if (text[e] == '{')
        ++depth;
      else if (text[e] == '}' && --depth == 0)
        break;
    }
    if (depth != 0)
      return "ptxas: entry " + name + ": unbalanced braces";
    std::string body = text.substr(b + 1, e - b - 1);
    fn->shared = body.find(".shared") != std::string::npos;
    size_t s = 0;
    while (s < body.size()) {
      size_t semi = body.find(';', s);
      std::string stmt = body.substr(s, semi == std::string::npos ? std::string::npos : semi - s);
      s = semi == std::string::npos ? body.size() : semi + 1;
      // Braces and labels first.
      for (;;) {
        stmt = trim(stmt);
        if (!stmt.empty() && (stmt[0] == '{' || stmt[0] == '}')) {
          stmt.erase(0, 1);
          continue;
        }
        size_t colon = stmt.find(':');
        if (colon != std::string::npos && stmt.find_first_of(" \t,[", 0) > colon) {
          stmt.erase(0, colon + 1);
          continue;
        }
        break;
      }
      if (stmt.empty() || stmt[0] == '.')
        continue;
      if (stmt[0] == '@') { // a guard predicate
        size_t sp = stmt.find_first_of(" \t");
        stmt = sp == std::string::npos ? "" : trim(stmt.substr(sp));
      }
      size_t end = stmt.find_first_of(". \t");
      std::string op = stmt.substr(0, end);
      if (!opcodes().count(op))
        return "ptxas: entry " + name + ": unknown instruction '" + op + "'";
    }
    if (module.functions.count(name))
      return "ptxas: duplicate entry " + name;
    module.functions.emplace(name, std::move(fn));
    at = e;
  }
  if (module.functions.empty() && raw.find(".entry") != std::string::npos)
    return "ptxas: no parsable .entry";
  return "";
}

int attribute(CUdevice_attribute a) {
  switch (a) {
  case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return kSMs;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return kSharedOptin;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return kSharedDefault;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
  case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
  case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
  case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
  case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
  case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
  case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
  case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
  case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
  case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1980000;
  case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
  case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 5120;
  case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 50 << 20;
  case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 2;
  case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
  case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
  default: return 0;
  }
}

const char *errorName(CUresult r) {
  switch (r) {
#define N(x) case x: return #x;
  N(CUDA_SUCCESS) N(CUDA_ERROR_INVALID_VALUE) N(CUDA_ERROR_OUT_OF_MEMORY)
  N(CUDA_ERROR_NOT_INITIALIZED) N(CUDA_ERROR_DEINITIALIZED) N(CUDA_ERROR_NO_DEVICE)
  N(CUDA_ERROR_INVALID_DEVICE) N(CUDA_ERROR_INVALID_IMAGE) N(CUDA_ERROR_INVALID_CONTEXT)
  N(CUDA_ERROR_INVALID_PTX) N(CUDA_ERROR_INVALID_HANDLE) N(CUDA_ERROR_NOT_FOUND)
  N(CUDA_ERROR_NOT_READY) N(CUDA_ERROR_ILLEGAL_ADDRESS) N(CUDA_ERROR_LAUNCH_FAILED)
  N(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES) N(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED)
  N(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED) N(CUDA_ERROR_ILLEGAL_STATE)
#undef N
  default: return nullptr;
  }
}

const char *errorString(CUresult r) {
  switch (r) {
  case CUDA_SUCCESS: return "no error";
  case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
  case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
  case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
  case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
  case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
  case CUDA_ERROR_INVALID_PTX: return "a PTX JIT compilation failed";
  case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
  case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
  case CUDA_ERROR_NOT_READY: return "device not ready";
  case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
  case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
  case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
  default: return errorName(r) ? "mock error" : nullptr;
  }
}

CUresult copyAsync(const char *api, uintptr_t dst, uintptr_t src, size_t bytes, CUstream hs,
                   int direction /*0 HtoD, 1 DtoH, 2 DtoD*/) {
  Stream *s = streamOf(hs);
  if (!s)
    return FAIL(CUDA_ERROR_INVALID_HANDLE, "%s: unknown stream", api);
  if (!bytes)
    return CUDA_SUCCESS;
  std::string why = checkRange(direction == 1 ? src : dst, bytes, true, false);
  if (!why.empty())
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s: device %s: %s", api,
                direction == 1 ? "source" : "destination", why.c_str());
  if (direction == 2)
    why = checkRange(src, bytes, true, false);
  if (!why.empty())
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s: device source: %s", api, why.c_str());
  Op op;
  op.kind = Op::Copy;
  op.what = std::string(api) + "(" + std::to_string(bytes) + " bytes)";
  op.dst = dst;
  op.src = src;
  op.bytes = bytes;
  uintptr_t host = direction == 0 ? src : dst;
  bool pinned = direction != 2 && findBlock(host) && checkRange(host, bytes, false, true).empty();
  if (direction != 2 && findBlock(host) && !pinned) {
    why = checkRange(host, bytes, false, true);
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s: host %s: %s", api,
                direction == 0 ? "source" : "destination", why.c_str());
  }
  if (direction != 1 || pinned) // pageable host memory is not tracked
    op.regions.push_back({dst, dst + bytes, true});
  if (direction == 2 || pinned)
    op.regions.push_back({src, src + bytes, false});
  if (pinned) {
    op.hostSide = host;
    op.hostHash = hashBytes(host, bytes);
  }
  if (direction == 0 && !pinned) // pageable: staged now, as the driver does
    op.staged.assign(reinterpret_cast<const char *>(src), reinterpret_cast<const char *>(src) + bytes);
  if (direction == 1 && !pinned) { // pageable: the copy is done when the call returns
    if (CUresult st = enqueue(s, std::move(op)); st != CUDA_SUCCESS)
      return st;
    return drain(s);
  }
  return enqueue(s, std::move(op));
}

CUresult freeBlock(const char *api, uintptr_t p, MemKind kind) {
  auto it = blocks.find(p);
  if (it == blocks.end() || it->second.kind != kind)
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s(%s): %s", api, hex(p).c_str(),
                it == blocks.end() ? describePointer(p).c_str() : "memory of another kind");
  std::string use = pendingUse(it->second.base, it->second.size);
  if (!use.empty())
    return FAIL(CUDA_ERROR_ILLEGAL_STATE,
                "%s(%s): %s still uses it (synchronise before freeing memory a stream uses)", api,
                hex(p).c_str(), use.c_str());
  Block b = it->second;
  blocks.erase(it);
  freedBlocks.push_back(b);
  if (freedBlocks.size() > 4096)
    freedBlocks.pop_front();
  if (kind == MemKind::Device)
    deviceBytes -= b.size;
  if (kind != MemKind::Registered)
    std::free(reinterpret_cast<void *>(b.storage ? b.storage : b.base));
  return CUDA_SUCCESS;
}

} // namespace

// --- The driver API ----------------------------------------------------------------------------
// cuda.h's macros rename the definitions to the versioned symbols (cuMemAlloc -> cuMemAlloc_v2).

#define MOCK_API extern "C" __attribute__((visibility("default"))) CUresult CUDAAPI

MOCK_API cuInit(unsigned flags) {
  return api("cuInit", false, [&] {
    if (flags != 0)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuInit(%u): flags must be 0", flags);
    initialized = true;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDriverGetVersion(int *version) {
  return api("cuDriverGetVersion", false, [&] {
    if (!version)
      return CUDA_ERROR_INVALID_VALUE;
    *version = CUDA_VERSION;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuGetErrorName(CUresult error, const char **name) {
  if (!name)
    return CUDA_ERROR_INVALID_VALUE;
  *name = errorName(error);
  return *name ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

MOCK_API cuGetErrorString(CUresult error, const char **text) {
  if (!text)
    return CUDA_ERROR_INVALID_VALUE;
  *text = errorString(error);
  return *text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

MOCK_API cuDeviceGetCount(int *count) {
  return api("cuDeviceGetCount", false, [&] {
    if (!count)
      return CUDA_ERROR_INVALID_VALUE;
    const char *none = std::getenv("MERGEC_MOCK_CUDA_NO_DEVICE");
    *count = none && *none && std::strcmp(none, "0") != 0 ? 0 : 1;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDeviceGet(CUdevice *device, int ordinal) {
  return api("cuDeviceGet", false, [&] {
    const char *none = std::getenv("MERGEC_MOCK_CUDA_NO_DEVICE");
    if (!device || ordinal != 0 || (none && *none && std::strcmp(none, "0") != 0))
      return FAIL(CUDA_ERROR_INVALID_DEVICE, "cuDeviceGet(%d): there is one device, 0", ordinal);
    *device = 0;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDeviceGetName(char *name, int len, CUdevice device) {
  return api("cuDeviceGetName", false, [&] {
    if (!name || len <= 0 || device != 0)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuDeviceGetName: bad arguments");
    std::snprintf(name, static_cast<size_t>(len), "%s", kDeviceName);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDeviceGetAttribute(int *value, CUdevice_attribute attrib, CUdevice device) {
  return api("cuDeviceGetAttribute", false, [&] {
    if (!value || device != 0)
      return FAIL(CUDA_ERROR_INVALID_DEVICE, "cuDeviceGetAttribute: bad device %d", device);
    *value = attribute(attrib);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDeviceTotalMem(size_t *bytes, CUdevice device) {
  return api("cuDeviceTotalMem", false, [&] {
    if (!bytes || device != 0)
      return FAIL(CUDA_ERROR_INVALID_DEVICE, "cuDeviceTotalMem: bad device %d", device);
    *bytes = totalMemory();
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice device) {
  return api("cuDevicePrimaryCtxRetain", false, [&] {
    if (!ctx || device != 0)
      return FAIL(CUDA_ERROR_INVALID_DEVICE, "cuDevicePrimaryCtxRetain: bad device %d", device);
    ++primaryRefs;
    *ctx = reinterpret_cast<CUcontext>(&primary);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuDevicePrimaryCtxRelease(CUdevice device) {
  return api("cuDevicePrimaryCtxRelease", false, [&] {
    if (device != 0 || primaryRefs <= 0)
      return FAIL(CUDA_ERROR_INVALID_CONTEXT, "cuDevicePrimaryCtxRelease without a retain");
    if (--primaryRefs == 0) {
      // The context goes, and with it everything it held (memory, streams, events, modules)
      // and its sticky error; pointers into its memory are "freed" from now on.
      size_t held = 0;
      for (auto it = blocks.begin(); it != blocks.end();) {
        if (it->second.kind == MemKind::Registered) {
          ++it;
          continue;
        }
        ++held;
        freedBlocks.push_back(it->second);
        if (freedBlocks.size() > 4096)
          freedBlocks.pop_front();
        std::free(reinterpret_cast<void *>(it->second.storage ? it->second.storage : it->first));
        it = blocks.erase(it);
      }
      deviceBytes = 0;
      if (logging())
        std::fprintf(stderr, "mock-cuda: the primary context's release frees %zu blocks\n", held);
      for (Stream *st : streams)
        delete st;
      streams.clear();
      nullStream.ops.clear();
      for (Event *e : events)
        delete e;
      events.clear();
      for (Module *m : modules)
        delete m;
      modules.clear();
      sticky = CUDA_SUCCESS;
    }
    return CUDA_SUCCESS;
  });
}

MOCK_API cuCtxSetCurrent(CUcontext ctx) {
  return api("cuCtxSetCurrent", false, [&] {
    if (ctx && ctx != reinterpret_cast<CUcontext>(&primary))
      return FAIL(CUDA_ERROR_INVALID_CONTEXT, "cuCtxSetCurrent: unknown context");
    if (ctx && primaryRefs <= 0)
      return FAIL(CUDA_ERROR_INVALID_CONTEXT, "cuCtxSetCurrent: the primary context was released");
    current = ctx != nullptr;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuCtxSynchronize() {
  return api("cuCtxSynchronize", true, [&] { return drainAll(); });
}

MOCK_API cuCtxGetDevice(CUdevice *device) {
  return api("cuCtxGetDevice", true, [&] {
    if (!device)
      return CUDA_ERROR_INVALID_VALUE;
    *device = 0;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemGetInfo(size_t *freeBytes, size_t *total) {
  return api("cuMemGetInfo", true, [&] {
    if (!freeBytes || !total)
      return CUDA_ERROR_INVALID_VALUE;
    *total = totalMemory();
    *freeBytes = totalMemory() - std::min<uint64_t>(deviceBytes, totalMemory());
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemAlloc(CUdeviceptr *dptr, size_t bytes) {
  return api("cuMemAlloc", true, [&] {
    if (!dptr || bytes == 0)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuMemAlloc(%zu bytes): invalid", bytes);
    if (deviceBytes + bytes > totalMemory())
      return CUDA_ERROR_OUT_OF_MEMORY;
    size_t shift = misalignment();
    void *storage = std::aligned_alloc(256, (shift + bytes + kRedzone + 255) / 256 * 256);
    if (!storage)
      return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = static_cast<char *>(storage) + shift;
    std::memset(p, 0xA5, bytes); // never zeros: uninitialised reads show
    std::memset(static_cast<char *>(p) + bytes, kRedzoneByte, kRedzone);
    blocks[reinterpret_cast<uintptr_t>(p)] = {reinterpret_cast<uintptr_t>(p), bytes, MemKind::Device,
                                              reinterpret_cast<uintptr_t>(storage)};
    deviceBytes += bytes;
    *dptr = reinterpret_cast<CUdeviceptr>(p);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemFree(CUdeviceptr dptr) {
  return api("cuMemFree", true, [&] { return freeBlock("cuMemFree", dptr, MemKind::Device); });
}

MOCK_API cuMemAllocHost(void **pp, size_t bytes) {
  return api("cuMemAllocHost", true, [&] {
    if (!pp || bytes == 0)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuMemAllocHost(%zu bytes): invalid", bytes);
    void *p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
    if (!p)
      return CUDA_ERROR_OUT_OF_MEMORY;
    std::memset(p, 0x5A, bytes);
    blocks[reinterpret_cast<uintptr_t>(p)] = {reinterpret_cast<uintptr_t>(p), bytes, MemKind::Pinned};
    *pp = p;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemFreeHost(void *p) {
  return api("cuMemFreeHost", true, [&] {
    return freeBlock("cuMemFreeHost", reinterpret_cast<uintptr_t>(p), MemKind::Pinned);
  });
}

MOCK_API cuMemHostRegister(void *p, size_t bytes, unsigned flags) {
  return api("cuMemHostRegister", true, [&] {
    (void)flags;
    if (!p || !bytes)
      return CUDA_ERROR_INVALID_VALUE;
    auto base = reinterpret_cast<uintptr_t>(p);
    if (findBlock(base) || findBlock(base + bytes - 1))
      return FAIL(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "cuMemHostRegister: overlaps a block");
    blocks[base] = {base, bytes, MemKind::Registered};
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemHostUnregister(void *p) {
  return api("cuMemHostUnregister", true, [&] {
    auto it = blocks.find(reinterpret_cast<uintptr_t>(p));
    if (it == blocks.end() || it->second.kind != MemKind::Registered)
      return FAIL(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "cuMemHostUnregister: not registered");
    return freeBlock("cuMemHostUnregister", it->first, MemKind::Registered);
  });
}

MOCK_API cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t bytes) {
  return api("cuMemcpyHtoD", true, [&] {
    if (CUresult st = drainAll(); st != CUDA_SUCCESS)
      return st;
    std::string why = checkRange(dst, bytes, true, false);
    if (bytes && !why.empty())
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuMemcpyHtoD: destination: %s", why.c_str());
    if (bytes)
      std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t bytes) {
  return api("cuMemcpyDtoH", true, [&] {
    if (CUresult st = drainAll(); st != CUDA_SUCCESS)
      return st;
    std::string why = checkRange(src, bytes, true, false);
    if (bytes && !why.empty())
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuMemcpyDtoH: source: %s", why.c_str());
    if (bytes)
      std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t bytes, CUstream s) {
  return api("cuMemcpyHtoDAsync", true, [&] {
    return copyAsync("cuMemcpyHtoDAsync", dst, reinterpret_cast<uintptr_t>(src), bytes, s, 0);
  });
}

MOCK_API cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t bytes, CUstream s) {
  return api("cuMemcpyDtoHAsync", true, [&] {
    return copyAsync("cuMemcpyDtoHAsync", reinterpret_cast<uintptr_t>(dst), src, bytes, s, 1);
  });
}

MOCK_API cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s) {
  return api("cuMemcpyDtoDAsync", true,
             [&] { return copyAsync("cuMemcpyDtoDAsync", dst, src, bytes, s, 2); });
}

static CUresult memsetAsync(const char *name, CUdeviceptr dst, uint32_t value, unsigned width,
                            size_t count, CUstream hs) {
  Stream *s = streamOf(hs);
  if (!s)
    return FAIL(CUDA_ERROR_INVALID_HANDLE, "%s: unknown stream", name);
  if (!count)
    return CUDA_SUCCESS;
  if (dst % width)
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s: misaligned destination", name);
  std::string why = checkRange(dst, count * width, true, false);
  if (!why.empty())
    return FAIL(CUDA_ERROR_INVALID_VALUE, "%s: %s", name, why.c_str());
  Op op;
  op.kind = Op::Memset;
  op.what = std::string(name) + "(" + std::to_string(count) + " x " + std::to_string(width) + " bytes)";
  op.dst = dst;
  op.value = value;
  op.width = width;
  op.count = count;
  op.regions.push_back({dst, dst + count * width, true});
  return enqueue(s, std::move(op));
}

MOCK_API cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count, CUstream s) {
  return api("cuMemsetD8Async", true,
             [&] { return memsetAsync("cuMemsetD8Async", dst, value, 1, count, s); });
}

MOCK_API cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t count, CUstream s) {
  return api("cuMemsetD32Async", true,
             [&] { return memsetAsync("cuMemsetD32Async", dst, value, 4, count, s); });
}

MOCK_API cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned numOptions,
                            CUjit_option *options, void **values) {
  return api("cuModuleLoadDataEx", true, [&] {
    if (!module || !image || (numOptions && (!options || !values)))
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuModuleLoadDataEx: null arguments");
    char *log = nullptr;
    size_t logSize = 0;
    for (unsigned i = 0; i < numOptions; ++i) {
      if (options[i] == CU_JIT_ERROR_LOG_BUFFER)
        log = static_cast<char *>(values[i]);
      else if (options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        logSize = static_cast<size_t>(reinterpret_cast<uintptr_t>(values[i]));
    }
    auto m = std::make_unique<Module>();
    const char *text = static_cast<const char *>(image);
    std::string why;
    if (std::strncmp(text, "\x7f" "ELF", 4) == 0)
      why = "a cubin (ELF) image: the mock runs PTX modules only";
    else
      why = parsePtx(text, *m);
    if (!why.empty()) {
      if (log && logSize)
        std::snprintf(log, logSize, "%s", why.c_str());
      return FAIL(CUDA_ERROR_INVALID_PTX, "cuModuleLoadDataEx: %s", why.c_str());
    }
    *module = reinterpret_cast<CUmodule>(m.get());
    modules.insert(m.release());
    return CUDA_SUCCESS;
  });
}

MOCK_API cuModuleUnload(CUmodule hm) {
  return api("cuModuleUnload", true, [&] {
    auto *m = reinterpret_cast<Module *>(hm);
    if (!modules.count(m))
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuModuleUnload: unknown module");
    for (auto &[name, fn] : m->functions)
      for (Stream *s : streams)
        for (const Op &op : s->ops)
          if (op.fn == fn.get())
            return FAIL(CUDA_ERROR_ILLEGAL_STATE,
                        "cuModuleUnload: kernel %s is still queued on %s", name.c_str(),
                        s->name.c_str());
    modules.erase(m);
    delete m;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuModuleGetFunction(CUfunction *fn, CUmodule hm, const char *name) {
  return api("cuModuleGetFunction", true, [&] {
    auto *m = reinterpret_cast<Module *>(hm);
    if (!fn || !name || !modules.count(m))
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuModuleGetFunction(%s): unknown module",
                  name ? name : "null");
    auto it = m->functions.find(name);
    if (it == m->functions.end())
      return CUDA_ERROR_NOT_FOUND; // what the driver says; callers report it
    *fn = reinterpret_cast<CUfunction>(it->second.get());
    return CUDA_SUCCESS;
  });
}

static Function *functionOf(CUfunction f) {
  auto *fn = reinterpret_cast<Function *>(f);
  for (Module *m : modules)
    for (auto &[name, g] : m->functions)
      if (g.get() == fn)
        return fn;
  return nullptr;
}

MOCK_API cuFuncSetAttribute(CUfunction f, CUfunction_attribute attrib, int value) {
  return api("cuFuncSetAttribute", false, [&] {
    Function *fn = functionOf(f);
    if (!fn)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuFuncSetAttribute: unknown function");
    if (attrib == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
      if (value < 0 || value > kSharedOptin)
        return FAIL(CUDA_ERROR_INVALID_VALUE,
                    "cuFuncSetAttribute(%s, MAX_DYNAMIC_SHARED_SIZE_BYTES, %d): above the "
                    "device's %d", fn->name.c_str(), value, kSharedOptin);
      fn->maxDynamicShared = value;
    }
    return CUDA_SUCCESS;
  });
}

MOCK_API cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned sharedBytes, CUstream hs,
                        void **kernelParams, void **extra) {
  return api("cuLaunchKernel", true, [&]() -> CUresult {
    Function *fn = functionOf(f);
    if (!fn)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel: unknown function");
    const char *name = fn->name.c_str();
    Stream *s = streamOf(hs);
    if (!s)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuLaunchKernel(%s): unknown stream", name);
    if (!gx || !gy || !gz || !bx || !by || !bz || gy > 65535 || gz > 65535 || bx > 1024 ||
        by > 1024 || bz > 64 || uint64_t{bx} * by * bz > 1024 || gx > 2147483647u)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): grid %ux%ux%u, block %ux%ux%u",
                  name, gx, gy, gz, bx, by, bz);
    if (static_cast<int64_t>(sharedBytes) > fn->maxDynamicShared)
      return FAIL(CUDA_ERROR_INVALID_VALUE,
                  "cuLaunchKernel(%s): %u bytes of dynamic shared memory, the function allows %d "
                  "(cuFuncSetAttribute MAX_DYNAMIC_SHARED_SIZE_BYTES raises it)",
                  name, sharedBytes, fn->maxDynamicShared);
    if (extra)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): `extra` is not supported", name);
    if (!fn->params.empty() && !kernelParams)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): kernelParams is null", name);
    Op op;
    op.kind = Op::Launch;
    op.fn = fn;
    op.grid = gx;
    op.block = bx;
    op.smem = sharedBytes;
    op.what = "kernel " + fn->name + " (" + std::to_string(gx) + " blocks of " + std::to_string(bx) + ")";
    // The kinds of kernel the mock can run, and their parameter lists.
    if (gy != 1 || gz != 1 || by != 1 || bz != 1)
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): the mock runs 1-D grids only", name);
    size_t count = fn->params.size();
    if (fn->name == "add_scaled" || fn->name == "block_ids") {
      op.twin = fn->name == "add_scaled" ? TwinAddScaled : TwinBlockIds;
      size_t want = fn->name == "add_scaled" ? 24 : 19;
      if (count != want)
        return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): %zu parameters in the PTX, "
                    "the mock's twin has %zu", name, count, want);
    } else if (selectionKernels().count(fn->name)) {
      op.twin = TwinSelection;
      if (bx % 32)
        return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): block of %u threads", name, bx);
    } else if (fn->name.rfind("mergec_", 0) == 0 && fn->name.find("__") != std::string::npos) {
      op.twin = TwinMergec;
      op.cpu = findCpuKernel(fn->name);
      op.emulated =
          emulation() == Emulation::Off ? nullptr : findEmulatedKernel(fn->name, &op.resolver);
      if (op.emulated && !op.resolver)
        return FAIL(CUDA_ERROR_NOT_FOUND, "cuLaunchKernel(%s): the kernel's host build has no "
                    "resolver (mergec_gpu_emulation_resolve)", name);
      if (!op.emulated && (emulation() == Emulation::Required || emulation() == Emulation::Compare))
        return FAIL(CUDA_ERROR_NOT_FOUND,
                    "cuLaunchKernel(%s): MERGEC_MOCK_CUDA_EMULATE=%s but there is no host build of "
                    "this kernel (compile the executable with --gpu-emulation, or run mergec "
                    "with MERGEC_GPU_EMULATION=1)", name, std::getenv("MERGEC_MOCK_CUDA_EMULATE"));
      if (!op.cpu && emulation() == Emulation::Compare)
        return FAIL(CUDA_ERROR_NOT_FOUND, "cuLaunchKernel(%s): MERGEC_MOCK_CUDA_EMULATE=compare but "
                    "there is no CPU twin to compare the host build with", name);
      if (!op.cpu && !op.emulated)
        return FAIL(CUDA_ERROR_NOT_FOUND,
                    "cuLaunchKernel(%s): no CPU twin: the executable exports no "
                    "mergec_kernel_table entry of that name (the mock runs merge executables "
                    "built with `mergec compile --emit=exe --device cuda`, or mergec itself "
                    "with MERGEC_GPU_EMULATION=1)", name);
      if (count < 14 || (count - 14) % 5)
        return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): %zu parameters is not the "
                    "packed ABI's 5k + 14 (KernelABI.h)", name, count);
      size_t k = (count - 14) / 5;
      for (size_t i = 0; i < count; ++i) {
        size_t want = (i == 5 * k + 7 || i == 5 * k + 8) ? 4 : 8;
        if (fn->params[i] != want)
          return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): parameter %zu is %zu bytes, "
                      "the packed ABI's is %zu", name, i, fn->params[i], want);
      }
      if (bx != 256)
        return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): blocks of %u threads, the "
                    "ABI's kGpuBlock is 256", name, bx);
    } else {
      return FAIL(CUDA_ERROR_NOT_FOUND, "cuLaunchKernel(%s): the mock cannot run this kernel "
                  "(not a mergec phase kernel, a selection kernel nor a test kernel it knows)",
                  name);
    }
    // The parameters' values, as the driver copies them at the call.
    size_t words = 0;
    for (size_t bytes : fn->params) {
      op.offsets.push_back(words * 8);
      words += (bytes + 7) / 8;
    }
    op.storage.assign(words, 0);
    for (size_t i = 0; i < count; ++i) {
      if (!kernelParams[i])
        return FAIL(CUDA_ERROR_INVALID_VALUE, "cuLaunchKernel(%s): kernelParams[%zu] is null", name, i);
      std::memcpy(reinterpret_cast<char *>(op.storage.data()) + op.offsets[i], kernelParams[i],
                  fn->params[i]);
    }
    // What it touches: every 8-byte parameter that points into device memory, the whole
    // block (the mock cannot tell which bytes a kernel reads or writes).
    for (size_t i = 0; i < count; ++i)
      if (fn->params[i] == 8) {
        uint64_t v = param<uint64_t>(op, i);
        if (const Block *b = findBlock(v); b && b->kind == MemKind::Device)
          op.regions.push_back({b->base, b->base + b->size, true});
      }
    return enqueue(s, std::move(op));
  });
}

MOCK_API cuStreamCreate(CUstream *hs, unsigned flags) {
  return api("cuStreamCreate", true, [&] {
    if (!hs || (flags & ~unsigned{CU_STREAM_NON_BLOCKING}))
      return FAIL(CUDA_ERROR_INVALID_VALUE, "cuStreamCreate: bad arguments");
    auto *s = new Stream;
    s->name = "stream " + std::to_string(streams.size() + 1);
    streams.insert(s);
    *hs = reinterpret_cast<CUstream>(s);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuStreamDestroy(CUstream hs) {
  return api("cuStreamDestroy", false, [&] {
    auto *s = reinterpret_cast<Stream *>(hs);
    if (!streams.count(s))
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuStreamDestroy: unknown stream");
    if (!s->ops.empty()) {
      // The driver would finish the work later; here it is a bug of the caller's bookkeeping.
      report("cuStreamDestroy: %s still has %zu pending operations (first: %s)", s->name.c_str(),
             s->ops.size(), s->ops.front().what.c_str());
      drain(s);
      streams.erase(s);
      delete s;
      return CUDA_ERROR_ILLEGAL_STATE;
    }
    for (Event *e : events)
      if (e->stream == s)
        e->stream = nullptr;
    for (Stream *t : streams)
      for (Op &op : t->ops)
        if (op.other == s)
          op.other = nullptr;
    streams.erase(s);
    delete s;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuStreamSynchronize(CUstream hs) {
  return api("cuStreamSynchronize", false, [&] {
    Stream *s = streamOf(hs);
    if (!s)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuStreamSynchronize: unknown stream");
    if (sticky != CUDA_SUCCESS)
      return sticky;
    return drain(s);
  });
}

MOCK_API cuStreamWaitEvent(CUstream hs, CUevent he, unsigned flags) {
  return api("cuStreamWaitEvent", true, [&] {
    Stream *s = streamOf(hs);
    Event *e = eventOf(he);
    if (!s || !e || flags != 0)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuStreamWaitEvent: unknown stream or event");
    if (!e->recorded || e->completedSeq >= e->recordSeq || !e->stream)
      return CUDA_SUCCESS; // nothing to wait for
    Op op;
    op.kind = Op::Wait;
    op.what = "a wait for an event of " + e->stream->name;
    op.other = e->stream;
    op.until = e->recordSeq;
    if (e->stream == s)
      return CUDA_SUCCESS;
    return enqueue(s, std::move(op));
  });
}

MOCK_API cuEventCreate(CUevent *he, unsigned flags) {
  return api("cuEventCreate", true, [&] {
    if (!he)
      return CUDA_ERROR_INVALID_VALUE;
    auto *e = new Event;
    e->flags = flags;
    events.insert(e);
    *he = reinterpret_cast<CUevent>(e);
    return CUDA_SUCCESS;
  });
}

MOCK_API cuEventDestroy(CUevent he) {
  return api("cuEventDestroy", false, [&] {
    Event *e = eventOf(he);
    if (!e)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuEventDestroy: unknown event");
    // Pending records of it become no-ops (the driver allows destroying a recorded event).
    events.erase(e);
    delete e;
    return CUDA_SUCCESS;
  });
}

MOCK_API cuEventRecord(CUevent he, CUstream hs) {
  return api("cuEventRecord", true, [&] {
    Event *e = eventOf(he);
    Stream *s = streamOf(hs);
    if (!e || !s)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuEventRecord: unknown event or stream");
    Op op;
    op.kind = Op::Record;
    op.what = "an event record";
    op.event = e;
    e->recorded = true;
    e->stream = s;
    e->recordSeq = nextSeq; // enqueue gives op this number
    return enqueue(s, std::move(op));
  });
}

static CUresult waitEvent(const char *name, CUevent he) {
  Event *e = eventOf(he);
  if (!e)
    return FAIL(CUDA_ERROR_INVALID_HANDLE, "%s: unknown event", name);
  if (sticky != CUDA_SUCCESS)
    return sticky;
  if (!e->recorded || e->completedSeq >= e->recordSeq || !e->stream)
    return CUDA_SUCCESS;
  return drain(e->stream, e->recordSeq);
}

MOCK_API cuEventQuery(CUevent he) {
  return api("cuEventQuery", false, [&] { return waitEvent("cuEventQuery", he); });
}

MOCK_API cuEventSynchronize(CUevent he) {
  return api("cuEventSynchronize", false, [&] { return waitEvent("cuEventSynchronize", he); });
}

MOCK_API cuEventElapsedTime(float *ms, CUevent hstart, CUevent hstop) {
  return api("cuEventElapsedTime", false, [&] {
    Event *a = eventOf(hstart), *b = eventOf(hstop);
    if (!ms || !a || !b)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: unknown event");
    if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: an event created with "
                  "CU_EVENT_DISABLE_TIMING");
    if (!a->recorded || !b->recorded)
      return FAIL(CUDA_ERROR_INVALID_HANDLE, "cuEventElapsedTime: an event never recorded");
    if (a->completedSeq < a->recordSeq || b->completedSeq < b->recordSeq)
      return CUDA_ERROR_NOT_READY;
    *ms = static_cast<float>(std::max(b->time - a->time, 0.0005));
    return CUDA_SUCCESS;
  });
}
