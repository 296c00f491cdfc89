//===- PhaseRunner.h - run a rule's compiled phases on one tensor -*- C++ -*-===//
// Between the kernels of a rule's phases the runtime combines chunk partials, selects, ranks,
// and (for phases at model scope) carries what earlier tensors contributed.
#pragma once
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/Selection.h"
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace mergec::rt {


/// The map phase of a tensor streamed in windows instead of into one whole-tensor output: the
/// executor hands each window's output to its writer as soon as it is computed, so the output
/// memory held is a few windows, whatever the tensor's size. Every phase before the map runs
/// over the whole tensor as without windows. A window is a fixed number of elements (whole
/// chunks, never depending on the threads), so the bytes are those of a whole-tensor run.
struct MapWindows {
  int64_t elements;    ///< per window, a multiple of Device::kChunk
  size_t elementBytes; ///< of the output dtype
  /// Host memory for the output elements [begin, end): element `begin` at its start.
  std::function<void *(int64_t begin, int64_t end)> acquire;
  /// The window [begin, end) is computed (the afterMap hook ran on each of its chunks).
  std::function<void(int64_t begin, int64_t end)> computed;
};

/// What one rule's model-scope phases know about the whole model. Before the merge, the
/// executor streams every tensor of the rule through `runRule` in analysis rounds until
/// `complete()`: a model-scope reduction needs one round (its per-tensor totals add up in plan
/// order), a model-scope top-k two (a sample and a band around its boundaries, or radix-select
/// histograms). In the merge itself each tensor then reads the model's results; top-k
/// boundaries move on tensor by tensor, so tensors must come in plan order, as in the rounds.
class ModelScope {
public:
  explicit ModelScope(const CompiledRule &rule);

  /// Before the first round: model-scope top-ks take the sampled passes first (ModelTopK::
  /// sampleFirst: a host device, one process) over the rule's `elements`, where they can.
  void sampleTopKFirst(int64_t elements);
  bool complete() const;
  /// What the next round counts, for the progress log (the first unfinished top-k's pass;
  /// "totals" for reductions alone).
  std::string roundName() const;
  /// Starts a round over the rule's tensors: which phases to run to feed the unfinished ones.
  void beginRound();
  /// Ends a round: what every tensor added moves the unfinished phases on. Throws when a round
  /// made no progress (a phase whose inputs never become available).
  void endRound();
  /// Starts the merge itself (top-k boundaries from the first tensor again).
  void beginMerge() { beginRound(); }
  /// What the merge so far changed in the scope (the top-k tie quotas handed out, two numbers
  /// per model-scope top-k phase; empty when it has none), and its restoration: a resumed merge
  /// that skips tensors continues with the state the interrupted run journalled for the last
  /// tensor it kept.
  std::vector<int64_t> mergeState() const;
  /// Throws RuntimeError when `state` is not the size mergeState() gives.
  void restoreMergeState(const std::vector<int64_t> &state);

  // Several processes (Distributed.h): each runs a round over its own tensors only, then
  // combineRound() gives every process the state one process reaches over all of them.
  /// The plan item the next runRule() call is for: its model-scope totals are recorded under it.
  void setItem(size_t item) { item_ = item; }
  /// Ends a round's own share: the touched flags and the top-k counts are summed over the
  /// ranks; each model-scope reduction is started afresh and combined with every tensor's total
  /// in plan order (`items`, the rule's plan items in order; `owner`, the rank of each plan
  /// item), as one process adds them. Call before endRound(), on every rank.
  void combineRound(Communicator &comm, const std::vector<size_t> &items,
                    const std::vector<size_t> &owner);

private:
  friend void runRule(Device &, const CompiledRule &, const std::vector<const void *> &,
                      void *, const TensorInfo &, float, float, ModelScope *, bool,
                      const ChunkHook *, std::vector<double> *, const MapWindows *);
  struct PhaseState {
    bool final = false, touched = false, needed = false;
    std::vector<double> totals;        ///< Reduce: per reduction, over the tensors so far
    std::unique_ptr<ModelTopK> topk;   ///< TopK
    /// Reduce, several processes: each tensor's totals this round, by plan item.
    std::map<size_t, std::vector<double>> perItem;
  };
  size_t item_ = 0;
  std::vector<CompiledRule::Phase> meta_; ///< kinds, parameters and dependencies
  std::vector<PhaseState> phases_;
};

/// Runs a rule's phases over one tensor of `tensor.numel()` elements: each reduction over every
/// chunk (partials combined in chunk order), each selection or ranking over a key buffer, then
/// the map phase into `output`. With `analysis`, runs only what `scope`'s unfinished phases
/// need and adds this tensor to them; no output is written. `afterMap` sees each output chunk.
/// Without `analysis` and with no `output`, runs every phase but the map: the model-scope
/// top-k tie quotas move on as the merge of the tensor would move them, nothing is written.
/// `scalars`, when given, receives the tensor's scalars array once the phases ran (KernelABI.h:
/// the context slots, then each phase's results): what an analysis run reads. With `windows`
/// (and no `output`; host devices), the map phase writes window by window into the memory
/// `windows` gives out, in order.
void runRule(Device &device, const CompiledRule &rule, const std::vector<const void *> &inputs,
             void *output, const TensorInfo &tensor, float layer, float numLayers,
             ModelScope *scope = nullptr, bool analysis = false,
             const ChunkHook *afterMap = nullptr, std::vector<double> *scalars = nullptr,
             const MapWindows *windows = nullptr);

/// On host devices, the f32 elements runRule allocates for `rule`'s buffers over a tensor of n
/// elements (rows of `cols`): CompiledRule::bufferElements, or, when it computes its row phases
/// window by window, a key buffer and a buffer per rank phase of a window's size (the phases
/// reading the rows recompute them per window) beside the per-row buffers of sums and maxima.
int64_t hostBufferElements(const CompiledRule &rule, int64_t n, int64_t cols);

} // namespace mergec::rt
