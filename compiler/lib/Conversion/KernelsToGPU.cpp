//===- KernelsToGPU.cpp - lowered phases to GPU kernels -------------------===//
// The CUDA target reuses everything up to merge-lower-kernels: a phase is a function with one
// loop over [begin, end). Here the loop is spread over GPU threads (Passes.td says how) and
// the function becomes a gpu.func kernel with the same arguments, so the runtime passes the
// CPU's packed argument array to cuLaunchKernel unchanged.
#include "mergec/Conversion/Passes.h"
#include "mergec/Runtime/KernelABI.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mergec {
#define GEN_PASS_DEF_MERGECONVERTKERNELSTOGPU
#include "mergec/Conversion/Passes.h.inc"
} // namespace mergec

using namespace mlir;

namespace {

constexpr int64_t kBlock = mergec::rt::abi::kGpuBlock;
/// Elements each thread of a map's chunk loop has in flight per iteration: the body runs for
/// i, i + S, ..., i + (kUnroll - 1) S (S: the block's threads) with every load and computation
/// first and the stores after, so a thread issues kUnroll independent loads per input before it
/// waits on any. One element per iteration leaves HBM bandwidth unused (too few bytes in flight
/// per SM). Copies past `end` read element end - 1 instead (always there, as i < end) and store
/// nothing: every element is still computed once, by the same code.
constexpr int64_t kUnroll = 4;

/// `loop` (over [first, end) by `stride`, no results) with kUnroll elements per iteration.
void unrollStrided(scf::ForOp loop, Value stride) {
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  Value end = loop.getUpperBound();
  Value wide = arith::MulIOp::create(b, loc, stride, arith::ConstantIndexOp::create(b, loc, kUnroll));
  Value last = arith::SubIOp::create(b, loc, end, arith::ConstantIndexOp::create(b, loc, 1));
  auto unrolled = scf::ForOp::create(b, loc, loop.getLowerBound(), end, wide);
  b.setInsertionPointToStart(unrolled.getBody());
  Block *body = loop.getBody();
  SmallVector<IRMapping> maps(kUnroll);
  SmallVector<Value> inside(kUnroll);
  for (int64_t k = 0; k < kUnroll; ++k) {
    Value i = unrolled.getInductionVar();
    if (k > 0) {
      i = arith::AddIOp::create(
          b, loc, i,
          arith::MulIOp::create(b, loc, stride, arith::ConstantIndexOp::create(b, loc, k)));
      inside[k] = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, end);
      i = arith::MinSIOp::create(b, loc, i, last);
    }
    maps[k].map(loop.getInductionVar(), i);
    for (Operation &op : body->without_terminator())
      if (!isa<memref::StoreOp>(op))
        b.clone(op, maps[k]);
  }
  for (int64_t k = 0; k < kUnroll; ++k) {
    OpBuilder::InsertionGuard guard(b);
    if (k > 0) {
      auto store = scf::IfOp::create(b, loc, inside[k], /*withElseRegion=*/false);
      b.setInsertionPointToStart(store.thenBlock());
    }
    for (Operation &op : body->without_terminator())
      if (isa<memref::StoreOp>(op))
        b.clone(op, maps[k]);
  }
  loop.erase();
}

/// The widest access a thread of a map makes to one buffer, in bytes: 16 is the widest global
/// load or store PTX has (ld.global.v4.b32), and a warp of them moves 512 contiguous bytes.
constexpr int64_t kVectorBytes = 16;
/// At most this many elements a vector (bf16: 8 elements are 16 bytes).
constexpr int64_t kMaxVectorElements = 8;

/// The accesses of a map's loop body that can become vector loads and stores: at the top level
/// of the body, of a 1-D buffer with the identity layout, at exactly the loop's index.
struct VectorAccesses {
  SmallVector<memref::LoadOp> loads;
  SmallVector<memref::StoreOp> stores;
  int64_t elements = 0; ///< elements per vector; 0: the loop stays as it is
};

/// The bytes of an element of type `t`; 0 for what is not a whole number of bytes (i1).
int64_t elementBytes(Type t) {
  if (!t.isIntOrFloat() || t.getIntOrFloatBitWidth() % 8)
    return 0;
  return t.getIntOrFloatBitWidth() / 8;
}

bool atIndex(Value memref, ValueRange indices, Value iv) {
  auto type = dyn_cast<MemRefType>(memref.getType());
  return type && type.getRank() == 1 && type.getLayout().isIdentity() && indices.size() == 1 &&
         indices[0] == iv && elementBytes(type.getElementType()) > 0;
}

VectorAccesses vectorAccesses(scf::ForOp loop) {
  VectorAccesses found;
  Value iv = loop.getInductionVar();
  llvm::SmallPtrSet<Value, 8> loaded, stored;
  int64_t widest = 0;
  for (Operation &op : loop.getBody()->without_terminator()) {
    if (auto load = dyn_cast<memref::LoadOp>(op); load && atIndex(load.getMemRef(), load.getIndices(), iv)) {
      found.loads.push_back(load);
      loaded.insert(load.getMemRef());
      widest = std::max(widest, elementBytes(load.getType()));
    } else if (auto store = dyn_cast<memref::StoreOp>(op);
               store && atIndex(store.getMemRef(), store.getIndices(), iv)) {
      found.stores.push_back(store);
      stored.insert(store.getMemRef());
      widest = std::max(widest, elementBytes(store.getValueToStore().getType()));
    }
  }
  // A buffer both read and written in the loop would be read after the vector store moved:
  // leave such loops alone (merge-lower-kernels makes none today).
  for (Value m : stored)
    if (loaded.contains(m))
      return {};
  // Any other access to a stored buffer (another index, a nested region) is left alone too.
  for (Value m : stored)
    for (Operation *user : m.getUsers())
      if (loop->isProperAncestor(user) && !llvm::is_contained(found.stores, user))
        return {};
  if (found.loads.empty() && found.stores.empty())
    return {};
  found.elements = std::min(kMaxVectorElements, kVectorBytes / widest);
  if (found.elements < 2)
    return {};
  return found;
}

/// Whether element `first` of every buffer in `buffers` (1-D, identity layout) starts a
/// V-element vector aligned to its size: `first` a multiple of V, each buffer's address a
/// multiple of V elements' bytes.
Value vectorAligned(OpBuilder &b, Location loc, Value first, int64_t v, ArrayRef<Value> buffers) {
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  auto isZero = [&](Value x) {
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, zero).getResult();
  };
  Value aligned = isZero(arith::RemUIOp::create(b, loc, first, arith::ConstantIndexOp::create(b, loc, v)));
  llvm::SmallPtrSet<Value, 8> checked;
  for (Value memref : buffers) {
    if (!checked.insert(memref).second)
      continue;
    int64_t bytes = v * elementBytes(cast<MemRefType>(memref.getType()).getElementType());
    Value address = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, memref);
    Value rem = arith::RemUIOp::create(b, loc, address, arith::ConstantIndexOp::create(b, loc, bytes));
    aligned = arith::AndIOp::create(b, loc, aligned, isZero(rem));
  }
  return aligned;
}

/// A map's chunk loop (over [first, end) of its chunk, one element an iteration, before it is
/// spread over the threads) with a vector path in front of it: when the chunk's first element
/// and every vectorized buffer are aligned to a vector (cuMemAlloc gives 256-byte aligned
/// buffers and chunks start at multiples of 65536, so every launch the runtime makes is),
/// thread t handles the V consecutive elements at first + t V, first + (t + 256) V, ... with
/// one V-wide load per input and one store per output (the body computed V times, element by
/// element, in between), and threads 0..r-1 the chunk's last r < V elements one each;
/// otherwise the loop as it is (the else branch). Same elements, same operations per element.
void addVectorPath(scf::ForOp loop, const VectorAccesses &accesses, Value tid, Value block) {
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  int64_t v = accesses.elements;
  Value first = loop.getLowerBound(), end = loop.getUpperBound(), iv = loop.getInductionVar();
  Value vConst = arith::ConstantIndexOp::create(b, loc, v);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  SmallVector<Value> buffers;
  for (memref::LoadOp load : accesses.loads)
    buffers.push_back(load.getMemRef());
  for (memref::StoreOp store : accesses.stores)
    buffers.push_back(store.getMemRef());
  Value aligned = vectorAligned(b, loc, first, v, buffers);
  auto choice = scf::IfOp::create(b, loc, aligned, /*withElseRegion=*/true);

  // The vector path.
  b.setInsertionPointToStart(choice.thenBlock());
  Value count = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, end, first), zero);
  Value whole = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, count, vConst), vConst);
  Value vectorEnd = arith::AddIOp::create(b, loc, first, whole);
  Value start = arith::AddIOp::create(b, loc, first, arith::MulIOp::create(b, loc, tid, vConst));
  Value step = arith::MulIOp::create(b, loc, block, vConst);
  auto vectors = scf::ForOp::create(b, loc, start, vectorEnd, step);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(vectors.getBody());
    Value at = vectors.getInductionVar();
    SmallVector<IRMapping> maps(v);
    for (int64_t j = 0; j < v; ++j)
      maps[j].map(iv, j == 0 ? at
                             : arith::AddIOp::create(b, loc, at, arith::ConstantIndexOp::create(b, loc, j))
                                   .getResult());
    for (memref::LoadOp load : accesses.loads) {
      auto type = VectorType::get({v}, load.getType());
      int64_t bytes = v * elementBytes(load.getType());
      Value wide = vector::LoadOp::create(b, loc, type, load.getMemRef(), ValueRange{at},
                                          /*nontemporal=*/false, llvm::MaybeAlign(bytes));
      for (int64_t j = 0; j < v; ++j)
        maps[j].map(load.getResult(), vector::ExtractOp::create(b, loc, wide, ArrayRef<int64_t>{j}));
    }
    for (int64_t j = 0; j < v; ++j)
      for (Operation &op : loop.getBody()->without_terminator())
        if (!llvm::is_contained(accesses.loads, &op) && !llvm::is_contained(accesses.stores, &op))
          b.clone(op, maps[j]);
    for (memref::StoreOp store : accesses.stores) {
      SmallVector<Value> values;
      for (int64_t j = 0; j < v; ++j)
        values.push_back(maps[j].lookupOrDefault(store.getValueToStore()));
      auto type = VectorType::get({v}, store.getValueToStore().getType());
      Value wide = vector::FromElementsOp::create(b, loc, type, values);
      int64_t bytes = v * elementBytes(store.getValueToStore().getType());
      vector::StoreOp::create(b, loc, wide, store.getMemRef(), ValueRange{at},
                              /*nontemporal=*/false, llvm::MaybeAlign(bytes));
    }
  }
  // The chunk's last (end - first) mod V elements: thread t takes vectorEnd + t.
  Value tail = arith::AddIOp::create(b, loc, vectorEnd, tid);
  auto inTail = scf::IfOp::create(b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, tail, end),
                                  /*withElseRegion=*/false);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(inTail.thenBlock());
    IRMapping map;
    map.map(iv, tail);
    for (Operation &op : loop.getBody()->without_terminator())
      b.clone(op, map);
  }
  // Otherwise the loop as it was.
  loop->moveBefore(choice.elseBlock()->getTerminator());
}

/// A reduction kernel's workgroup memory stays within 32 KiB (a block may have at most 48 KiB
/// of static shared memory): at most this much for the staged tiles of its inputs ...
constexpr int64_t kMaxStagingBytes = 16 * 1024;
/// ... and the block's tree combines at most this many accumulators at a time (8 bytes a
/// thread each). Geomedian of 8 models has 36 accumulators: one buffer each was 72 KiB.
constexpr int64_t kTreeGroup = 8;

/// A reduction loop's loads at the loop's index that go through workgroup memory in tiles
/// (stageReductionLoads): each distinct buffer gets a tile of kBlock * elements elements.
struct ReductionStaging {
  SmallVector<memref::LoadOp> loads;
  int64_t elements = 0; ///< V, the elements of a thread's vector; 0: no staging
  /// The distinct buffers `loads` read, in order: tile k is buffers()[k]'s.
  SmallVector<Value> buffers() const {
    SmallVector<Value> distinct;
    for (memref::LoadOp load : loads)
      if (!llvm::is_contained(distinct, load.getMemRef()))
        distinct.push_back(load.getMemRef());
    return distinct;
  }
};

ReductionStaging reductionStaging(scf::ForOp loop) {
  ReductionStaging staging;
  // A tile's loads all happen before its elements are computed: nothing in the loop may write
  // memory (merge-lower-kernels' reductions only read).
  bool writes = loop.getBody()->walk([](Operation *op) {
    auto effects = dyn_cast<MemoryEffectOpInterface>(op);
    if ((effects && effects.hasEffect<MemoryEffects::Write>()) ||
        (!effects && !op->hasTrait<OpTrait::HasRecursiveMemoryEffects>() && !isa<scf::YieldOp>(op)))
      return WalkResult::interrupt();
    return WalkResult::advance();
  }).wasInterrupted();
  VectorAccesses accesses = vectorAccesses(loop);
  if (writes || !accesses.elements || !accesses.stores.empty())
    return staging;
  staging.loads = accesses.loads;
  SmallVector<Value> buffers = staging.buffers();
  auto tileBytes = [&](int64_t v) {
    int64_t bytes = 0;
    for (Value buffer : buffers)
      bytes += kBlock * v * elementBytes(cast<MemRefType>(buffer.getType()).getElementType());
    return bytes;
  };
  int64_t v = accesses.elements;
  while (v >= 2 && tileBytes(v) > kMaxStagingBytes)
    v /= 2;
  if (v < 2)
    return {};
  staging.elements = v;
  return staging;
}

/// A reduction's chunk loop (over [first, end) with its accumulators, before it is spread over
/// the threads) preceded by the chunk's whole tiles of kBlock * V elements when the chunk's
/// start and the staged buffers are vector-aligned (every launch the runtime makes is): the
/// block copies a tile of each staged buffer into workgroup memory with one V-wide load per
/// thread (thread t: elements t V .. t V + V - 1 of the tile), a barrier, then thread t adds
/// the tile's elements t, t + kBlock, ..., t + (V - 1) kBlock in turn reading them there, a
/// barrier; the loop as it was (strided, 2 bytes a thread for bf16) takes what is left. A thread
/// adds exactly the elements it added before, in the same order, so the partials keep their
/// bits (the CPU's merge-tile-reductions computes this order); only the global loads are 16
/// bytes wide, coalesced, V times fewer.
void stageReductionLoads(scf::ForOp loop, const ReductionStaging &staging, ArrayRef<BlockArgument> tiles,
                         Value tid, Value block) {
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  int64_t v = staging.elements;
  Value first = loop.getLowerBound(), end = loop.getUpperBound(), iv = loop.getInductionVar();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value tile = arith::ConstantIndexOp::create(b, loc, kBlock * v);
  SmallVector<Value> buffers = staging.buffers();
  Value aligned = vectorAligned(b, loc, first, v, buffers);
  Value count = arith::MaxSIOp::create(b, loc, arith::SubIOp::create(b, loc, end, first), zero);
  Value whole = arith::MulIOp::create(b, loc, arith::DivUIOp::create(b, loc, count, tile), tile);
  Value stagedEnd =
      arith::AddIOp::create(b, loc, first, arith::SelectOp::create(b, loc, aligned, whole, zero));
  auto tileLoop = scf::ForOp::create(b, loc, first, stagedEnd, tile, loop.getInitArgs());
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(tileLoop.getBody());
    Value at = tileLoop.getInductionVar();
    Value mine = arith::MulIOp::create(b, loc, tid, arith::ConstantIndexOp::create(b, loc, v));
    Value from = arith::AddIOp::create(b, loc, at, mine);
    for (auto [k, buffer] : llvm::enumerate(buffers)) {
      Type element = cast<MemRefType>(buffer.getType()).getElementType();
      auto type = VectorType::get({v}, element);
      llvm::MaybeAlign align(v * elementBytes(element));
      Value wide = vector::LoadOp::create(b, loc, type, buffer, ValueRange{from}, /*nontemporal=*/false, align);
      vector::StoreOp::create(b, loc, wide, tiles[k], ValueRange{mine}, /*nontemporal=*/false, align);
    }
    gpu::BarrierOp::create(b, loc);
    auto elements = scf::ForOp::create(b, loc, zero, arith::ConstantIndexOp::create(b, loc, v), one,
                                       tileLoop.getRegionIterArgs());
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(elements.getBody());
      Value offset = arith::AddIOp::create(
          b, loc, tid, arith::MulIOp::create(b, loc, elements.getInductionVar(), block));
      IRMapping map;
      map.map(iv, arith::AddIOp::create(b, loc, at, offset).getResult());
      map.map(loop.getRegionIterArgs(), elements.getRegionIterArgs());
      for (memref::LoadOp load : staging.loads)
        map.map(load.getResult(),
                memref::LoadOp::create(b, loc, tiles[llvm::find(buffers, load.getMemRef()) - buffers.begin()],
                                       ValueRange{offset})
                    .getResult());
      for (Operation &op : loop.getBody()->without_terminator())
        if (!llvm::is_contained(staging.loads, &op))
          b.clone(op, map);
      SmallVector<Value> next;
      for (Value x : loop.getBody()->getTerminator()->getOperands())
        next.push_back(map.lookupOrDefault(x));
      scf::YieldOp::create(b, loc, next);
    }
    gpu::BarrierOp::create(b, loc);
    scf::YieldOp::create(b, loc, elements.getResults());
  }
  loop.getLowerBoundMutable().assign(stagedEnd);
  loop.getInitArgsMutable().assign(tileLoop.getResults());
}

/// The phase's loop nest (merge-lower-kernels): the scf.parallel over chunks directly in the
/// function body, holding the scf.for over one chunk's elements. Scalar loops before it (e.g.
/// Weiszfeld's iterations) stay as they are: every thread computes them alike.
struct PhaseLoops {
  scf::ParallelOp chunks;
  scf::ForOp elements;
};

FailureOr<PhaseLoops> phaseLoops(func::FuncOp f) {
  PhaseLoops loops;
  for (Operation &op : f.getBody().front())
    if (auto p = dyn_cast<scf::ParallelOp>(op)) {
      if (loops.chunks || p.getNumLoops() != 1)
        return failure();
      loops.chunks = p;
    }
  if (!loops.chunks)
    return failure();
  for (Operation &op : loops.chunks.getBody()->without_terminator())
    if (auto l = dyn_cast<scf::ForOp>(op)) {
      if (loops.elements)
        return failure();
      loops.elements = l;
    }
  if (!loops.elements || loops.chunks.getNumResults() != 0)
    return failure();
  return loops;
}

struct ConvertKernelsToGPUPass
    : mergec::impl::MergeConvertKernelsToGPUBase<ConvertKernelsToGPUPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> phases(module.getOps<func::FuncOp>());
    if (phases.empty())
      return;
    OpBuilder b(module.getContext());
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(), b.getUnitAttr());
    b.setInsertionPointToEnd(module.getBody());
    auto gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), mergec::kGpuModuleName);
    for (func::FuncOp f : phases) {
      if (f.isDeclaration())
        continue; // the host library a matrix phase calls
      // A matrix phase is a host program of BLAS and LAPACK calls (cuBLAS and cuSOLVER are
      // not wired in yet): say so rather than fail on its shape.
      if (f->hasAttr(mergec::kHostAttr)) {
        f.emitError("linear algebra (svd, @, lowrank, ...) does not run on the CUDA target yet; "
                    "run this rule with --device cpu");
        return signalPassFailure();
      }
      if (failed(convert(f, gpuModule)))
        return signalPassFailure();
    }
  }

  LogicalResult convert(func::FuncOp f, gpu::GPUModuleOp gpuModule) {
    FailureOr<PhaseLoops> found = phaseLoops(f);
    unsigned numArgs = f.getNumArguments();
    if (failed(found) || numArgs < 5)
      return f.emitError("a phase function must hold one scf.parallel over chunks around one "
                         "scf.for over their elements (run merge-lower-kernels first)");
    scf::ParallelOp chunks = found->chunks;
    scf::ForOp loop = found->elements;
    bool reduction = loop.getNumResults() > 0;
    size_t m = loop.getNumResults();

    OpBuilder b(gpuModule.getBodyRegion());
    b.setInsertionPointToEnd(gpuModule.getBody());
    auto f64 = b.getF64Type();
    auto workgroup = gpu::AddressSpaceAttr::get(b.getContext(), gpu::AddressSpace::Workgroup);
    // A reduction's workgroup memory: the tree's buffer (kBlock partials of up to kTreeGroup
    // accumulators), then a tile of each staged buffer.
    ReductionStaging staging;
    SmallVector<Type> shared;
    if (reduction) {
      staging = reductionStaging(loop);
      int64_t group = std::min<int64_t>(m, kTreeGroup);
      shared.push_back(MemRefType::get({group * kBlock}, f64, MemRefLayoutAttrInterface{}, workgroup));
      for (Value buffer : staging.buffers())
        shared.push_back(MemRefType::get({kBlock * staging.elements},
                                         cast<MemRefType>(buffer.getType()).getElementType(),
                                         MemRefLayoutAttrInterface{}, workgroup));
    }
    auto kernel = gpu::GPUFuncOp::create(b, f.getLoc(), f.getSymName(), f.getFunctionType(), shared);
    kernel->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    kernel.setKnownBlockSize(ArrayRef<int32_t>{static_cast<int32_t>(kBlock), 1, 1});
    for (NamedAttribute attr : f->getAttrs())
      if (attr.getName().getValue().starts_with("merge."))
        kernel->setAttr(attr.getName(), attr.getValue());
    // Every buffer a phase gets is its own allocation (inputs, row buffers, the result, the
    // scalars): telling LLVM so lets loads move ahead of stores and use the read-only path.
    for (unsigned i = 0; i < numArgs; ++i)
      if (isa<MemRefType>(f.getArgument(i).getType()))
        kernel.setArgAttr(i, "llvm.noalias", b.getUnitAttr());

    // Move the body over: the kernel's entry block has the same arguments, then the
    // workgroup buffers.
    Block &dst = kernel.getBody().front();
    Block &src = f.getBody().front();
    for (unsigned i = 0; i < numArgs; ++i)
      src.getArgument(i).replaceAllUsesWith(dst.getArgument(i));
    dst.getOperations().splice(dst.end(), src.getOperations());
    auto ret = cast<func::ReturnOp>(dst.getTerminator());
    b.setInsertionPoint(ret);
    gpu::ReturnOp::create(b, ret.getLoc());
    ret.erase();
    // Arguments (KernelABI.h): ..., result, begin, end, layer, num_layers, scalars.
    Value begin = dst.getArgument(numArgs - 5), end = dst.getArgument(numArgs - 4);
    f.erase();

    Location loc = loop.getLoc();
    b.setInsertionPoint(chunks);
    Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
    Value bid = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
    Value block = arith::ConstantIndexOp::create(b, loc, kBlock);
    // Block `bid` is chunk `bid` (the runtime launches one block per chunk): the body of the
    // scf.parallel moves out with its induction variable bound to the block index, and the
    // chunk's loop runs over the block's threads, thread t taking elements t, t + kBlock, ...
    // in order.
    Block *chunkBody = chunks.getBody();
    chunkBody->getArgument(0).replaceAllUsesWith(bid);
    chunkBody->getTerminator()->erase();
    chunks->getBlock()->getOperations().splice(Block::iterator(chunks), chunkBody->getOperations());
    chunks.erase();
    ArrayRef<BlockArgument> buffers = kernel.getWorkgroupAttributions();
    if (!reduction) {
      if (VectorAccesses accesses = vectorAccesses(loop); accesses.elements)
        addVectorPath(loop, accesses, tid, block);
    } else if (staging.elements) {
      stageReductionLoads(loop, staging, buffers.drop_front(), tid, block);
    }
    b.setInsertionPoint(loop);
    loop.getLowerBoundMutable().assign(
        arith::AddIOp::create(b, loc, loop.getLowerBound(), tid).getResult());
    loop.getStepMutable().assign(block);
    if (!reduction) {
      unrollStrided(loop, block);
      return success();
    }

    // How each accumulator combines: the op that updates it in the loop (addf or maximumf).
    auto yield = cast<scf::YieldOp>(loop.getBody()->getTerminator());
    SmallVector<bool> isSum;
    for (size_t j = 0; j < m; ++j) {
      Operation *update = yield.getOperand(j).getDefiningOp();
      if (isa_and_nonnull<arith::AddFOp>(update))
        isSum.push_back(true);
      else if (isa_and_nonnull<arith::MaximumFOp>(update))
        isSum.push_back(false);
      else
        return kernel.emitError("reduction accumulator ") << j << " is neither a sum nor a maximum";
    }

    // The stores of the loop's results into result[j] (the CPU's chunk partials) become the
    // block's tree: each thread's partial into workgroup memory, halving strides with a
    // barrier between levels, thread 0 writing result[bid * m + j]; kTreeGroup accumulators at
    // a time, through one buffer.
    SmallVector<memref::StoreOp> stores(m);
    for (Operation *user : loop->getUsers())
      if (auto store = dyn_cast<memref::StoreOp>(user)) {
        auto result = dyn_cast<OpResult>(store.getValueToStore());
        if (!result || result.getOwner() != loop.getOperation())
          return kernel.emitError("a reduction's results must be stored as they are");
        size_t j = result.getResultNumber();
        if (stores[j])
          return kernel.emitError("reduction results must each be stored once");
        stores[j] = store;
      }
    if (llvm::is_contained(stores, memref::StoreOp()))
      return kernel.emitError("reduction results must each be stored once");
    // After the last of them: the indices they store at are all computed by then.
    Operation *lastStore = stores.front();
    for (memref::StoreOp store : stores)
      if (lastStore->isBeforeInBlock(store))
        lastStore = store;
    b.setInsertionPointAfter(lastStore);
    Value tree = buffers.front();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    for (size_t g = 0; g < m; g += kTreeGroup) {
      size_t n = std::min<size_t>(kTreeGroup, m - g);
      if (g > 0)
        gpu::BarrierOp::create(b, loc); // thread 0 has read the last group's totals
      // Accumulator g + k's partials are tree[k * kBlock, (k + 1) * kBlock).
      auto at = [&](size_t k, Value lane) {
        if (k == 0)
          return lane;
        return arith::AddIOp::create(b, loc, lane, arith::ConstantIndexOp::create(b, loc, k * kBlock))
            .getResult();
      };
      for (size_t k = 0; k < n; ++k)
        memref::StoreOp::create(b, loc, loop.getResult(g + k), tree, ValueRange{at(k, tid)});
      gpu::BarrierOp::create(b, loc);
      for (int64_t stride = kBlock / 2; stride >= 1; stride /= 2) {
        Value s = arith::ConstantIndexOp::create(b, loc, stride);
        Value active = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, tid, s);
        auto level = scf::IfOp::create(b, loc, active, /*withElseRegion=*/false);
        {
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(level.thenBlock());
          Value other = arith::AddIOp::create(b, loc, tid, s);
          for (size_t k = 0; k < n; ++k) {
            Value mineAt = at(k, tid);
            Value mine = memref::LoadOp::create(b, loc, tree, ValueRange{mineAt});
            Value theirs = memref::LoadOp::create(b, loc, tree, ValueRange{at(k, other)});
            Value combined = isSum[g + k] ? Value(arith::AddFOp::create(b, loc, mine, theirs))
                                          : Value(arith::MaximumFOp::create(b, loc, mine, theirs));
            memref::StoreOp::create(b, loc, combined, tree, ValueRange{mineAt});
          }
        }
        gpu::BarrierOp::create(b, loc);
      }
      Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, tid, zero);
      auto write = scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(write.thenBlock());
      for (size_t k = 0; k < n; ++k) {
        memref::StoreOp store = stores[g + k];
        Value total = memref::LoadOp::create(b, loc, tree, ValueRange{at(k, zero)});
        // result[bid * m + j]: the index merge-lower-kernels computed for chunk bid.
        memref::StoreOp::create(b, loc, total, store.getMemRef(), store.getIndices());
      }
    }
    for (memref::StoreOp store : stores)
      store.erase();
    return success();
  }
};

} // namespace
