//===- PhaseRunner.cpp - run a rule's compiled phases on one tensor -------===//
#include "mergec/Runtime/PhaseRunner.h"
#include "mergec/Runtime/MatrixPhase.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/KernelABI.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mergec::rt {

namespace {

/// a combined with b: sums add, maxima take the larger (NaN if either is NaN).
double combine(CompiledRule::Reduction kind, double a, double b) {
  if (kind == CompiledRule::Reduction::Sum)
    return a + b;
  return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
}

double identity(CompiledRule::Reduction kind) {
  return kind == CompiledRule::Reduction::Sum ? 0.0 : -std::numeric_limits<double>::infinity();
}

/// The map phase window by window (MapWindows). The kernels index the output with the
/// tensor's element index and take an identity-layout memref, whose offset field they ignore:
/// a window's descriptor therefore carries the address element 0 would have (the window's
/// memory less `begin` elements), computed as an integer, and the kernel touches only
/// [begin, end) through it, which is the window's memory.
void runMapWindows(Device &device, const CompiledRule &rule, size_t phase,
                   const std::vector<MemRefDescriptor> &descs, int64_t n, float layer,
                   float numLayers, const MemRefDescriptor &scalars, const ChunkHook *afterMap,
                   const MapWindows &windows) {
  if (windows.elements <= 0 || windows.elements % Device::kChunk)
    throw RuntimeError("internal: a map window of " + std::to_string(windows.elements) +
                       " elements, not whole chunks");
  for (int64_t begin = 0; begin < n; begin += windows.elements) {
    int64_t end = std::min(n, begin + windows.elements);
    void *memory = windows.acquire(begin, end);
    auto origin = reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(memory) -
                                           static_cast<uintptr_t>(begin) * windows.elementBytes);
    device.launchRange(
        rule, phase, descs,
        [&](size_t) { return MemRefDescriptor{memory, origin, 0, n, 1}; }, begin, end, layer,
        numLayers, scalars, afterMap);
    windows.computed(begin, end);
  }
}

} // namespace

ModelScope::ModelScope(const CompiledRule &rule) : meta_(rule.phases), phases_(rule.phases.size()) {
  for (size_t k = 0; k < meta_.size(); ++k) {
    const CompiledRule::Phase &p = meta_[k];
    PhaseState &state = phases_[k];
    if (!p.modelScope)
      continue;
    if (p.kind == CompiledRule::Kind::Reduce) {
      for (CompiledRule::Reduction r : p.reductions)
        state.totals.push_back(identity(r));
    } else if (p.kind == CompiledRule::Kind::TopK) {
      state.topk = std::make_unique<ModelTopK>(p.param, p.skip, p.nonzero);
    } else {
      throw RuntimeError("internal: only reductions and top-k selections run at model scope");
    }
  }
}

bool ModelScope::complete() const {
  for (size_t k = 0; k < phases_.size(); ++k)
    if (meta_[k].modelScope && !phases_[k].final)
      return false;
  return true;
}

void ModelScope::beginRound() {
  // A phase is needed when an unfinished model-scope phase depends on it (transitively).
  for (size_t k = 0; k < phases_.size(); ++k) {
    PhaseState &p = phases_[k];
    p.needed = meta_[k].modelScope && !p.final;
    p.touched = false;
    if (p.topk && p.topk->known())
      p.topk->rewind();
  }
  for (size_t k = phases_.size(); k-- > 0;)
    if (phases_[k].needed)
      for (size_t d : meta_[k].deps)
        phases_[d].needed = true;
}

std::vector<int64_t> ModelScope::mergeState() const {
  std::vector<int64_t> state;
  for (const PhaseState &p : phases_)
    if (p.topk) {
      auto [hi, lo] = p.topk->handedOut();
      state.push_back(hi);
      state.push_back(lo);
    }
  return state;
}

void ModelScope::restoreMergeState(const std::vector<int64_t> &state) {
  if (state.size() != mergeState().size())
    throw RuntimeError("internal: a model-scope state of " + std::to_string(state.size()) +
                       " numbers, expected " + std::to_string(mergeState().size()));
  size_t k = 0;
  for (PhaseState &p : phases_)
    if (p.topk) {
      p.topk->setHandedOut(state[k], state[k + 1]);
      k += 2;
    }
}

void ModelScope::endRound() {
  bool progress = false;
  for (PhaseState &p : phases_) {
    if (!p.touched)
      continue;
    progress = true;
    if (p.topk)
      p.final = p.topk->finishPass();
    else
      p.final = true;
  }
  if (!progress && !complete())
    throw RuntimeError("internal: a model-scope pass made no progress");
}

void ModelScope::combineRound(Communicator &comm, const std::vector<size_t> &items,
                              const std::vector<size_t> &owner) {
  comm.check();
  std::vector<int64_t> touched(phases_.size());
  for (size_t k = 0; k < phases_.size(); ++k)
    touched[k] = phases_[k].touched;
  comm.sum(touched.data(), touched.size());
  for (size_t k = 0; k < phases_.size(); ++k) {
    PhaseState &p = phases_[k];
    p.touched = touched[k] != 0;
    if (!meta_[k].modelScope || p.final)
      continue;
    if (p.topk) {
      p.topk->combineCounts([&](int64_t *data, size_t n) { comm.sum(data, n); });
      continue;
    }
    if (!p.touched)
      continue;
    // Every tensor's totals from the rank that analysed it, added in plan order.
    size_t m = meta_[k].reductions.size();
    std::vector<double> mine(items.size() * m, 0.0);
    for (size_t t = 0; t < items.size(); ++t)
      if (auto it = p.perItem.find(items[t]); it != p.perItem.end() && it->second.size() == m)
        std::copy(it->second.begin(), it->second.end(), mine.begin() + t * m);
    std::vector<double> all = comm.allgather(mine.data(), mine.size());
    for (size_t j = 0; j < m; ++j) {
      double total = identity(meta_[k].reductions[j]);
      for (size_t t = 0; t < items.size(); ++t)
        total = combine(meta_[k].reductions[j], total, all[owner[items[t]] * mine.size() + t * m + j]);
      p.totals[j] = total;
    }
    p.perItem.clear();
  }
}

void runRule(Device &device, const CompiledRule &rule, const std::vector<const void *> &inputs,
             void *output, const TensorInfo &tensor, float layer, float numLayers,
             ModelScope *scope, bool analysis, const ChunkHook *afterMap,
             std::vector<double> *scalarsOut, const MapWindows *windows) {
  using Kind = CompiledRule::Kind;
  int64_t n = tensor.numel();
  size_t count = static_cast<size_t>(n);
  std::vector<MemRefDescriptor> descs;
  for (const void *in : inputs)
    descs.push_back({const_cast<void *>(in), const_cast<void *>(in), 0, n, 1});
  // Row buffers are inputs to the phases after the one that fills them.
  std::vector<std::shared_ptr<void>> rows;
  for (size_t r = 0; r < rule.rowBuffers(); ++r) {
    rows.push_back(device.allocate(count * sizeof(float)));
    descs.push_back({rows.back().get(), rows.back().get(), 0, n, 1});
  }
  std::vector<double> scalars(static_cast<size_t>(rule.scalarSlots), 0.0);
  scalars[abi::kNameHashSlot] = abi::nameHash(tensor.name);
  scalars[abi::kColsSlot] = tensor.shape.empty() ? 1.0 : static_cast<double>(tensor.shape.back());
  scalars[abi::kNumelSlot] = static_cast<double>(n);
  if (rule.paramValues.size() != rule.params.size())
    throw RuntimeError("internal: the rule's params have no values bound");
  std::copy(rule.paramValues.begin(), rule.paramValues.end(),
            scalars.begin() + rule.firstParamSlot);
  MemRefDescriptor scalarDesc{scalars.data(), scalars.data(), 0,
                              static_cast<int64_t>(scalars.size()), 1};
  size_t chunks = std::max<size_t>(Device::chunkCount(n), 1);
  std::vector<double> partials;
  std::shared_ptr<void> keyBuffer, partialBuffer;
  std::vector<bool> done(rule.phases.size(), false);
  size_t nextRow = 0;
  for (size_t k = 0; k < rule.phases.size(); ++k) {
    const CompiledRule::Phase &phase = rule.phases[k];
    ModelScope::PhaseState *state =
        scope && phase.kind != Kind::Map ? &scope->phases_[k] : nullptr;
    float *rowBuffer =
        phase.kind == Kind::Row ? static_cast<float *>(rows[nextRow].get()) : nullptr;
    nextRow += phase.buffers;
    double *slot = &scalars[static_cast<size_t>(phase.firstSlot)];
    if (analysis) {
      // Only what an unfinished model-scope phase waits for, once its inputs are there.
      if (!state || !state->needed)
        continue;
      if (!std::all_of(phase.deps.begin(), phase.deps.end(), [&](size_t d) { return done[d]; }))
        continue;
    }
    if (!analysis && !output && !windows && phase.kind == Kind::Map)
      continue;
    bool wholeModel = state && phase.modelScope;
    bool accumulate = wholeModel && !state->final;
    if (accumulate && !analysis)
      throw RuntimeError("internal: a model-scope phase is unfinished at merge time");
    if (wholeModel && state->final && phase.kind == Kind::Reduce) {
      std::copy(state->totals.begin(), state->totals.end(), slot);
      done[k] = true;
      continue;
    }
    switch (phase.kind) {
    case Kind::Map:
      if (windows) {
        runMapWindows(device, rule, k, descs, n, layer, numLayers, scalarDesc, afterMap,
                      *windows);
        break;
      }
      device.launch(
          rule, k, descs, [&](size_t) { return MemRefDescriptor{output, output, 0, n, 1}; }, n,
          layer, numLayers, scalarDesc, afterMap);
      break;
    case Kind::Reduce: {
      // One f64 partial per reduction per chunk, combined here in chunk order: the result is
      // the same whatever order or parallelism the device ran the chunks in.
      size_t m = phase.reductions.size();
      partials.assign(chunks * m, 0.0);
      partialBuffer = device.allocate(partials.size() * sizeof(double));
      // Every chunk writes all m of its partials, so the buffer needs no clearing.
      auto *devicePartials = static_cast<double *>(partialBuffer.get());
      device.launch(
          rule, k, descs,
          [&](size_t c) {
            double *p = devicePartials + c * m;
            return MemRefDescriptor{p, p, 0, static_cast<int64_t>(m), 1};
          },
          n, layer, numLayers, scalarDesc);
      device.copyToHost(partials.data(), devicePartials, partials.size() * sizeof(double));
      for (size_t j = 0; j < m; ++j) {
        double total = identity(phase.reductions[j]);
        for (size_t c = 0; c < Device::chunkCount(n); ++c)
          total = combine(phase.reductions[j], total, partials[c * m + j]);
        slot[j] = total;
        if (accumulate) {
          state->totals[j] = combine(phase.reductions[j], state->totals[j], total);
          std::vector<double> &mine = state->perItem[scope->item_];
          mine.resize(m);
          mine[j] = total;
        }
      }
      break;
    }
    case Kind::Matrix: {
      // Once, over the whole tensor, on this thread (GEMMs use the linear algebra's threads,
      // LAPACK runs on this one): its scalar results into its slots, its matrices into its
      // buffers.
      std::vector<double> results(std::max<size_t>(phase.scalars, 1), 0.0);
      if (!phase.fn || !device.hostResident())
        throw RuntimeError("tensor " + tensor.name +
                           ": linear algebra (svd, @, ...) runs on the host only (--device cpu)");
      clearMatrixError();
      PackedArgs args(descs,
                      MemRefDescriptor{results.data(), results.data(), 0,
                                       static_cast<int64_t>(results.size()), 1},
                      0, n, layer, numLayers, scalarDesc);
      phase.fn(args.data());
      if (auto error = takeMatrixError())
        throw RuntimeError("tensor " + tensor.name + ": " + *error);
      std::copy(results.begin(), results.begin() + phase.scalars, slot);
      break;
    }
    case Kind::TopK:
    case Kind::Quantile:
    case Kind::Row: {
      if (!keyBuffer)
        keyBuffer = device.allocate(std::max<size_t>(count, 1) * sizeof(float));
      auto *keys = static_cast<float *>(keyBuffer.get());
      device.launch(
          rule, k, descs, [&](size_t) { return MemRefDescriptor{keys, keys, 0, n, 1}; }, n,
          layer, numLayers, scalarDesc);
      if (phase.kind == Kind::TopK) {
        RankBoundary hi, lo;
        if (accumulate)
          device.countModelTopK(*state->topk, keys, n);
        else if (wholeModel)
          device.modelTopKBoundaries(*state->topk, keys, n, hi, lo);
        else
          device.topkBoundaries(keys, n, phase.param, phase.skip, phase.nonzero, hi, lo);
        slot[0] = hi.bits;
        slot[1] = hi.index;
        slot[2] = lo.bits;
        slot[3] = lo.index;
      } else if (phase.kind == Kind::Quantile) {
        slot[0] = device.quantile(keys, n, phase.param);
      } else {
        auto cols = static_cast<int64_t>(scalars[abi::kColsSlot]);
        if (phase.row == CompiledRule::RowOp::Rank)
          device.rowRanks(keys, rowBuffer, n, cols);
        else
          device.rowReduce(keys, rowBuffer, n, cols, phase.row == CompiledRule::RowOp::Sum);
      }
      break;
    }
    }
    if (accumulate)
      state->touched = true;
    else
      done[k] = true;
  }
  if (scalarsOut)
    *scalarsOut = std::move(scalars);
}

} // namespace mergec::rt
