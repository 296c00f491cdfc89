//===- Executor.h - stream checkpoints through compiled kernels --*- C++ -*-===//
// The runtime never sees a method name: it sees rules (glob patterns and the models they
// read), kernels to call on chunks, and checkpoints to stream.
#pragma once
#include "mergec/Runtime/BundleInput.h"
#include "mergec/Runtime/DType.h"
#include "mergec/Runtime/LayerStack.h"
#include "mergec/Runtime/LoraAdapter.h"
#include "mergec/Runtime/OutputDirectory.h"
#include "mergec/Runtime/Safetensors.h"
#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mergec::rt {

class Communicator;

/// A compiled phase: `fn(args)` with args pointing at, in order: per input and then the result,
/// a memref descriptor's five fields (allocated ptr, aligned ptr, offset, size, stride); then
/// begin and end element indices (int64); then layer and num_layers (float); then the
/// descriptor of the scalars array (f64; layout in KernelABI.h: the tensor's name hash, its
/// row length and size, then the results of the rule's earlier phases). The inputs are the
/// models' tensors followed by the ranks the rule's RowRank phases materialize.
using PackedKernel = void (*)(void **);

/// A rule as phases, in order: reductions (each writes one f64 partial per reduction per chunk
/// into result[0..]; the runtime combines the chunks in order, so thread count never changes the
/// result), selections (keys into an f32 buffer, then radix select), ranks (keys, then ranks
/// within rows, or row sums, into a buffer later phases read), then the map phase that writes the output.
/// Phases at model scope see every tensor of the rule: the executor runs them over the whole
/// model (streaming passes before the merge) and gives each tensor the model's results.
/// Everything but `fn` is the rule's description (RuleDescription.h serializes it): derived from
/// the lowered module by the compiler, stored beside cached kernels and embedded in executables.
struct CompiledRule {
  /// Matrix: linear algebra run once per tensor on the host (BLAS, LAPACK): its scalar results
  /// into its slots, its matrices into buffers later phases read.
  enum class Kind { Reduce, TopK, Quantile, Row, Matrix, Map };
  enum class Reduction { Sum, Max };
  enum class RowOp { Rank, Sum, Max };
  struct Phase {
    PackedKernel fn = nullptr;
    Kind kind = Kind::Map;
    std::string symbol; ///< the packed entry point's name (KernelABI.h)
    std::vector<Reduction> reductions; ///< Reduce: one per scalar result
    RowOp row = RowOp::Rank;           ///< Row: ranks, or each row's sum or maximum
    size_t scalars = 0; ///< Matrix: its scalar results (f64, into slots from firstSlot)
    size_t buffers = 0; ///< the buffers it fills for later phases: Row 1, Matrix its matrices
    /// Matrix: the matrices its program makes; --max-memory counts each at the tensor's size
    /// (an estimate: hcat of k tensors is k times that) plus one SVD's LAPACK workspace.
    size_t matrices = 0;
    /// Matrix: its program filters a spectrum (highpass/lowpass): --max-memory counts the
    /// FFT's workspace too.
    bool spectral = false;
    double param = 0; ///< TopK: density; Quantile: q
    double skip = 0;  ///< TopK
    bool nonzero = false;
    int64_t firstSlot = 0; ///< where its scalar results go in the scalars array
    bool modelScope = false;
    std::vector<size_t> deps; ///< the earlier phases whose results (scalars or ranks) it reads
    /// A row phase whose buffer holds one value per row (sum, max; the kernels read element
    /// i's at i / cols), not one per element (rank).
    bool perRow() const { return kind == Kind::Row && row != RowOp::Rank; }
    /// The f32 elements of each of its buffers for a tensor of n elements in rows of `cols`.
    int64_t bufferElements(int64_t n, int64_t cols) const {
      return perRow() ? n / std::max<int64_t>(cols, 1) : n;
    }
  };
  std::vector<Phase> phases;
  /// A GPU's code for every phase (the CUDA target: one PTX module; entry points named by each
  /// phase's symbol); null for the CPU, whose phases carry `fn`.
  std::shared_ptr<const std::string> deviceImage;
  int64_t scalarSlots = 4; ///< the size of the scalars array
  /// The recipe's params the kernels read at run time (merge.param), in slot order from
  /// `firstParamSlot`; `paramValues` are their values for this run (the KernelSource binds them).
  std::vector<std::string> params;
  int64_t firstParamSlot = 4;
  std::vector<double> paramValues;
  /// The f32 elements of the buffers the rule's phases fill (a row phase one, a matrix phase
  /// one per matrix; in phase order, inputs of the phases after them) for a tensor of n
  /// elements in rows of `cols`.
  int64_t bufferElements(int64_t n, int64_t cols) const {
    int64_t e = 0;
    for (auto &p : phases)
      e += static_cast<int64_t>(p.buffers) * p.bufferElements(n, cols);
    return e;
  }
  bool hasMatrixPhase() const {
    for (auto &p : phases)
      if (p.kind == Kind::Matrix)
        return true;
    return false;
  }
  bool hasModelScope() const {
    for (auto &p : phases)
      if (p.modelScope)
        return true;
    return false;
  }
};

class KernelSource {
public:
  virtual ~KernelSource() = default;
  /// The models rule `rule`'s kernel reads, in argument order.
  virtual std::vector<std::string> ruleInputs(size_t rule) = 0;
  /// Compiles (or finds) the rule's phases for these storage dtypes.
  virtual CompiledRule kernel(size_t rule, const std::vector<DType> &inputs, DType output) = 0;
  /// Whether kernel() can serve this signature: a JIT always can; an executable only for the
  /// signatures it was compiled with (planMerge reports the others, naming the tensor).
  virtual bool hasKernel(size_t rule, const std::vector<DType> &inputs, DType output) {
    (void)rule, (void)inputs, (void)output;
    return true;
  }
  /// For that report: the signatures it has, e.g. "BF16,BF16 -> BF16; F32,F32 -> F32".
  virtual std::string availableKernels(size_t rule) {
    (void)rule;
    return "";
  }
};

struct RuleSpec {
  std::vector<std::string> patterns; ///< empty: matches everything
  /// Set when the rule is a model's tensor unchanged: copied byte for byte when dtypes agree.
  std::optional<std::string> passthroughModel;
  bool readsNumLayers = false; ///< uses num_layers (ramp): its source is then checked
};

/// An input of the merge: a checkpoint, or a LoRA adapter (`lora NAME = "PATH" on MODEL`)
/// whose tensors are its task vector on model `on` (LoraAdapter.h): the kernels read, for
/// input NAME, the delta scale * B @ A in f32, or 0 where the adapter does not touch a tensor.
struct ModelSpec {
  enum class Kind { Model, Lora, BundleMember };
  std::string name, path; ///< path: the checkpoint, the adapter directory, or the bundle
  Kind kind = Kind::Model;
  std::string on; ///< Lora: the model the adapter applies to
  /// BundleMember (`zoo[i]`): i. Its compressed tensors are reconstructed in f32 when read
  /// (Bundle.h, BundleMember), its stored ones read as they are.
  int64_t member = -1;
};

/// Where a merge's kernels run: the host's thread pool, or the first CUDA GPU (the kernels'
/// CompiledRule::deviceImage). The one list of devices: names and parsing below.
enum class DeviceKind { CPU, CUDA };
/// "cpu", "cuda": the --device spelling.
const char *deviceName(DeviceKind kind);
/// The device `name` spells (as deviceName writes it), else nullopt.
std::optional<DeviceKind> parseDeviceKind(std::string_view name);
/// "cpu, cuda": for messages.
std::string deviceNames();

struct RunOptions {
  std::string output;
  bool force = false; ///< replace an existing output that mergec wrote
  /// Continue the unfinished output an interrupted run (SIGKILL, power loss) left for the same
  /// output, after verifying it against its journal (Journal.h).
  bool resume = false;
  std::optional<DType> dtype; ///< output dtype override
  unsigned threads = 0;       ///< 0: all cores
  uint64_t shardSize = 5'000'000'000ull;
  bool quiet = false;
  bool verbose = false;
  /// --json: stderr carries JSON Lines events only (Events.h; docs/cli.md), not text.
  bool json = false;
  /// A tensor whose output became NaN or inf where its inputs were finite is an error (the
  /// merge stops and writes nothing), not a warning.
  bool strict = false;
  uint64_t maxMemory = 0;     ///< 0: half of the physical memory
  DeviceKind device = DeviceKind::CPU; ///< --device
  uint64_t maxGpuMemory = 0;  ///< --max-gpu-memory; 0: what the GPU has free
  /// Recorded in mergec-manifest.json so a merge can be audited and rerun.
  struct Provenance {
    std::string version, recipePath, recipeText, recipeSha256;
    std::vector<std::pair<std::string, double>> params; ///< final values
    /// How the kernels were built: "jit" (mergec run) or "aot" (an executable; `executable`
    /// names it).
    std::string build = "jit", executable;
    /// The standard library's methods the recipe calls (ties, slerp, ...), for the model card.
    std::vector<std::string> methods;
  } provenance;
  /// Writes README.md, a model card naming mergec, the methods, the models and the recipe, as
  /// the Hugging Face hub shows it (--no-model-card: none).
  bool modelCard = true;
  /// --emit-lora RANK: the output is a PEFT LoRA adapter of the merged task vector (merged -
  /// the output model's tensor) instead of a model (AdapterExtraction.h). rank 0: a model.
  struct EmitLora {
    int64_t rank = 0;
    /// --sv-epsilon: singular values s <= svEpsilon are dropped (absolute, as
    /// mergekit-extract-lora's); 0 keeps RANK of them.
    double svEpsilon = 0;
    bool svEpsilonGiven = false;
    /// --lora-targets: globs over tensor names; empty: every 2-D `.weight` tensor but the
    /// embeddings and lm_head (kDefaultLoraExclusions).
    std::vector<std::string> targets;
  } emitLora;
  /// `merge compress(...)`: the output is a compressed bundle of `members` (Bundle.h), not a
  /// model. Set from the recipe, never from the command line.
  struct Bundle {
    bool enabled = false;
    std::vector<std::string> members; ///< model names, in member order
    int64_t rank = 0;                 ///< 0: from rate
    double rate = 0;
    std::vector<std::string> exclude; ///< globs: stored per member
    int64_t oversample = 8, iters = 2, seed = 0;
  } bundle;
  /// Several processes share this merge (Distributed.h; `mergec run` under mpirun): each writes
  /// its share of the shards into rank 0's temporary output; null (or one rank): this process
  /// does everything. Not owned.
  Communicator *comm = nullptr;
  /// Told each tensor done (tensors done, total, bytes read), in order, on the thread running
  /// the merge; may throw to stop it (the unfinished output is then removed).
  std::function<void(size_t, size_t, uint64_t)> onProgress;
};

/// A validated merge: every output tensor, the rule it uses and the input tensors it reads.
struct MergePlan {
  struct Item {
    /// The output tensor (name, shape, dtype): the output model's, or with `layers` an output
    /// layer's, named for it (one of layerTensors).
    const TensorInfo *base = nullptr;
    size_t rule = 0;
    std::vector<const TensorInfo *> inputs; ///< in the kernel's argument order
    DType outDType;
    int layer = -1;
    /// The rule is one model's tensor in the output dtype: copied byte for byte, no kernel.
    bool copy = false;
    /// The inputs that are LoRA deltas: inputs[input] is then an f32 TensorInfo of the plan's
    /// (no file; data null until computed, or the plan's zeros where `target` is null).
    struct Lora {
      size_t input;
      const LoraTarget *target;
    };
    std::vector<Lora> loras;
    /// The inputs that are a bundle member's compressed tensors: inputs[input] is then an f32
    /// TensorInfo of the plan's (no file; data null until reconstructed from `factors`).
    struct Reconstructed {
      size_t input;
      const BundleFactors *factors;
      int64_t member;
    };
    std::vector<Reconstructed> reconstructed;
  };
  /// Parallel to the models: a checkpoint for a model (null for a lora), an adapter for a lora.
  std::vector<std::unique_ptr<Checkpoint>> checkpoints;
  std::vector<std::unique_ptr<LoraAdapter>> adapters;
  /// Parallel to the models: a bundle member's layout (its checkpoint then views the bundle's
  /// files as the member's tensors), null otherwise.
  std::vector<std::unique_ptr<BundleMember>> bundleMembers;
  /// The f32 tensors the kernels read for bundle members' compressed tensors (Item::reconstructed).
  std::deque<TensorInfo> reconstructedTensors;
  /// The f32 tensors the kernels read for LoRA inputs (Item::loras), and a read-only mapping
  /// of zeros as large as the largest tensor no adapter touches (the kernel page faults it to
  /// the kernel's shared zero page: no memory per tensor).
  std::deque<TensorInfo> loraTensors;
  std::shared_ptr<const void> zeros;
  std::vector<ModelSpec> models;
  size_t outputModel = 0;
  /// `layers [...]` (LayerStack.h): empty when the output has the output model's layers.
  std::vector<LayerSlice> layers;
  /// With layers: the output layers' tensors, each the slice's first source's tensor renamed
  /// `model.layers.L.` (shape and dtype as there).
  std::deque<TensorInfo> layerTensors;
  /// The output model's own layer count (config.json, else its tensor names): what the per-layer
  /// lists of its config are as long as.
  int outputModelLayers = 0;
  std::vector<Item> items;
  std::vector<std::vector<size_t>> patternMatches; ///< per rule, per pattern: tensors matched
  int numLayers = 0; ///< the output's: with layers, the slices' total length
  uint64_t inputBytes = 0;
  std::vector<std::string> warnings; ///< found while planning; the caller prints them
};

/// Opens the models, assigns each output tensor its rule and checks every input it needs
/// exists with the output tensor's shape and a computable dtype. Reads headers only.
/// Throws RuntimeError naming the file and tensor on the first problem.
/// `layers` (a recipe's `layers [...]`, LayerStack.h): the output's tensors are the output
/// model's outside the layers, and in place of its layers, for each output layer L the tensors
/// of the layer its slice's first source gives, renamed `model.layers.L.`; each input of such a
/// tensor reads the layer its model's range maps L to (the first source's layer for a model the
/// slice does not name; for a lora, that of the model it is on). Every source range must lie
/// within its model's layers (config.json, else the tensor names).
MergePlan planMerge(const std::vector<ModelSpec> &models, const std::string &outputModel,
                    const std::vector<RuleSpec> &rules, KernelSource &kernels,
                    const RunOptions &options, const std::vector<LayerSlice> &layers = {});

/// The peak resident memory a plan needs: the process itself once every kernel the plan uses is
/// compiled (this compiles them; the merge then finds them cached), the output buffers (the one
/// being computed and the two the writer may hold) of the largest tensor, the input pages of
/// the current and the prefetched tensor, and the largest scratch a tensor's phases use
/// (selection keys, row buffers, per-thread rank sort space). Throws RuntimeError with the
/// arithmetic when it exceeds options.maxMemory (0: no limit); with options.verbose prints it.
uint64_t checkMemory(const MergePlan &plan, KernelSource &kernels, const RunOptions &options);

/// The layer index of `model.layers.N.` in a tensor name, else -1.
int layerIndex(const std::string &tensorName);
/// Where the digits layerIndex reads are in the name ([first, last) offsets), if it has them.
std::optional<std::pair<size_t, size_t>> layerIndexDigits(const std::string &tensorName);

struct RunStats {
  double seconds = 0;
  uint64_t bytesRead = 0, bytesWritten = 0;
  size_t tensors = 0;
  /// With --resume: the tensors the interrupted run wrote that were verified and kept.
  size_t resumedTensors = 0;
  /// The tensors whose outputs hold NaN or inf that their inputs did not bring, in plan order.
  std::vector<std::pair<std::string, NonFinite>> nonFinite;
};

/// The warning for a pattern of a rule that matches no tensor of the output model.
std::string unmatchedPatternWarning(const std::string &pattern, const std::string &outputModel);

/// The warning for stats.nonFinite (the first few tensors by name, then a count); empty when
/// there is none.
std::string nonFiniteWarning(const RunStats &stats);

/// The tensors of files that item `item` reads: its models' tensors and, for its LoRA inputs,
/// the adapters' factors (and saved tensors with MODEL's), each once.
std::vector<const TensorInfo *> itemFileTensors(const MergePlan::Item &item);

/// Every file the plan reads (model directories, indexes, shards, adapter files, resolved
/// through links), for OutputDirectory::protect.
std::vector<ProtectedInput> planInputs(const MergePlan &plan);

/// An analysis run: streams every computed tensor of the plan (in plan order) through its rule's
/// phases but the map phase, on options.device with options.threads, and hands `onTensor` the
/// plan item's index and its scalars array (KernelABI.h: context slots, then each phase's
/// results), then options.onProgress when set. Writes nothing. Rules with model-scope phases are
/// refused (RuntimeError).
void analyzeTensors(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                    const std::function<void(size_t, const std::vector<double> &)> &onTensor);

/// Streams every tensor through its kernel into `out` (atomic: its temporary directory is
/// renamed into place when complete), with the base model's side files and the manifest.
RunStats executeMerge(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                      OutputDirectory &out);

} // namespace mergec::rt
