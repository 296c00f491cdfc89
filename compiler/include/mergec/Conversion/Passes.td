//===- Passes.td - lowering the merge dialect ------------------*- tablegen -*-===//
#ifndef MERGEC_CONVERSION_PASSES
#define MERGEC_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def MergeLowerKernels : Pass<"merge-lower-kernels", "mlir::ModuleOp"> {
  let summary = "Lower each fused rule to phase functions: a target-neutral loop nest over memrefs";
  let description = [{
    A specialized rule (its inputs and result have storage dtypes) becomes

      `func @rule(%in0: memref<?xS0>, ..., %out: memref<?xSo>, %begin: index, %end: index,
                  %layer: f32, %num_layers: f32, %scalars: memref<?xf64>)`

    (one function per phase: `rule_N_phaseK` for reductions, selections and row phases, the
    rule's name for the map phase) whose body computes the scalars once and then runs the
    target-neutral loop nest over [begin, end):

      scf.parallel (%c) = (0) to (ceildiv(end - begin, 65536)) {   // independent chunks
        scf.for %i = begin + c * 65536 to min(end, ...) { ... }    // a chunk's elements, in order
      }

    with the kernel body inside: `load(in_k[i])` widened to f32 (bf16 as
    `bitcast(zext(bits) << 16)`), the kernel's arith ops, and a store rounded to So (bf16:
    round to nearest even on the bits, NaN kept quiet). A reduction phase carries f64
    accumulators through the chunk's loop and stores chunk c's partials at
    result[c * m + j]: which elements a partial holds, and their order, is fixed by the IR,
    whichever target runs the chunks (KernelABI.h). bf16 storage is
    carried as i16 memrefs so the rounding is explicit integer code that vectorizes, not a
    libcall. The func keeps `merge.inputs`, the model of each memref argument.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect", "mlir::func::FuncDialect",
                           "mlir::cf::ControlFlowDialect", "mlir::math::MathDialect",
                           "mlir::LLVM::LLVMDialect"];
}

def MergeConvertKernelsToGPU : Pass<"merge-convert-kernels-to-gpu", "mlir::ModuleOp"> {
  let summary = "Turn each lowered phase function into a GPU kernel in one gpu.module";
  let description = [{
    The CUDA target's first step after the shared lowering (merge-lower-kernels): every
    `func.func` phase of the module becomes a `gpu.func ... kernel` with the same arguments
    (so the runtime passes the same flattened descriptors as to the CPU's packed functions)
    inside `gpu.module @mergec_kernels`, with a known block size of abi::kGpuBlock threads.
    The loop nest merge-lower-kernels made (an scf.parallel over chunks, an scf.for over each
    chunk's elements) maps onto the grid: block b is chunk b (the runtime launches one block
    per chunk) and the chunk's loop is spread over its threads, thread t taking elements
    t, t + blockDim, ... of the chunk in order.

    - a loop without results (map, select and row-key phases) gets a vector path: when the
      chunk's start and every buffer accessed at the loop's index are aligned to a 16-byte
      vector (cuMemAlloc's blocks and the runtime's 256-byte packing make every launch so),
      thread t handles the V consecutive elements at start + t V, start + (t + 256) V, ...
      (V = 16 bytes / the widest such element: 8 bf16, 4 f32) with one vector load per input
      and one vector store per output, and threads 0..r-1 the chunk's last r < V elements;
      otherwise (the else branch) four elements 256 apart per iteration, all loads first and
      the stores after, so each thread has four loads per input in flight;
    - a reduction loop (f64 accumulators): when the chunk's start and the buffers it reads at
      the loop's index are vector-aligned, the chunk's whole tiles of 256 V elements come
      first, each staged through workgroup memory (one V-wide load per thread and buffer, a
      barrier, thread t adding the tile's elements t, t + 256, ... from there, a barrier):
      the elements and order of the strided loop, which takes what is left; V halves until
      the tiles fit 16 KiB. Then the block combines its threads' partials in a fixed tree in
      workgroup memory, 8 accumulators at a time through one buffer (no atomics: the same
      bits every run; at most 32 KiB of workgroup memory with the tiles), and thread 0 stores
      chunk b's partial j where the loop nest put it, result[b * m + j]; the runtime combines
      the chunks in chunk order exactly as for the CPU.
  }];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::arith::ArithDialect",
                           "mlir::scf::SCFDialect", "mlir::memref::MemRefDialect",
                           "mlir::vector::VectorDialect"];
}

def MergeTileReductions : Pass<"merge-tile-reductions", "mlir::ModuleOp"> {
  let summary = "CPU: a chunk's reduction in the GPU block's order, vectorized";
  let description = [{
    A reduction phase's chunk loop (merge-lower-kernels) adds each element's value into f64
    accumulators. This pass gives it the order the CUDA target's block computes
    (merge-convert-kernels-to-gpu): lane l of `lanes` accumulates elements l, l + lanes, ...
    of the chunk in order, starting from the loop's initial values, and the lanes combine by a
    tree of halving strides (lane l takes lane l + s, s = lanes/2, ..., 1). So a chunk's
    partial has the same bits on either device, and on the CPU it vectorizes:

      // scf.for %i iter_args(%acc) { %w = f(%i); %n = addf %acc, %w; yield %n }
      //   => partials[j, l] = init_j
      //      scf.for %t step lanes {
      //        scf.for %i in tile { buf[j, %i - %t] = f_j(%i) }                 // no reductions
      //        scf.for %k in tile { partials[j, %k] = addf partials[j, %k], buf[j, %k] }
      //      }
      //      tree over partials[j, *]; result_j = partials[j, 0]

    Neither inner loop carries a value from one iteration to the next, so both vectorize.
    `buf` and `partials` are stack buffers of m x lanes values allocated once per call (`buf`
    in f32 when every value is an f32 widened to f64, widened again where it is added). A loop
    whose accumulators are not each updated once by addf or maximumf with a value independent
    of them is left as it is. The CPU pipeline runs this after merge-lower-kernels with
    lanes = abi::kGpuBlock.
  }];
  let options = [Option<"lanes", "lanes", "int64_t", /*default=*/"256",
                         "partial accumulators per chunk (the GPU block's threads); a power of two">];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect"];
}

def MergeSplitRowLoops : Pass<"merge-split-row-loops", "mlir::ModuleOp"> {
  let summary = "CPU: an element loop that reads per-row values runs row by row";
  let description = [{
    merge-lower-kernels reads a row phase's per-row buffer (a sum or maximum: one value per
    row) at `arith.divui %i, %cols`. On the CPU a division per element is slower than the
    element's math and keeps the loop scalar, so a loop (unit step, no iter_args) whose body
    divides its induction variable by a value defined outside it becomes a loop over rows
    around a loop over the row's part of the range, the quotient replaced by the row:

      // scf.for %i = %lb to %ub { %q = divui %i, %c; ... }
      //   => scf.for %r = %lb / %c to ceildiv(%ub, %c) {
      //        scf.for %i = max(%lb, %r * %c) to min(%ub, %r * %c + %c) { ... %r ... }
      //      }

    Loads at %r from memrefs the function never stores to move out of the inner loop. The
    elements run in the same order, so the results are the same bits. The CPU pipeline runs
    it after merge-tile-reductions (a reduction's tile loops have no iter_args); the GPU keeps
    the division.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect"];
}

#endif // MERGEC_CONVERSION_PASSES
