//===- CudaEmulation.h - run SelectionKernels.cu's kernels on the CPU -----*- C++ -*-===//
// Just enough of CUDA C++ for runtime/cuda/SelectionKernels.cu to compile as host C++ and run
// in the mock driver (MockCuda.cpp): threadIdx/blockIdx/blockDim/gridDim, __syncthreads,
// __syncwarp, the warp collectives it uses (__ballot_sync, __all_sync, __shfl_sync,
// __shfl_up_sync, __reduce_add_sync), atomicAdd, __popc/__ffs, float<->bits, static
// __shared__ arrays and dynamic shared memory (MERGEC_DYNAMIC_SHARED).
//
// One block at a time: its threads are cooperative fibers (ucontext) on the calling thread,
// run in thread order in even blocks and in reverse in odd ones, switched at every barrier and
// warp collective, so a barrier not reached by every live thread
// or a collective left pending is reported (deadlock), never silently passed. Warps are lanes
// 32w..32w+31; a collective completes when all 32 lanes reached it (full masks only, which is
// all SelectionKernels.cu uses). Static __shared__ arrays become function statics (one block
// runs at a time; their contents are not cleared between blocks, like real shared memory).
// Not thread-safe: the mock calls launch() under its global lock.
#pragma once
#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Switching fibers: on x86-64 a minimal switch (callee-saved registers and the stack pointer;
// swapcontext's signal-mask system calls made the emulation ~50x slower), ucontext elsewhere.
#if defined(__x86_64__)
extern "C" void mergec_emu_switch(void **save, void *to);
#ifdef MERGEC_EMU_DEFINE_SWITCH // in one translation unit (MockSelection.cpp)
asm(R"(
.text
.globl mergec_emu_switch
.hidden mergec_emu_switch
.type mergec_emu_switch,@function
mergec_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size mergec_emu_switch, .-mergec_emu_switch
)");
#endif
struct EmuContext {
  void *sp = nullptr;
};
inline void emuSwap(EmuContext *from, EmuContext *to) { mergec_emu_switch(&from->sp, to->sp); }
inline void emuMake(EmuContext *c, char *stack, size_t size, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t{15};
  auto *sp = reinterpret_cast<void **>(top);
  *--sp = nullptr;                            // entry's (never used) return address
  *--sp = reinterpret_cast<void *>(entry);    // mergec_emu_switch returns into entry
  for (int i = 0; i < 6; ++i)
    *--sp = nullptr;                          // rbp rbx r12 r13 r14 r15
  c->sp = sp;
}
#else
struct EmuContext {
  ucontext_t uc;
};
inline void emuSwap(EmuContext *from, EmuContext *to) { swapcontext(&from->uc, &to->uc); }
inline void emuMake(EmuContext *c, char *stack, size_t size, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}
#endif

namespace emu {
struct Fiber {
  EmuContext ctx;
  dim3 tid;
  bool done = false;
};
constexpr size_t kStackBytes = 128 * 1024;
inline std::vector<Fiber> fibers;
inline std::vector<std::unique_ptr<char[]>> stacks; // kept across launches
inline unsigned cur = 0;
inline EmuContext mainCtx;
inline dim3 blockIdxV, blockDimV, gridDimV;
inline unsigned live = 0, arrived = 0;
inline unsigned long gen = 0, progress = 0;
inline unsigned *dynamicShared = nullptr;
inline std::string failure; ///< set when a block deadlocks; launch() then returns false
struct Warp {
  unsigned long long a[32], b[32], result[32];
  unsigned arrived = 0;
  unsigned long gen = 0;
};
inline std::vector<Warp> warps;
inline std::function<void()> body;

inline void yield() { emuSwap(&fibers[cur].ctx, &mainCtx); }
inline void syncthreads() {
  unsigned long g = gen;
  ++progress;
  if (++arrived == live) {
    arrived = 0;
    ++gen;
  } else {
    while (gen == g)
      yield();
  }
}
template <class F> unsigned long long warpOp(unsigned long long a, unsigned long long b, F f) {
  unsigned tid = fibers[cur].tid.x, lane = tid & 31;
  Warp &w = warps[tid / 32];
  w.a[lane] = a;
  w.b[lane] = b;
  ++progress;
  unsigned long g = w.gen;
  if (++w.arrived == 32) {
    w.arrived = 0;
    for (unsigned l = 0; l < 32; ++l)
      w.result[l] = f(w, l);
    ++w.gen;
  } else {
    while (w.gen == g)
      yield();
  }
  return w.result[lane];
}
inline void trampoline() {
  body();
  fibers[cur].done = true;
  --live;
  ++progress;
  emuSwap(&fibers[cur].ctx, &mainCtx);
}
/// Runs kernel() for every thread of every block; false (with `failure`) on a deadlock or a
/// collective left pending.
inline bool launch(unsigned grid, unsigned block, std::function<void()> kernel) {
  gridDimV.x = grid;
  blockDimV.x = block;
  failure.clear();
  if (block % 32) {
    failure = "block of " + std::to_string(block) + " threads is not a whole number of warps";
    return false;
  }
  body = std::move(kernel);
  fibers.assign(block, Fiber{});
  while (stacks.size() < block)
    stacks.emplace_back(new char[kStackBytes]);
  for (unsigned b = 0; b < grid; ++b) {
    blockIdxV.x = b;
    live = block;
    arrived = 0;
    warps.assign(block / 32, Warp{});
    for (unsigned t = 0; t < block; ++t) {
      Fiber &f = fibers[t];
      f.done = false;
      f.tid.x = t;
      emuMake(&f.ctx, stacks[t].get(), kStackBytes, trampoline);
    }
    while (live) {
      unsigned long before = progress;
      // Even blocks run their threads in order, odd blocks in reverse: a thread reading what
      // another wrote without a barrier between sees stale data in one of the two orders
      // (whichever way the dependence goes), so such a race changes the output.
      for (unsigned u = 0; u < block; ++u) {
        unsigned t = (b & 1) ? block - 1 - u : u;
        if (!fibers[t].done) {
          cur = t;
          emuSwap(&mainCtx, &fibers[t].ctx);
        }
      }
      if (progress == before && live) {
        // The fibers stuck in a barrier are abandoned (their stacks are reused next time).
        failure = "deadlock in block " + std::to_string(b) + ": " + std::to_string(live) +
                  " threads wait at a barrier or warp collective that not all reach";
        return false;
      }
    }
    for (auto &w : warps)
      if (w.arrived) {
        failure = "a warp collective was left pending in block " + std::to_string(b);
        return false;
      }
    if (arrived) {
      failure = "a barrier was left pending in block " + std::to_string(b);
      return false;
    }
  }
  return true;
}
} // namespace emu

#define threadIdx (emu::fibers[emu::cur].tid)
#define blockIdx (emu::blockIdxV)
#define blockDim (emu::blockDimV)
#define gridDim (emu::gridDimV)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define MERGEC_DYNAMIC_SHARED(type, name) type *name = reinterpret_cast<type *>(emu::dynamicShared)

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xFFFFFFFFu) {
  emu::warpOp(0, 0, [](emu::Warp &, unsigned) { return 0ull; });
}
inline unsigned __ballot_sync(unsigned, int p) {
  return static_cast<unsigned>(emu::warpOp(p != 0, 0, [](emu::Warp &w, unsigned) {
    unsigned long long r = 0;
    for (int l = 0; l < 32; ++l)
      r |= (w.a[l] ? 1ull : 0ull) << l;
    return r;
  }));
}
inline bool __all_sync(unsigned, int p) {
  return emu::warpOp(p != 0, 0, [](emu::Warp &w, unsigned) {
    for (int l = 0; l < 32; ++l)
      if (!w.a[l])
        return 0ull;
    return 1ull;
  });
}
inline unsigned __shfl_sync(unsigned, unsigned v, unsigned src) {
  return static_cast<unsigned>(
      emu::warpOp(v, src, [](emu::Warp &w, unsigned l) { return w.a[w.b[l] & 31]; }));
}
inline unsigned __shfl_up_sync(unsigned, unsigned v, unsigned off) {
  return static_cast<unsigned>(emu::warpOp(v, off, [](emu::Warp &w, unsigned l) {
    return l >= w.b[l] ? w.a[l - w.b[l]] : w.a[l];
  }));
}
inline unsigned __reduce_add_sync(unsigned, unsigned v) {
  return static_cast<unsigned>(emu::warpOp(v, 0, [](emu::Warp &w, unsigned) {
    unsigned s = 0;
    for (int l = 0; l < 32; ++l)
      s += static_cast<unsigned>(w.a[l]);
    return static_cast<unsigned long long>(s);
  }));
}
inline unsigned atomicAdd(unsigned *p, unsigned v) {
  unsigned o = *p;
  *p += v;
  return o;
}
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
  auto o = *p;
  *p += v;
  return o;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
