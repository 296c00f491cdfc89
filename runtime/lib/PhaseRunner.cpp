//===- PhaseRunner.cpp - run a rule's compiled phases on one tensor -------===//
#include "mergec/Runtime/PhaseRunner.h"
#include "mergec/Runtime/MatrixPhase.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/KernelABI.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

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

/// A descriptor for `memory` holding the elements from `first` on of a tensor of n elements, as
/// the kernels address it: by the tensor's element index. Identity-layout memrefs ignore the
/// descriptor's offset field, so the aligned pointer is where element 0 would be (computed as
/// an integer); the kernel touches only elements from `first` on through it.
MemRefDescriptor shiftedView(void *memory, int64_t first, size_t elementBytes, int64_t n) {
  auto origin = reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(memory) -
                                         static_cast<uintptr_t>(first) * elementBytes);
  return MemRefDescriptor{memory, origin, 0, n, 1};
}

/// A tensor's row phases computed window by window. A rank phase's buffer (a rank per element)
/// is as large as the tensor; for large tensors the runner instead computes, before each
/// window of a later phase, the rows that window touches into window-sized buffers, and runs
/// the later phase over that window alone (launchRange). Rows are recomputed for every phase
/// that reads them, so this is for tensors whose row buffers would exceed kRowBufferBudget:
/// smaller ones keep one whole-tensor buffer per row phase. A sum or maximum phase's buffer (a
/// value per row) stays whole either way, its rows recomputed with the window's. The bytes are
/// the same either way: a row's keys and ranks depend on the row alone, and a reduction's
/// partials on its chunk alone.
class RowWindows {
public:
  /// Row buffers up to this size in all stay whole-tensor buffers (computed once); a test hook,
  /// MERGEC_TEST_ROW_BUFFER_BUDGET=BYTES, moves it (tests/e2e/check_row_windows.py compares
  /// windowed and whole-tensor rows).
  static uint64_t budget() {
    static const uint64_t bytes = [] {
      const char *text = std::getenv("MERGEC_TEST_ROW_BUFFER_BUDGET");
      return text && *text ? std::strtoull(text, nullptr, 10) : kRowBufferBudget;
    }();
    return bytes;
  }
  static constexpr uint64_t kRowBufferBudget = 64ull << 20;
  /// Elements per window: whole chunks, fixed (never from the thread count).
  static constexpr int64_t kWindow = 32 * Device::kChunk;

  /// Whether `rule` over a tensor of n elements (rows of `cols`) runs its rows in windows: a
  /// host device, row buffers over the budget, and only reductions and the map phase (which
  /// run over windows) reading them; selections, quantiles and matrix phases need the whole
  /// tensor at once.
  static bool wanted(const Device &device, const CompiledRule &rule, int64_t n, int64_t cols) {
    return device.hostResident() && wanted(rule, n, cols);
  }
  static bool wanted(const CompiledRule &rule, int64_t n, int64_t cols) {
    uint64_t rowBytes = 0;
    for (const CompiledRule::Phase &p : rule.phases) {
      if (p.kind == CompiledRule::Kind::Matrix)
        return false;
      if (p.kind == CompiledRule::Kind::Row)
        rowBytes += static_cast<uint64_t>(p.bufferElements(n, cols)) * sizeof(float);
    }
    if (rowBytes <= budget())
      return false;
    for (size_t k = 0; k < rule.phases.size(); ++k) {
      CompiledRule::Kind kind = rule.phases[k].kind;
      if (kind != CompiledRule::Kind::Row && kind != CompiledRule::Kind::Reduce &&
          kind != CompiledRule::Kind::Map && !rowsOf(rule, k).empty())
        return false;
    }
    return true;
  }

  /// The row phases phase k reads, directly or through other row phases, in phase order.
  static std::vector<size_t> rowsOf(const CompiledRule &rule, size_t k) {
    std::vector<bool> seen(rule.phases.size(), false);
    std::vector<size_t> stack(rule.phases[k].deps.begin(), rule.phases[k].deps.end());
    while (!stack.empty()) {
      size_t d = stack.back();
      stack.pop_back();
      if (seen[d] || rule.phases[d].kind != CompiledRule::Kind::Row)
        continue;
      seen[d] = true;
      stack.insert(stack.end(), rule.phases[d].deps.begin(), rule.phases[d].deps.end());
    }
    std::vector<size_t> rows;
    for (size_t d = 0; d < seen.size(); ++d)
      if (seen[d])
        rows.push_back(d);
    return rows;
  }

  /// Window buffers for a tensor of n elements in rows of `cols`; `descs` holds the inputs,
  /// then one descriptor per buffer of the rule (row phases' buffers at `rowSlot`).
  RowWindows(Device &device, const CompiledRule &rule, int64_t n, int64_t cols)
      : device_(device), rule_(rule), n_(n), cols_(std::max<int64_t>(cols, 1)) {
    capacity_ = static_cast<size_t>(capacity(n, cols_));
    keys_ = zeroed(capacity_);
    size_t slot = 0;
    for (const CompiledRule::Phase &p : rule.phases) {
      if (p.kind == CompiledRule::Kind::Row)
        buffers_.push_back(
            {slot, p.perRow(), zeroed(static_cast<size_t>(bufferElements(p, n, cols_)))});
      slot += p.buffers;
    }
  }

  /// The elements of row phase p's buffer in windows: a window's ranks, or every row's value.
  static int64_t bufferElements(const CompiledRule::Phase &p, int64_t n, int64_t cols) {
    return p.perRow() ? p.bufferElements(n, cols) : capacity(n, cols);
  }

  /// Elements per window buffer: a window [b, e) needs the rows it touches, [x, y), and the
  /// row kernels run over the whole chunks around those: at most a chunk and a row more on
  /// each side.
  static int64_t capacity(int64_t n, int64_t cols) {
    return std::min<int64_t>(n, kWindow + 2 * (std::max<int64_t>(cols, 1) + Device::kChunk));
  }

  /// Runs phase k over every window, computing first the rows it reads; `launch(begin, end)`
  /// runs the phase over [begin, end) (whole chunks).
  void sweep(size_t k, std::vector<MemRefDescriptor> &descs, size_t firstBuffer,
             const MemRefDescriptor &scalars, float layer, float numLayers,
             const std::function<void(int64_t, int64_t)> &launch) {
    sweep(k, descs, firstBuffer, scalars, layer, numLayers, 0, n_, launch);
  }
  /// The same over [from, to) alone (`from` a multiple of kChunk): a window of the map phase
  /// the executor streams.
  void sweep(size_t k, std::vector<MemRefDescriptor> &descs, size_t firstBuffer,
             const MemRefDescriptor &scalars, float layer, float numLayers, int64_t from,
             int64_t to, const std::function<void(int64_t, int64_t)> &launch) {
    std::vector<size_t> rows = rowsOf(rule_, k);
    for (int64_t b = from; b < to; b += kWindow) {
      int64_t e = std::min(to, b + kWindow);
      computeRows(rows, b, e, descs, firstBuffer, scalars, layer, numLayers);
      launch(b, e);
    }
  }

private:
  struct Buffer {
    size_t slot; ///< its place among the rule's buffers
    bool perRow; ///< a value per row, the whole tensor's (not a window)
    std::shared_ptr<void> memory;
  };

  std::shared_ptr<void> zeroed(size_t elements) {
    // Zeroed once: a row kernel over the chunks around a window reads the other row buffers
    // outside the window's rows too (stale, finite values whose keys are never ranked).
    elements = std::max<size_t>(elements, 1);
    std::shared_ptr<void> p = device_.allocate(elements * sizeof(float));
    std::memset(p.get(), 0, elements * sizeof(float));
    return p;
  }

  MemRefDescriptor view(void *memory, int64_t origin) const {
    return shiftedView(memory, origin, sizeof(float), n_);
  }

  void computeRows(const std::vector<size_t> &rows, int64_t b, int64_t e,
                   std::vector<MemRefDescriptor> &descs, size_t firstBuffer,
                   const MemRefDescriptor &scalars, float layer, float numLayers) {
    if (rows.empty())
      return;
    int64_t x = b / cols_ * cols_;
    int64_t y = std::min(n_, (e + cols_ - 1) / cols_ * cols_);
    int64_t from = x / Device::kChunk * Device::kChunk;
    int64_t to = std::min(n_, (y + Device::kChunk - 1) / Device::kChunk * Device::kChunk);
    if (static_cast<size_t>(to - from) > capacity_)
      throw RuntimeError("internal: a row window of " + std::to_string(to - from) +
                         " elements, more than its " + std::to_string(capacity_));
    // Every window buffer's view starts at `from` for this window, before any row kernel reads
    // one; a per-row buffer is the whole tensor's rows.
    for (const Buffer &buf : buffers_)
      descs[firstBuffer + buf.slot] =
          buf.perRow ? MemRefDescriptor{buf.memory.get(), buf.memory.get(), 0, n_ / cols_, 1}
                     : view(buf.memory.get(), from);
    auto *keys = static_cast<float *>(keys_.get());
    for (size_t r : rows) {
      const CompiledRule::Phase &phase = rule_.phases[r];
      const Buffer &buf = *std::find_if(buffers_.begin(), buffers_.end(), [&](const Buffer &x) {
        return x.slot == slotOf(r);
      });
      device_.launchRange(
          rule_, r, descs, [&](size_t) { return view(keys, from); }, from, to, layer, numLayers,
          scalars);
      float *out = static_cast<float *>(buf.memory.get()) + (buf.perRow ? x / cols_ : x - from);
      if (phase.row == CompiledRule::RowOp::Rank)
        device_.rowRanks(keys + (x - from), out, y - x, cols_);
      else
        device_.rowReduce(keys + (x - from), out, y - x, cols_,
                          phase.row == CompiledRule::RowOp::Sum);
    }
  }

  size_t slotOf(size_t phase) const {
    size_t slot = 0;
    for (size_t k = 0; k < phase; ++k)
      slot += rule_.phases[k].buffers;
    return slot;
  }

  Device &device_;
  const CompiledRule &rule_;
  int64_t n_, cols_;
  size_t capacity_ = 0;
  std::shared_ptr<void> keys_;
  std::vector<Buffer> buffers_;
};
/// The map phase window by window (MapWindows). The kernels index the output with the
/// tensor's element index and take an identity-layout memref, whose offset field they ignore:
/// a window's descriptor therefore carries the address element 0 would have (the window's
/// memory less `begin` elements), computed as an integer, and the kernel touches only
/// [begin, end) through it, which is the window's memory.
void runMapWindows(
    int64_t n, const MapWindows &windows,
    const std::function<void(const std::function<MemRefDescriptor(size_t)> &, int64_t, int64_t)>
        &launch) {
  if (windows.elements <= 0 || windows.elements % Device::kChunk)
    throw RuntimeError("internal: a map window of " + std::to_string(windows.elements) +
                       " elements, not whole chunks");
  for (int64_t begin = 0; begin < n; begin += windows.elements) {
    int64_t end = std::min(n, begin + windows.elements);
    void *memory = windows.acquire(begin, end);
    MemRefDescriptor view = shiftedView(memory, begin, windows.elementBytes, n);
    launch([&](size_t) { return view; }, begin, end);
    windows.computed(begin, end);
  }
}

} // namespace

int64_t hostBufferElements(const CompiledRule &rule, int64_t n, int64_t cols) {
  if (!RowWindows::wanted(rule, n, cols))
    return rule.bufferElements(n, cols);
  int64_t elements = RowWindows::capacity(n, cols); // the keys
  for (const CompiledRule::Phase &p : rule.phases)
    if (p.kind == CompiledRule::Kind::Row)
      elements += RowWindows::bufferElements(p, n, cols);
  return elements;
}

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

void ModelScope::sampleTopKFirst(int64_t elements) {
  for (PhaseState &p : phases_)
    if (p.topk)
      p.topk->sampleFirst(elements);
}

std::string ModelScope::roundName() const {
  for (size_t k = 0; k < phases_.size(); ++k)
    if (meta_[k].modelScope && !phases_[k].final && phases_[k].topk)
      return phases_[k].topk->passName();
  return "totals";
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
  // Row buffers are inputs to the phases after the one that fills them: whole-tensor buffers,
  // or for large tensors window buffers that the phases reading them fill as they go.
  size_t firstBuffer = descs.size();
  int64_t cols = tensor.shape.empty() ? 1 : tensor.shape.back();
  std::optional<RowWindows> windowed;
  if (RowWindows::wanted(device, rule, n, cols))
    windowed.emplace(device, rule, n, cols);
  std::vector<std::shared_ptr<void>> rows;
  for (const CompiledRule::Phase &phase : rule.phases)
    for (size_t r = 0; r < phase.buffers; ++r) {
      int64_t elements = phase.bufferElements(n, cols);
      rows.push_back(windowed ? nullptr
                              : device.allocate(static_cast<size_t>(std::max<int64_t>(elements, 1)) *
                                                sizeof(float)));
      descs.push_back({rows.back().get(), rows.back().get(), 0, elements, 1});
    }
  std::vector<double> scalars(static_cast<size_t>(rule.scalarSlots), 0.0);
  scalars[abi::kNameHashSlot] = abi::nameHash(tensor.name);
  scalars[abi::kColsSlot] = tensor.shape.empty() ? 1.0 : static_cast<double>(tensor.shape.back());
  scalars[abi::kNumelSlot] = static_cast<double>(n);
  if (MatrixSink *sink = matrixSink())
    scalars[abi::kBundleRankSlot] = static_cast<double>(sink->rank());
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
  // Top-k and row phases that ran with an earlier sibling's passes (streamTopKBoundaries',
  // streamRows' jobs), and where each phase's row buffers start.
  std::vector<bool> ranWithSibling(rule.phases.size(), false);
  std::vector<size_t> rowIndex(rule.phases.size(), 0);
  for (size_t j = 1; j < rule.phases.size(); ++j)
    rowIndex[j] = rowIndex[j - 1] + rule.phases[j - 1].buffers;
  for (size_t k = 0; k < rule.phases.size(); ++k) {
    const CompiledRule::Phase &phase = rule.phases[k];
    ModelScope::PhaseState *state =
        scope && phase.kind != Kind::Map ? &scope->phases_[k] : nullptr;
    float *rowBuffer =
        phase.kind == Kind::Row ? static_cast<float *>(rows[rowIndex[k]].get()) : nullptr;
    if (ranWithSibling[k])
      continue;
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
    case Kind::Map: {
      // Over [begin, end) into `result`: with windowed rows, part by part after the rows each
      // part reads.
      auto launch = [&](const std::function<MemRefDescriptor(size_t)> &result, int64_t begin,
                        int64_t end) {
        auto part = [&](int64_t b, int64_t e) {
          device.launchRange(rule, k, descs, result, b, e, layer, numLayers, scalarDesc,
                             afterMap);
        };
        if (windowed)
          windowed->sweep(k, descs, firstBuffer, scalarDesc, layer, numLayers, begin, end, part);
        else
          part(begin, end);
      };
      if (windows)
        runMapWindows(n, *windows, launch);
      else
        launch([&](size_t) { return MemRefDescriptor{output, output, 0, n, 1}; }, 0, n);
      break;
    }
    case Kind::Reduce: {
      // One f64 partial per reduction per chunk, combined here in chunk order: the result is
      // the same whatever order or parallelism the device ran the chunks in.
      size_t m = phase.reductions.size();
      partials.assign(chunks * m, 0.0);
      partialBuffer = device.allocate(partials.size() * sizeof(double));
      // Every chunk writes all m of its partials, so the buffer needs no clearing.
      auto *devicePartials = static_cast<double *>(partialBuffer.get());
      auto result = [&](size_t c) {
        double *p = devicePartials + c * m;
        return MemRefDescriptor{p, p, 0, static_cast<int64_t>(m), 1};
      };
      if (windowed && !RowWindows::rowsOf(rule, k).empty())
        windowed->sweep(k, descs, firstBuffer, scalarDesc, layer, numLayers,
                        [&](int64_t begin, int64_t end) {
                          device.launchRange(rule, k, descs, result, begin, end, layer,
                                             numLayers, scalarDesc);
                        });
      else
        device.launch(rule, k, descs, result, n, layer, numLayers, scalarDesc);
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
    case Kind::Row:
      // Windowed: the phases that read this one compute its rows window by window.
      if (windowed)
        break;
      [[fallthrough]];
    case Kind::TopK:
    case Kind::Quantile: {
      auto cols = static_cast<int64_t>(scalars[abi::kColsSlot]);
      bool rank = phase.row == CompiledRule::RowOp::Rank;
      bool sum = phase.row == CompiledRule::RowOp::Sum;
      if (device.streamsKeys()) {
        // No key buffer: each pass over the keys re-runs this phase's kernel on a chunk (of
        // whole rows for a row phase) into the calling thread's scratch. The kernel stores
        // key i at aligned + i, so the scratch goes in shifted down by the chunk's start.
        int64_t chunk = phase.kind == Kind::Row ? rowChunkSize(cols) : Device::kChunk;
        auto keysOf = [&, chunk](const CompiledRule::Phase &p) {
          PackedKernel fn = p.fn;
          if (!fn)
            throw RuntimeError("internal: phase " + p.symbol + " has no host code");
          return KeyChunks(n, chunk, true, [&, fn, chunk](size_t c, float *scratch) {
            int64_t begin = static_cast<int64_t>(c) * chunk, end = std::min(n, begin + chunk);
            PackedArgs args(descs, shiftedView(scratch, begin, sizeof(float), n), begin, end,
                            layer, numLayers, scalarDesc);
            fn(args.data());
            return scratch;
          });
        };
        KeyChunks keys = keysOf(phase);
        // Phase k and the tensor-scope phases of its kind right after it that read none of
        // the group's results (TIES's top-ks, DELLA's ranks, filter_wise's row sums: one a
        // task vector or a pair): their keys are computed and used in one set of passes.
        auto siblings = [&] {
          std::vector<size_t> group{k};
          for (size_t j = k + 1; !analysis && j < rule.phases.size(); ++j) {
            const CompiledRule::Phase &next = rule.phases[j];
            bool independent = std::none_of(next.deps.begin(), next.deps.end(), [&](size_t d) {
              return std::find(group.begin(), group.end(), d) != group.end();
            });
            if (next.kind != phase.kind || (scope && next.modelScope) || !independent)
              break;
            group.push_back(j);
          }
          return group;
        };
        if (phase.kind == Kind::TopK && !accumulate && !wholeModel) {
          std::vector<size_t> group = siblings();
          std::vector<KeyChunks> groupKeys;
          groupKeys.reserve(group.size());
          std::vector<TopKJob> jobs;
          for (size_t j : group) {
            const CompiledRule::Phase &p = rule.phases[j];
            groupKeys.push_back(j == k ? std::move(keys) : keysOf(p));
            jobs.push_back(TopKJob{&groupKeys.back(), p.param, p.skip, p.nonzero, {}, {}});
          }
          device.streamTopKBoundaries(jobs);
          for (size_t g = 0; g < group.size(); ++g) {
            double *out = &scalars[static_cast<size_t>(rule.phases[group[g]].firstSlot)];
            out[0] = jobs[g].hi.bits;
            out[1] = jobs[g].hi.index;
            out[2] = jobs[g].lo.bits;
            out[3] = jobs[g].lo.index;
            if (group[g] != k) {
              ranWithSibling[group[g]] = true;
              done[group[g]] = true;
            }
          }
        } else if (phase.kind == Kind::TopK) {
          RankBoundary hi, lo;
          state->topk->setTensor(tensor.name);
          if (accumulate)
            device.streamCountModelTopK(*state->topk, keys);
          else
            device.streamModelTopKBoundaries(*state->topk, keys, hi, lo);
          slot[0] = hi.bits;
          slot[1] = hi.index;
          slot[2] = lo.bits;
          slot[3] = lo.index;
        } else if (phase.kind == Kind::Quantile) {
          slot[0] = device.streamQuantile(keys, phase.param);
        } else {
          auto opOf = [](const CompiledRule::Phase &p) {
            return p.row == CompiledRule::RowOp::Rank  ? RowJob::Op::Rank
                   : p.row == CompiledRule::RowOp::Sum ? RowJob::Op::Sum
                                                       : RowJob::Op::Max;
          };
          std::vector<size_t> group = siblings();
          std::vector<KeyChunks> groupKeys;
          groupKeys.reserve(group.size());
          std::vector<RowJob> jobs;
          for (size_t j : group) {
            groupKeys.push_back(j == k ? std::move(keys) : keysOf(rule.phases[j]));
            jobs.push_back(RowJob{&groupKeys.back(),
                                  static_cast<float *>(rows[rowIndex[j]].get()),
                                  opOf(rule.phases[j])});
            if (j != k) {
              ranWithSibling[j] = true;
              done[j] = true;
            }
          }
          device.streamRows(jobs, cols);
        }
        break;
      }
      if (!keyBuffer)
        keyBuffer = device.allocate(std::max<size_t>(count, 1) * sizeof(float));
      auto *keys = static_cast<float *>(keyBuffer.get());
      device.launch(
          rule, k, descs, [&](size_t) { return MemRefDescriptor{keys, keys, 0, n, 1}; }, n,
          layer, numLayers, scalarDesc);
      if (phase.kind == Kind::TopK) {
        RankBoundary hi, lo;
        if (state && state->topk)
          state->topk->setTensor(tensor.name);
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
      } else if (rank) {
        device.rowRanks(keys, rowBuffer, n, cols);
      } else {
        device.rowReduce(keys, rowBuffer, n, cols, sum);
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
