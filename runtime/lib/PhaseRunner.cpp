//===- PhaseRunner.cpp - run a rule's compiled phases on one tensor -------===//
#include "mergec/Runtime/PhaseRunner.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/ThreadPool.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mergec::rt {

namespace {

/// Elements per chunk: the unit of work for the thread pool and of reduction partials.
constexpr int64_t kChunk = 1 << 16;

size_t chunkCount(int64_t n) { return static_cast<size_t>((n + kChunk - 1) / kChunk); }

/// A memref<?xT> descriptor as the lowered kernels take it.
struct MemRefDescriptor {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t size;
  int64_t stride;
};

/// Calls `fn` on every chunk of [0, n) on the pool; `result(c)` gives chunk c's result
/// descriptor (the output buffer, or the chunk's partials). `after` follows each chunk.
template <typename ResultFn>
void runPhase(ThreadPool &pool, PackedKernel fn, const std::vector<MemRefDescriptor> &inputs,
              ResultFn result, int64_t n, float layer, float numLayers,
              const MemRefDescriptor &scalars, const ChunkHook *after = nullptr) {
  pool.parallelFor(chunkCount(n), [&](size_t c) {
    int64_t begin = static_cast<int64_t>(c) * kChunk, end = std::min(n, begin + kChunk);
    float l = layer, nl = numLayers;
    std::vector<MemRefDescriptor> descs = inputs;
    descs.push_back(result(c));
    descs.push_back(scalars);
    std::vector<void *> args;
    args.reserve(descs.size() * 5 + 4);
    auto addDescriptor = [&](MemRefDescriptor &d) {
      for (void *field : {static_cast<void *>(&d.allocated), static_cast<void *>(&d.aligned),
                          static_cast<void *>(&d.offset), static_cast<void *>(&d.size),
                          static_cast<void *>(&d.stride)})
        args.push_back(field);
    };
    for (size_t i = 0; i + 1 < descs.size(); ++i)
      addDescriptor(descs[i]);
    args.push_back(&begin);
    args.push_back(&end);
    args.push_back(&l);
    args.push_back(&nl);
    addDescriptor(descs.back());
    fn(args.data());
    if (after)
      (*after)(begin, end);
  });
}

/// a combined with b: sums add, maxima take the larger (NaN if either is NaN).
double combine(CompiledRule::Reduction kind, double a, double b) {
  if (kind == CompiledRule::Reduction::Sum)
    return a + b;
  return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b);
}

double identity(CompiledRule::Reduction kind) {
  return kind == CompiledRule::Reduction::Sum ? 0.0 : -std::numeric_limits<double>::infinity();
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

void runRule(ThreadPool &pool, const CompiledRule &rule, const std::vector<const void *> &inputs,
             void *output, const TensorInfo &tensor, float layer, float numLayers,
             ModelScope *scope, bool analysis, const ChunkHook *afterMap) {
  using Kind = CompiledRule::Kind;
  int64_t n = tensor.numel();
  std::vector<MemRefDescriptor> descs;
  for (const void *in : inputs)
    descs.push_back({const_cast<void *>(in), const_cast<void *>(in), 0, n, 1});
  // Row buffers are inputs to the phases after the one that fills them.
  std::vector<std::vector<float>> rows(rule.rowBuffers());
  for (auto &r : rows) {
    r.resize(static_cast<size_t>(n));
    descs.push_back({r.data(), r.data(), 0, n, 1});
  }
  std::vector<double> scalars(static_cast<size_t>(rule.scalarSlots), 0.0);
  scalars[abi::kNameHashSlot] = abi::nameHash(tensor.name);
  scalars[abi::kColsSlot] = tensor.shape.empty() ? 1.0 : static_cast<double>(tensor.shape.back());
  scalars[abi::kNumelSlot] = static_cast<double>(n);
  MemRefDescriptor scalarDesc{scalars.data(), scalars.data(), 0,
                              static_cast<int64_t>(scalars.size()), 1};
  size_t chunks = std::max<size_t>(chunkCount(n), 1);
  std::vector<double> partials;
  std::vector<float> keys;
  std::vector<bool> done(rule.phases.size(), false);
  size_t nextRow = 0;
  for (size_t k = 0; k < rule.phases.size(); ++k) {
    const CompiledRule::Phase &phase = rule.phases[k];
    ModelScope::PhaseState *state =
        scope && phase.kind != Kind::Map ? &scope->phases_[k] : nullptr;
    float *rowBuffer = phase.kind == Kind::Row ? rows[nextRow++].data() : nullptr;
    double *slot = &scalars[static_cast<size_t>(phase.firstSlot)];
    if (analysis) {
      // Only what an unfinished model-scope phase waits for, once its inputs are there.
      if (!state || !state->needed)
        continue;
      if (!std::all_of(phase.deps.begin(), phase.deps.end(), [&](size_t d) { return done[d]; }))
        continue;
    }
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
      runPhase(pool, phase.fn, descs,
               [&](size_t) { return MemRefDescriptor{output, output, 0, n, 1}; }, n, layer,
               numLayers, scalarDesc, afterMap);
      break;
    case Kind::Reduce: {
      size_t m = phase.reductions.size();
      partials.assign(chunks * m, 0.0);
      runPhase(pool, phase.fn, descs,
               [&](size_t c) {
                 double *p = &partials[c * m];
                 return MemRefDescriptor{p, p, 0, static_cast<int64_t>(m), 1};
               },
               n, layer, numLayers, scalarDesc);
      for (size_t j = 0; j < m; ++j) {
        double total = identity(phase.reductions[j]);
        for (size_t c = 0; c < chunkCount(n); ++c)
          total = combine(phase.reductions[j], total, partials[c * m + j]);
        slot[j] = total;
        if (accumulate)
          state->totals[j] = combine(phase.reductions[j], state->totals[j], total);
      }
      break;
    }
    case Kind::TopK:
    case Kind::Quantile:
    case Kind::Row: {
      keys.resize(static_cast<size_t>(n));
      float *target = keys.data();
      runPhase(pool, phase.fn, descs,
               [&](size_t) { return MemRefDescriptor{target, target, 0, n, 1}; }, n, layer,
               numLayers, scalarDesc);
      if (phase.kind == Kind::TopK) {
        RankBoundary hi, lo;
        if (accumulate)
          state->topk->count(keys.data(), n);
        else if (wholeModel)
          state->topk->boundaries(keys.data(), n, hi, lo);
        else
          topkBoundaries(keys.data(), n, phase.param, phase.skip, phase.nonzero, hi, lo);
        slot[0] = hi.bits;
        slot[1] = hi.index;
        slot[2] = lo.bits;
        slot[3] = lo.index;
      } else if (phase.kind == Kind::Quantile) {
        slot[0] = quantile(keys.data(), n, phase.param);
      } else {
        auto cols = static_cast<int64_t>(scalars[abi::kColsSlot]);
        if (phase.row == CompiledRule::RowOp::Rank)
          rowRanks(pool, keys.data(), rowBuffer, n, cols);
        else
          rowReduce(pool, keys.data(), rowBuffer, n, cols, phase.row == CompiledRule::RowOp::Sum);
      }
      break;
    }
    }
    if (accumulate)
      state->touched = true;
    else
      done[k] = true;
  }
}

} // namespace mergec::rt
