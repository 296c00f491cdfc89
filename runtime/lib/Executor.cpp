//===- Executor.cpp - plan a merge and stream it through the kernels ------===//
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/AdapterExtraction.h"
#include "mergec/Runtime/Bundle.h"
#include "mergec/Runtime/LinearAlgebra.h"
#include "mergec/Runtime/MatrixPhase.h"
#include "mergec/Runtime/ModelCard.h"
#include "Support.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/ModelConfig.h"
#include "mergec/Runtime/PhaseRunner.h"
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Glob.h"
#include "mergec/Runtime/Journal.h"
#include "mergec/Runtime/OutputDirectory.h"
#include "mergec/Runtime/Progress.h"
#include "mergec/Runtime/SideFiles.h"
#include "mergec/Runtime/Size.h"
#include "mergec/Runtime/ThreadPool.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <future>
#include <fstream>
#include <map>
#include <set>
#include <mutex>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

namespace mergec::rt {

std::optional<std::pair<size_t, size_t>> layerIndexDigits(const std::string &name) {
  // `layers.N.` at the start of the name or after a dot, N at most 8 digits.
  static const std::string marker = "layers.";
  for (size_t pos = name.find(marker); pos != std::string::npos;
       pos = name.find(marker, pos + 1)) {
    if (pos > 0 && name[pos - 1] != '.')
      continue;
    size_t i = pos + marker.size(), start = i;
    while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])))
      ++i;
    if (i > start && i < name.size() && name[i] == '.' && i - start < 9)
      return std::pair{start, i};
  }
  return std::nullopt;
}

int layerIndex(const std::string &name) {
  auto digits = layerIndexDigits(name);
  return digits ? std::stoi(name.substr(digits->first, digits->second - digits->first)) : -1;
}

/// README.md, the model card, into the unfinished output (--no-model-card: none).
static void writeModelCard(const MergePlan &plan, const RunOptions &options, const std::string &dir) {
  if (!options.modelCard)
    return;
  std::string path = dir + "/README.md";
  std::ofstream card(path, std::ios::binary);
  card << modelCard(plan, options);
  card.close();
  if (!card)
    throw RuntimeError("cannot write " + path);
}

namespace {

/// The output model's layer count: from its config.json when it has one (ModelConfig.h), else
/// 1 + the largest layer index among its tensor names.
int countLayers(const Checkpoint &model, const std::string &name, bool used,
                std::vector<std::string> &warnings) {
  int largest = -1;
  for (const TensorInfo *t : model.tensors())
    largest = std::max(largest, layerIndex(t->name));
  std::string path = model.directory() + "/config.json";
  // Not a regular file (a FIFO would block), over 16 MB or nested too deeply: an error.
  std::optional<std::string> text = detail::readSmallFileIfExists(path, 16u << 20);
  if (!text)
    return largest + 1;
  return layersFromConfig(*text, path, name, largest, used, warnings);
}

std::string describe(const ModelSpec &model, const TensorInfo &t) {
  return "model '" + model.name + "' (" + t.file->path() + ")";
}

/// One output tensor as planned: its name, shape and dtype, the model it comes from and, with
/// `layers`, its output layer (-1 outside the layers and without them).
struct OutputTensor {
  const TensorInfo *tensor;
  size_t model;
  int layer;
};

/// The output's tensors in order. Without layers, the output model's. With them, its tensors
/// outside the layers, and where its first layer tensor was, every output layer's: the tensors
/// of the layer its slice's first source gives, in that model's order, renamed for the output
/// layer (into plan.layerTensors). A source range past its model's layers is a problem.
template <typename Problem>
std::vector<OutputTensor> outputTensors(MergePlan &plan, const std::map<std::string, size_t> &index,
                                        const std::vector<LayerOrigin> &origins,
                                        Problem problem) {
  const Checkpoint &out = *plan.checkpoints[plan.outputModel];
  std::vector<OutputTensor> outputs;
  if (plan.layers.empty()) {
    for (const TensorInfo *t : out.tensors())
      outputs.push_back({t, plan.outputModel, -1});
    return outputs;
  }
  // Each source model's tensors by layer, and its layer count, once.
  std::map<size_t, std::vector<std::vector<const TensorInfo *>>> byLayer;
  std::map<size_t, int> counts;
  for (const LayerSlice &slice : plan.layers)
    for (const LayerSlice::Source &source : slice.sources) {
      size_t m = index.at(source.model);
      const Checkpoint &model = *plan.checkpoints[m];
      if (!counts.count(m)) {
        std::vector<std::string> ignored; // the range check below says what matters
        counts[m] = countLayers(model, plan.models[m].name, false, ignored);
        auto &layers = byLayer[m];
        for (const TensorInfo *t : model.tensors())
          if (int l = layerIndex(t->name); l >= 0) {
            if (static_cast<size_t>(l) >= layers.size())
              layers.resize(l + 1);
            layers[l].push_back(t);
          }
      }
      if (source.end > counts[m])
        problem("layers: " + source.model + "[" + std::to_string(source.begin) + ":" +
                    std::to_string(source.end) + "] is past the layers of model '" +
                    source.model + "' (" + plan.models[m].path + "), which has " +
                    std::to_string(counts[m]) + " (layers 0 to " +
                    std::to_string(counts[m] - 1) + ")",
                nullptr);
    }
  auto addLayers = [&] {
    for (size_t L = 0; L < origins.size(); ++L) {
      const LayerSlice::Source &first = plan.layers[origins[L].slice].sources.front();
      size_t m = index.at(first.model);
      int layer = first.begin + origins[L].offset;
      const auto &layers = byLayer[m];
      if (static_cast<size_t>(layer) >= layers.size() || layers[layer].empty()) {
        if (layer < counts[m]) // past the count: reported above
          problem("layers: output layer " + std::to_string(L) + " is layer " +
                      std::to_string(layer) + " of model '" + first.model + "' (" +
                      plan.models[m].path + "), which has no tensor of that layer",
                  nullptr);
        continue;
      }
      for (const TensorInfo *t : layers[layer]) {
        TensorInfo &renamed = plan.layerTensors.emplace_back(*t);
        renamed.name = *withLayerIndex(t->name, static_cast<int>(L));
        outputs.push_back({&renamed, m, static_cast<int>(L)});
      }
    }
  };
  bool added = false;
  for (const TensorInfo *t : out.tensors()) {
    if (layerIndex(t->name) < 0) {
      outputs.push_back({t, plan.outputModel, -1});
      continue;
    }
    if (!added)
      addLayers();
    added = true;
  }
  if (!added) // an output model without layer tensors: the layers follow its tensors
    addLayers();
  return outputs;
}

} // namespace

MergePlan planMerge(const std::vector<ModelSpec> &models, const std::string &outputModel,
                    const std::vector<RuleSpec> &rules, KernelSource &kernels,
                    const RunOptions &options, const std::vector<LayerSlice> &layers) {
  MergePlan plan;
  plan.models = models;
  plan.layers = layers;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < models.size(); ++i) {
    index[models[i].name] = i;
    if (models[i].kind == ModelSpec::Kind::Lora) {
      plan.checkpoints.push_back(nullptr); // opened below, once the models it is on are
      continue;
    }
    bool member = models[i].kind == ModelSpec::Kind::BundleMember;
    if (member && options.device != DeviceKind::CPU)
      throw RuntimeError("bundle member '" + models[i].name + "' is reconstructed on the host "
                         "only (--device cpu)", models[i].path, "");
    try {
      plan.checkpoints.push_back(Checkpoint::open(models[i].path));
      if (member) {
        // The bundle's files, viewed as member i's tensors (BundleInput.h).
        plan.bundleMembers.resize(models.size());
        plan.bundleMembers[i] = BundleMember::open(models[i].name, models[i].path,
                                                   models[i].member, *plan.checkpoints.back());
      }
    } catch (const RuntimeError &e) {
      throw RuntimeError(std::string(member ? "bundle member '" : "model '") + models[i].name +
                             "': " + e.what(),
                         e.file().empty() ? models[i].path : e.file(), e.tensor());
    }
    plan.inputBytes += plan.checkpoints.back()->totalBytes();
  }
  plan.bundleMembers.resize(models.size());
  // LoRA adapters: their headers and config, every key matched to a tensor of the model they
  // are on (LoraAdapter::open), before any tensor is read.
  plan.adapters.resize(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].kind != ModelSpec::Kind::Lora)
      continue;
    auto on = index.find(models[i].on);
    if (on == index.end() || models[on->second].kind != ModelSpec::Kind::Model)
      throw RuntimeError("lora '" + models[i].name + "' is on '" + models[i].on +
                             "', which is not a model of this merge",
                         models[i].path, "");
    try {
      plan.adapters[i] = LoraAdapter::open(models[i].name, models[i].path,
                                           *plan.checkpoints[on->second], models[i].on);
    } catch (const RuntimeError &e) {
      throw RuntimeError("lora '" + models[i].name + "': " + e.what(),
                         e.file().empty() ? models[i].path : e.file(), e.tensor());
    }
    plan.inputBytes += plan.adapters[i]->weights().fileSize();
  }
  plan.outputModel = index.at(outputModel);
  if (!plan.checkpoints[plan.outputModel])
    throw RuntimeError("the output takes the tensors of '" + outputModel +
                       "', which is a lora, not a model");
  const Checkpoint &out = *plan.checkpoints[plan.outputModel];
  // --emit-lora writes an adapter PEFT applies to the output model: an input adapter on another
  // model makes the recipe's task vectors relative to a model the written adapter is not for.
  if (options.emitLora.rank)
    for (const ModelSpec &m : models)
      if (m.kind == ModelSpec::Kind::Lora && m.on != outputModel)
        throw RuntimeError("--emit-lora writes an adapter on the output model '" + outputModel +
                               "', but lora '" + m.name + "' is on '" + m.on +
                               "': the recipe's task vectors are not taken against the model "
                               "the adapter would be loaded on",
                           m.path, "");
  // An adapter keeps the model's layers: a stacked output has other ones.
  if (options.emitLora.rank && !layers.empty())
    throw RuntimeError("--emit-lora writes an adapter on the output model '" + outputModel +
                       "', which keeps its layers; a `layers` declaration (" +
                       describeLayers(layers) + ") makes an output of other layers: write it "
                       "as a model (without --emit-lora)");
  bool readsNumLayers = std::any_of(rules.begin(), rules.end(),
                                    [](const RuleSpec &r) { return r.readsNumLayers; });
  // With layers, num_layers is the output's count, not the output model's: no warning about
  // the latter's config.
  plan.outputModelLayers = countLayers(out, models[plan.outputModel].name,
                                       readsNumLayers && layers.empty(), plan.warnings);
  plan.numLayers = plan.outputModelLayers;

  std::vector<std::vector<std::string>> ruleInputs;
  for (size_t r = 0; r < rules.size(); ++r)
    ruleInputs.push_back(kernels.ruleInputs(r));
  plan.patternMatches.resize(rules.size());
  std::vector<std::vector<CompiledGlob>> globs(rules.size());
  for (size_t r = 0; r < rules.size(); ++r) {
    plan.patternMatches[r].assign(rules[r].patterns.size(), 0);
    for (const std::string &pattern : rules[r].patterns)
      globs[r].emplace_back(pattern);
  }

  // Problems are collected over every tensor so one run lists them all (up to a limit)
  // instead of failing on the first, and nothing has been read or written yet.
  std::vector<std::string> problems;
  std::string firstTensor; // the tensor of the first problem, for the error's tensor()
  const TensorInfo *current = nullptr;
  auto problem = [&](std::string message) {
    if (problems.empty())
      firstTensor = current->name;
    problems.push_back(std::move(message));
  };
  // Every pattern is matched against every name. The recipe bounds the patterns (4096) but
  // not their wildcards, nor the tensors: past ~6 s of matching, the patterns are refused.
  constexpr uint64_t kMaxGlobSteps = 1'000'000'000;
  uint64_t globSteps = 0;
  std::vector<CompiledGlob> bundleExclude;
  for (const std::string &glob : options.bundle.exclude)
    bundleExclude.emplace_back(glob);
  std::vector<LayerOrigin> origins = layerOrigins(layers);
  std::vector<OutputTensor> outputs =
      outputTensors(plan, index, origins, [&](std::string message, const TensorInfo *t) {
        if (problems.empty())
          firstTensor = t ? t->name : "";
        problems.push_back(std::move(message));
      });
  if (!layers.empty())
    plan.numLayers = static_cast<int>(origins.size());
  for (const OutputTensor &output : outputs) {
    const TensorInfo *t = output.tensor;
    current = t;
    const LayerOrigin *origin = output.layer >= 0 && !layers.empty() ? &origins[output.layer]
                                                                     : nullptr;
    const LayerSlice *slice = origin ? &layers[origin->slice] : nullptr;
    if (globSteps > kMaxGlobSteps)
      throw RuntimeError("matching the merge block's patterns against the " +
                         std::to_string(out.tensors().size()) + " tensors of model '" +
                         models[plan.outputModel].name +
                         "' takes too long (patterns with many wildcards, many times over); "
                         "use fewer patterns or fewer wildcards in them");
    std::optional<size_t> chosen;
    for (size_t r = 0; r < rules.size(); ++r) {
      bool matched = rules[r].patterns.empty();
      for (size_t p = 0; p < rules[r].patterns.size(); ++p)
        if (globs[r][p].match(t->name, globSteps)) {
          ++plan.patternMatches[r][p];
          matched = true;
        }
      if (matched && !chosen)
        chosen = r;
    }
    if (!chosen) {
      problem("tensor '" + t->name + "' of " + describe(models[output.model], *t) +
              " matches no rule (add `_ => " + models[plan.outputModel].name +
              "` to copy the tensors no rule names)");
      continue;
    }
    MergePlan::Item item;
    item.base = t;
    item.rule = *chosen;
    item.layer = origin ? output.layer : layerIndex(t->name);
    item.outDType = t->dtype;
    if (options.dtype && isComputeDType(t->dtype))
      item.outDType = *options.dtype;
    // --emit-lora: the kernels' f32 result, before any rounding (AdapterExtraction.h).
    if (options.emitLora.rank && isComputeDType(t->dtype))
      item.outDType = DType::F32;
    // compress(...): a compressed tensor's average in f32 (the bundle rounds it with the
    // factors); every other tensor is stored per member, copied, no kernel (Bundle.h).
    bool bundleStored = options.bundle.enabled && !BundleLayout::compresses(*t, bundleExclude);
    if (options.bundle.enabled)
      item.outDType = bundleStored ? t->dtype : DType::F32;
    bool complete = true;
    std::vector<size_t> inputModels;
    // Whose tensor the output's shape is checked against, for messages.
    std::string shapeOwner = describe(models[output.model], *t);
    for (const std::string &name : ruleInputs[*chosen]) {
      // `source`: the slice's first source model, outside the layers the output model.
      size_t m = name != kSourceInput ? index.at(name)
                 : slice              ? index.at(slice->sources.front().model)
                                      : plan.outputModel;
      inputModels.push_back(m);
      // The name this model's tensor has: the output's, with the layer its range maps to.
      std::string inName = t->name;
      std::string mapped; // for messages: "(output layer L reads layer N)"
      if (slice) {
        bool lora = models[m].kind == ModelSpec::Kind::Lora;
        int layer = origin->sourceLayer(*slice, lora ? models[m].on : models[m].name);
        inName = *withLayerIndex(t->name, layer);
        mapped = " (output layer " + std::to_string(output.layer) + " reads its layer " +
                 std::to_string(layer) + ")";
      }
      if (models[m].kind == ModelSpec::Kind::Lora) {
        // The delta of this tensor: f32, computed when the tensor is merged (or zeros).
        size_t on = index.at(models[m].on);
        const TensorInfo *own = plan.checkpoints[on]->find(inName);
        if (!own || own->shape != t->shape) {
          problem("tensor '" + t->name + "': lora '" + name + "' is on model '" + models[on].name +
                  "' (" + models[on].path + ")" + mapped + ", which " +
                  (own ? "has '" + inName + "' with shape " + own->shapeString() + ", not " +
                             t->shapeString()
                       : "has no tensor '" + inName + "'"));
          complete = false;
          item.inputs.push_back(nullptr);
          continue;
        }
        TensorInfo &delta = plan.loraTensors.emplace_back();
        delta.name = inName;
        delta.dtype = DType::F32;
        delta.shape = t->shape;
        delta.nbytes = static_cast<uint64_t>(t->numel()) * sizeof(float);
        item.loras.push_back({item.inputs.size(), plan.adapters[m]->find(inName)});
        item.inputs.push_back(&delta);
        continue;
      }
      const TensorInfo *in = plan.checkpoints[m]->find(inName);
      if (!in) {
        problem("tensor '" + t->name + "': model '" + models[m].name + "' (" + models[m].path +
                ")" + mapped + " has no " +
                (slice ? "tensor '" + inName + "'" : std::string("such tensor")));
        complete = false;
      } else if (in->shape != t->shape) {
        problem("tensor '" + t->name + "': shape mismatch: " + describe(models[m], *in) +
                mapped + " has " + in->shapeString() + ", " + shapeOwner + " has " +
                t->shapeString());
        complete = false;
      }
      if (in && plan.bundleMembers[m])
        if (const BundleFactors *f = plan.bundleMembers[m]->factors(inName)) {
          // A compressed tensor of a bundle member: f32, reconstructed when it is merged.
          TensorInfo &rebuilt = plan.reconstructedTensors.emplace_back();
          rebuilt.name = inName;
          rebuilt.dtype = DType::F32;
          rebuilt.shape = in->shape;
          rebuilt.nbytes = static_cast<uint64_t>(in->numel()) * sizeof(float);
          item.reconstructed.push_back({item.inputs.size(), f, models[m].member});
          item.inputs.push_back(&rebuilt);
          continue;
        }
      item.inputs.push_back(in);
    }
    if (!complete)
      continue;
    const RuleSpec &rule = rules[*chosen];
    // --emit-lora reads a copied tensor itself (in f32, or its bytes): no kernel converts it.
    item.copy = bundleStored ||
                (rule.passthroughModel && item.inputs.size() == 1 && item.loras.empty() &&
                 item.reconstructed.empty() &&
                 (item.inputs[0]->dtype == item.outDType ||
                  (options.emitLora.rank && isComputeDType(item.inputs[0]->dtype))));
    if (!item.copy && isComputeDType(item.outDType)) {
      std::vector<DType> dtypes;
      for (const TensorInfo *in : item.inputs)
        dtypes.push_back(in->dtype);
      if (std::all_of(dtypes.begin(), dtypes.end(), isComputeDType) &&
          !kernels.hasKernel(*chosen, dtypes, item.outDType)) {
        std::string have = kernels.availableKernels(*chosen);
        std::string sig;
        for (size_t k = 0; k < dtypes.size(); ++k)
          sig += std::string(k ? "," : "") + dtypeName(dtypes[k]);
        problem("tensor '" + t->name + "': rule " + std::to_string(*chosen + 1) +
                " has no kernel for inputs " + sig + " -> " + dtypeName(item.outDType) +
                (have.empty() ? std::string() : " (compiled for: " + have + ")"));
      }
    }
    if (!item.copy) {
      if (!isComputeDType(item.outDType))
        problem("tensor '" + t->name + "': the output is " + dtypeName(item.outDType) +
                "; only F32, F16 and BF16 tensors can be computed (a rule that is just a model "
                "name copies other dtypes)");
      for (size_t k = 0; k < item.inputs.size(); ++k)
        if (!isComputeDType(item.inputs[k]->dtype))
          problem("tensor '" + t->name + "': " +
                  describe(models[inputModels[k]], *item.inputs[k]) +
                  " stores it as " + dtypeName(item.inputs[k]->dtype) +
                  "; only F32, F16 and BF16 can be computed on");
    }
    plan.items.push_back(std::move(item));
  }
  if (!problems.empty()) {
    constexpr size_t kShown = 5;
    std::string message = problems.front();
    for (size_t i = 1; i < std::min(problems.size(), kShown); ++i)
      message += "\n  " + problems[i];
    if (problems.size() > kShown)
      message += "\n  ... and " + std::to_string(problems.size() - kShown) + " more problem(s)";
    throw RuntimeError(message, "", firstTensor);
  }
  // The tensors no adapter touches read one shared mapping of zeros: reading it maps the
  // kernel's zero page, so it costs address space, not memory.
  uint64_t zeroBytes = 0;
  for (const MergePlan::Item &item : plan.items)
    for (const MergePlan::Item::Lora &l : item.loras)
      if (!l.target)
        zeroBytes = std::max(zeroBytes, item.inputs[l.input]->nbytes);
  if (zeroBytes) {
    void *zeros = ::mmap(nullptr, zeroBytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
    if (zeros == MAP_FAILED)
      throw RuntimeError("cannot map " + formatSize(zeroBytes) + " of zeros for the tensors "
                         "LoRA adapters leave unchanged: " + detail::errnoText(errno));
    plan.zeros = std::shared_ptr<const void>(zeros, [zeroBytes](const void *p) {
      ::munmap(const_cast<void *>(p), zeroBytes);
    });
    for (MergePlan::Item &item : plan.items)
      for (const MergePlan::Item::Lora &l : item.loras)
        if (!l.target)
          const_cast<TensorInfo *>(item.inputs[l.input])->data =
              static_cast<const uint8_t *>(plan.zeros.get());
  }
  return plan;
}

std::vector<const TensorInfo *> itemFileTensors(const MergePlan::Item &item) {
  std::vector<const TensorInfo *> tensors;
  auto add = [&](const TensorInfo *t) {
    if (std::find(tensors.begin(), tensors.end(), t) == tensors.end())
      tensors.push_back(t);
  };
  size_t next = 0, nextRebuilt = 0;
  for (size_t k = 0; k < item.inputs.size(); ++k) {
    if (next < item.loras.size() && item.loras[next].input == k) {
      if (const LoraTarget *target = item.loras[next].target)
        for (const TensorInfo *t : LoraAdapter::readTensors(*target))
          add(t);
      ++next;
      continue;
    }
    if (nextRebuilt < item.reconstructed.size() && item.reconstructed[nextRebuilt].input == k) {
      const MergePlan::Item::Reconstructed &r = item.reconstructed[nextRebuilt++];
      for (const TensorInfo *t : BundleMember::readTensors(*r.factors, r.member))
        add(t);
      continue;
    }
    add(item.inputs[k]);
  }
  return tensors;
}

namespace {

/// The host streams a computed tensor's output in windows of this many elements (whole chunks;
/// fixed, so the bytes never depend on --threads): 8 MiB of bf16, enough parallel work for
/// 64 threads and large writes, and the output memory no longer grows with the tensor.
constexpr int64_t kWindowElements = 64 * Device::kChunk;
/// How many output pieces (windows, or whole tensors from a GPU or copies) wait for the writer
/// at most; one more is being computed.
constexpr size_t kWindowsQueued = 4;
constexpr size_t kTensorsQueued = 2;

/// The pages this process has resident now (/proc/self/statm), or 0 where that is unknown.
uint64_t residentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident))
    return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

/// What runRule allocates for one tensor besides the output: one f32 buffer per row phase (a
/// value per element for ranks, per row for sums and maxima), and
/// for row ranks the (key, index) pairs rowRanks sorts in, twice (16 bytes a column) on each
/// thread, kept between tensors. The host streams the keys of selections and row phases
/// (HostDevice::streamsKeys): on each thread, and once more for merged counts, a chunk of f32
/// keys and, for each top-k or quantile (sibling top-ks share their passes, so their states
/// coexist), three 64K-bin histograms (one for pass one, two for pass two's cuts) and the
/// offsets of a chunk's keys in the sampled pass's two bands; the top-ks also keep up to
/// kMaxTensorBandKeys (key, index) pairs of their bands (kTensorBandBytes, 32 MiB) or, in the
/// counting passes, 2^21 keys of their boundary buckets (16 MiB with the vectors' growth), and
/// the keys of the sample's chunks (8 a selection). A model-scope top-k's sampled passes keep
/// their bands while the rule's tensors stream through them, all of the rule's at once
/// (ModelTopK::kBandBytes), and one band's selection copies its keys.
uint64_t scratchBytes(const CompiledRule &rule, const TensorInfo &t, uint64_t threads) {
  uint64_t n = static_cast<uint64_t>(t.numel());
  uint64_t cols = t.shape.empty() ? 1 : static_cast<uint64_t>(t.shape.back());
  bool rows = false, ranks = false, selects = false;
  uint64_t selections = 0, modelTopKs = 0;
  for (const CompiledRule::Phase &p : rule.phases) {
    modelTopKs += p.kind == CompiledRule::Kind::TopK && p.modelScope;
    rows = rows || p.kind == CompiledRule::Kind::Row;
    bool select = p.kind == CompiledRule::Kind::TopK || p.kind == CompiledRule::Kind::Quantile;
    selects = selects || select;
    selections += select;
    ranks = ranks || (p.kind == CompiledRule::Kind::Row && p.row == CompiledRule::RowOp::Rank);
  }
  uint64_t perThread =
      (selects ? Device::kChunk * sizeof(float) * 3 + selections * 3 * 65536 * 8 : 0) +
      (rows ? static_cast<uint64_t>(rowChunkSize(static_cast<int64_t>(cols))) * sizeof(float) : 0);
  uint64_t keptBucketKeys =
      selects ? kTensorBandBytes + selections * 8 * Device::kChunk * sizeof(float) : 0;
  // Large tensors' rows in windows (PhaseRunner's RowWindows) take window-sized buffers (the
  // per-thread row chunks stay counted: a smaller tensor uses them).
  uint64_t rowBytes =
      static_cast<uint64_t>(hostBufferElements(rule, t.numel(), static_cast<int64_t>(cols))) *
      sizeof(float);
  uint64_t modelBands =
      modelTopKs ? modelTopKs * ModelTopK::kBandBytes + ModelTopK::kSelectionBytes : 0;
  return rowBytes + (ranks ? 16 * cols * threads : 0) + (threads + 1) * perThread +
         keptBucketKeys + modelBands +
         matrixPhaseBytes(rule, t.numel(), static_cast<int64_t>(cols));
}

} // namespace

uint64_t checkMemory(const MergePlan &plan, KernelSource &kernels, const RunOptions &options) {
  // The host streams computed outputs in windows (a window's bytes at most per buffer) and
  // releases a one-phase rule's input pages window by window; a GPU's tensors come back whole.
  bool windowed = options.device == DeviceKind::CPU;
  uint64_t largestOut = 0, largestFullOut = 0, largestIn = 0, largestScratch = 0;
  const MergePlan::Item *largest = nullptr, *scratchItem = nullptr, *largestInItem = nullptr;
  uint64_t threads =
      options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  // LoRA deltas: the CPU keeps one f32 buffer per LoRA input of a tensor, reused from tensor
  // to tensor (so each as large as the largest it held), and A and B in f32 while computing.
  std::vector<uint64_t> deltaBuffers;
  uint64_t deltaScratch = 0;
  for (const auto &item : plan.items) {
    uint64_t numel = static_cast<uint64_t>(item.base->numel());
    uint64_t outElements = windowed && !item.copy
                               ? std::min<uint64_t>(numel, static_cast<uint64_t>(kWindowElements))
                               : numel;
    // The host writes a copy from its input's mapping: no output buffer. (A GPU's estimate
    // counts copies as before.)
    bool buffered = !(windowed && item.copy);
    uint64_t out = buffered ? outElements * dtypeSize(item.outDType) : 0;
    uint64_t fullOut = buffered ? numel * dtypeSize(item.outDType) : 0;
    uint64_t in = 0;
    for (const TensorInfo *t : itemFileTensors(item))
      in += t->nbytes;
    size_t slot = 0;
    for (const MergePlan::Item::Lora &l : item.loras)
      if (l.target) {
        if (deltaBuffers.size() <= slot)
          deltaBuffers.push_back(0);
        deltaBuffers[slot] = std::max(deltaBuffers[slot], item.inputs[l.input]->nbytes);
        ++slot;
        deltaScratch = std::max(deltaScratch, LoraAdapter::scratchBytes(*l.target));
      }
    for (const MergePlan::Item::Reconstructed &r : item.reconstructed) {
      if (deltaBuffers.size() <= slot)
        deltaBuffers.push_back(0);
      deltaBuffers[slot] = std::max(deltaBuffers[slot], item.inputs[r.input]->nbytes);
      ++slot;
      deltaScratch = std::max(deltaScratch, BundleMember::scratchBytes(*r.factors));
    }
    largestOut = std::max(largestOut, out);
    if (fullOut > largestFullOut) {
      largestFullOut = fullOut;
      largest = &item;
    }
    if (!item.copy) {
      std::vector<DType> dtypes;
      for (const TensorInfo *t : item.inputs)
        dtypes.push_back(t->dtype);
      const CompiledRule &rule = kernels.kernel(item.rule, dtypes, item.outDType);
      // Released window by window: the window being computed (and the pages at its edges,
      // which the release leaves to the neighbouring window, a few per input).
      if (windowed && rule.phases.size() == 1 && item.loras.empty() &&
          item.reconstructed.empty() && numel)
        in = std::min(in, in / numel * outElements);
      // The matrix view is rows x last dimension of 1-D and 2-D tensors; what a tensor of more
      // dimensions should be as a matrix is a choice its merge method has to make.
      if (rule.hasMatrixPhase() && item.base->shape.size() > 2)
        throw RuntimeError("tensor '" + item.base->name + "' has " +
                               std::to_string(item.base->shape.size()) + " dimensions (" +
                               item.base->shapeString() +
                               "): its rule uses matrices (svd, @, ...), which take 1-D and 2-D "
                               "tensors; give it a rule without them",
                           "", item.base->name);
      uint64_t scratch = scratchBytes(rule, *item.base, threads);
      if (scratch > largestScratch) {
        largestScratch = scratch;
        scratchItem = &item;
      }
    }
    if (in > largestIn) {
      largestIn = in;
      largestInItem = &item;
    }
  }
  // Measured after the kernels above are compiled: the binary, the MLIR and LLVM libraries, the
  // JIT's code and what the allocator keeps of compiling it.
  uint64_t baseline = residentBytes();
  uint64_t deltas = deltaScratch;
  for (uint64_t b : deltaBuffers)
    deltas += b;
  // --emit-lora: one SVD at a time on the f32 merge (counted as the output buffers).
  uint64_t svd = 0;
  const MergePlan::Item *svdItem = nullptr;
  if (options.emitLora.rank)
    for (const auto &item : plan.items)
      if (uint64_t b = AdapterExtractor::scratchBytes(*item.base, options.emitLora.rank); b > svd) {
        svd = b;
        svdItem = &item;
      }
  uint64_t buffers = windowed ? kWindowsQueued + 1 : kTensorsQueued + 1;
  uint64_t need = baseline + buffers * largestOut + 2 * largestIn + largestScratch + deltas + svd;
  if (!largest && !largestInItem)
    return need;
  std::string parts = "mergec itself " + formatSize(baseline) + " with its kernels compiled";
  if (largest)
    parts += ", " + std::to_string(buffers) + " output buffers of " + formatSize(largestOut) +
             (windowed ? " (windows of " + std::to_string(kWindowElements) + " elements)" : "") +
             " for the largest tensor '" + largest->base->name + "'";
  if (largestInItem)
    parts += ", " + formatSize(2 * largestIn) + " of input pages for '" +
             largestInItem->base->name + "' and the next";
  if (scratchItem)
    parts += ", " + formatSize(largestScratch) + " of selection and row scratch for '" +
             scratchItem->base->name + "'";
  if (deltas)
    parts += ", " + formatSize(deltas) + " of LoRA delta buffers and factors in f32";
  if (svdItem)
    parts += ", " + formatSize(svd) + " for --emit-lora's SVD of '" + svdItem->base->name +
             "' (LAPACK workspace, U, S, Vt)";
  if (options.maxMemory && need > options.maxMemory)
    throw RuntimeError("this merge needs about " + formatSize(need) + " of memory (" + parts +
                       "), more than --max-memory " + formatSize(options.maxMemory));
  if (options.verbose)
    events().info(rankPrefix(options.comm) + "memory: about " + formatSize(need) + " (" + std::to_string(need) +
                  " bytes: " + parts + "), --max-memory " + formatSize(options.maxMemory));
  return need;
}

namespace {

/// A test hook: with MERGEC_TEST_DELAY_US=N, the writer sleeps N microseconds after each piece
/// it writes (a tensor, or a window of a streamed one; journalled when it ends the tensor) and
/// the model-scope analysis after each tensor it reads, so a test can kill a run at a chosen
/// point (tests/e2e/check_resume.py, check_windows.py).
void testDelay() {
  static const long delay = [] {
    const char *text = std::getenv("MERGEC_TEST_DELAY_US");
    return text ? std::atol(text) : 0L;
  }();
  if (delay > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
}

/// A test hook: with MERGEC_TEST_FAIL_RANK=R, rank R of a merge shared by several processes
/// fails once it has written its shards (tests/e2e/check_mpi.py).
void testFailRank(const Communicator *comm) {
  const char *text = std::getenv("MERGEC_TEST_FAIL_RANK");
  if (comm && text && *text && std::atoi(text) == comm->rank())
    throw RuntimeError(std::string("test hook: MERGEC_TEST_FAIL_RANK=") + text);
}

/// Writes finished tensors on a thread of its own, so disk writes overlap the next kernels.
/// A job is a whole tensor or one window of one (the host's map phase streams its output): the
/// pieces of a tensor come in order, the last one ends it. At most `depth` jobs wait, which
/// bounds the memory held in output buffers.
class AsyncWriter {
public:
  struct Job {
    size_t index;
    const void *data;
    uint64_t nbytes;               ///< of this piece
    std::vector<uint8_t> buffer;   ///< owns `data` when the tensor was computed (may be larger)
    std::vector<const TensorInfo *> release;
    bool last = true;              ///< the tensor's last piece: the journal entry follows it
    NonFinite nonFinite{};         ///< last piece: what the tensor introduced, for the journal
    std::vector<int64_t> scope;    ///< last piece: its rule's model-scope state after it
  };

  /// After each tensor is written, `journal` gets its entry; the shard and then the journal
  /// are synced every kSyncBytes and at each shard's end.
  AsyncWriter(CheckpointWriter &writer, size_t depth, JournalWriter *journal = nullptr)
      : writer_(writer), depth_(depth), journal_(journal), thread_([this] { loop(); }) {}
  /// Never throws: an error still pending here is already being superseded by another.
  ~AsyncWriter() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      ready_.notify_one();
    }
    if (thread_.joinable())
      thread_.join();
  }

  void push(Job job) {
    std::unique_lock<std::mutex> lock(mutex_);
    space_.wait(lock, [&] { return jobs_.size() < depth_ || error_; });
    rethrow();
    jobs_.push_back(std::move(job));
    ready_.notify_one();
  }

  /// Waits for every job; rethrows the writer's error.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      ready_.notify_one();
    }
    if (thread_.joinable())
      thread_.join();
    rethrow();
  }

  /// An output buffer of at least `nbytes`, reusing one the writer is done with as it is (a
  /// window's buffer serves the smaller tensors and last windows after it without being
  /// cleared again). Growing a recycled buffer would hold the old one and the new one at once:
  /// one output buffer more than checkMemory counts. It is dropped first.
  std::vector<uint8_t> recycle(size_t nbytes) {
    std::vector<uint8_t> b;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!spare_.empty()) {
        b = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    if (b.size() < nbytes) {
      std::vector<uint8_t>().swap(b);
      b.resize(nbytes);
    }
    return b;
  }

private:
  void rethrow() {
    if (error_) {
      auto e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !jobs_.empty() || closed_; });
        if (jobs_.empty())
          return;
        job = std::move(jobs_.front());
      }
      try {
        if (journal_)
          checksum_.update(job.data, job.nbytes);
        writer_.writePiece(job.index, job.data, job.nbytes);
        if (journal_ && job.last) {
          JournalEntry entry;
          entry.index = job.index;
          entry.name = writer_.tensors()[job.index].name;
          entry.checksum = checksum_.digest();
          checksum_ = Checksum64();
          entry.nan = job.nonFinite.nan;
          entry.inf = job.nonFinite.inf;
          entry.scope = std::move(job.scope);
          journal_->append(entry);
          unsynced_ += writer_.tensors()[job.index].nbytes();
          if (unsynced_ >= kSyncBytes || writer_.lastInShard(job.index)) {
            writer_.syncCurrent();
            journal_->sync();
            unsynced_ = 0;
          }
        }
        if (journal_)
          testDelay();
      } catch (...) {
        std::exception_ptr error = std::current_exception();
        // A copy writes straight from an input's mapping, and write(2) fails with EFAULT where
        // the input was truncated meanwhile: then the input is what to name.
        if (job.buffer.empty()) {
          try {
            for (const TensorInfo *t : job.release)
              t->file->checkUnchanged();
          } catch (...) {
            error = std::current_exception();
          }
        }
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = error;
        jobs_.clear();
        space_.notify_all();
        return;
      }
      for (const TensorInfo *t : job.release)
        t->file->release(*t);
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.pop_front();
      if (!job.buffer.empty() && spare_.size() < depth_)
        spare_.push_back(std::move(job.buffer));
      space_.notify_one();
    }
  }

  /// A crash loses at most this much written output (the resume redoes it).
  static constexpr uint64_t kSyncBytes = 1ull << 30;
  CheckpointWriter &writer_;
  size_t depth_;
  JournalWriter *journal_;
  Checksum64 checksum_; ///< of the pieces of the tensor being written so far
  uint64_t unsynced_ = 0;
  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<Job> jobs_;
  std::vector<std::vector<uint8_t>> spare_;
  std::exception_ptr error_;
  bool closed_ = false;
  std::thread thread_;
};

/// Checks the files an item reads before its pages are touched: one truncated since it was
/// opened would raise SIGBUS (MappedInputGuard reports that too, but cannot unwind), one
/// rewritten in place would mix old and new bytes into the output.
void checkInputs(const MergePlan::Item &item) {
  for (const TensorInfo *t : itemFileTensors(item))
    t->file->checkUnchanged();
}

void prefetchInputs(const MergePlan::Item &item) {
  for (const TensorInfo *t : itemFileTensors(item))
    t->file->prefetch(*t);
}

void releaseInputs(const MergePlan::Item &item) {
  for (const TensorInfo *t : itemFileTensors(item))
    t->file->release(*t);
}

/// A test hook: with MERGEC_TEST_WAIT_FOR=PATH, the merge says so on stderr and waits (up to a
/// minute) for PATH to exist before it reads any tensor, so a test can change an input at a
/// known point.
void waitForTestHook() {
  const char *path = std::getenv("MERGEC_TEST_WAIT_FOR");
  if (!path || !*path)
    return;
  events().info(events().program() + ": test hook: waiting for " + path);
  for (int i = 0; i < 6000 && !std::filesystem::exists(path); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

/// The kernel inputs and their dtypes of one plan item. A LoRA input's data is null until
/// LoraDeltas::fill computes it (or the plan's zeros where the adapter leaves the tensor).
struct ItemInputs {
  std::vector<DType> dtypes;
  std::vector<const void *> data;
  explicit ItemInputs(const MergePlan::Item &item) {
    for (const TensorInfo *t : item.inputs) {
      dtypes.push_back(t->dtype);
      data.push_back(t->data);
    }
  }
};

/// The host's LoRA deltas: one f32 buffer per LoRA input of a tensor, kept and reused from
/// tensor to tensor (checkMemory counts them so).
class LoraDeltas {
public:
  /// Computes `item`'s deltas and points `in` at them.
  void fill(const MergePlan::Item &item, ItemInputs &in) {
    size_t slot = 0;
    for (const MergePlan::Item::Lora &l : item.loras) {
      if (!l.target)
        continue;
      if (buffers_.size() <= slot)
        buffers_.emplace_back();
      std::vector<float> &buffer = buffers_[slot++];
      size_t n = static_cast<size_t>(item.inputs[l.input]->numel());
      if (buffer.size() < n) {
        std::vector<float>().swap(buffer); // never the old and the new one at once
        buffer.resize(n);
      }
      LoraAdapter::computeDelta(*l.target, buffer.data(), scratch_);
      in.data[l.input] = buffer.data();
    }
    // A bundle member's compressed tensors, reconstructed the same way into buffers of their own.
    for (const MergePlan::Item::Reconstructed &r : item.reconstructed) {
      if (buffers_.size() <= slot)
        buffers_.emplace_back();
      std::vector<float> &buffer = buffers_[slot++];
      size_t n = static_cast<size_t>(item.inputs[r.input]->numel());
      if (buffer.size() < n) {
        std::vector<float>().swap(buffer);
        buffer.resize(n);
      }
      BundleMember::reconstruct(*r.factors, r.member, buffer.data(), scratch_);
      in.data[r.input] = buffer.data();
    }
  }

private:
  std::vector<std::vector<float>> buffers_;
  std::vector<float> scratch_;
};

/// Counts the NaNs and infinities of one tensor's output chunk by chunk, right after the kernel
/// wrote the chunk (still in cache), so a merge that turns finite inputs into NaN or inf (weights
/// summing to 0 under normalize, an overflow to f16, ...) does not pass silently. The inputs of a
/// chunk are read only when its output has some: a NaN or inf among them means the data brought
/// it in, and the tensor is not reported.
class NonFiniteCheck {
public:
  NonFiniteCheck(DType dtype, const void *output, const ItemInputs &in)
      : dtype_(dtype), output_(output), in_(in) {
    hook_ = [this](int64_t begin, int64_t end) { chunk(begin, end); };
  }
  const ChunkHook *hook() const { return &hook_; }
  /// The output is streamed: the chunks to come are in `memory`, which holds the elements from
  /// `begin` on (called between windows, while no chunk is being checked).
  void window(const void *memory, int64_t begin) {
    output_ = memory;
    outputBegin_ = begin;
  }
  /// The output's counts, or nothing when finite or when the inputs had NaN or inf too.
  std::optional<NonFinite> introduced() const {
    NonFinite n{nan_.load(), inf_.load()};
    if (!n.total() || fromInputs_.load())
      return std::nullopt;
    return n;
  }

private:
  void chunk(int64_t begin, int64_t end) {
    NonFinite out = countNonFinite(dtype_, output_, begin - outputBegin_, end - outputBegin_);
    if (!out.total())
      return;
    nan_ += out.nan;
    inf_ += out.inf;
    if (fromInputs_.load(std::memory_order_relaxed))
      return;
    for (size_t k = 0; k < in_.data.size(); ++k)
      // A LoRA delta is not on the host after a device computed with it: not looked at.
      if (in_.data[k] && countNonFinite(in_.dtypes[k], in_.data[k], begin, end).total()) {
        fromInputs_ = true;
        return;
      }
  }
  DType dtype_;
  const void *output_;
  int64_t outputBegin_ = 0; ///< the element output_ points at
  const ItemInputs &in_;
  ChunkHook hook_;
  std::atomic<uint64_t> nan_{0}, inf_{0};
  std::atomic<bool> fromInputs_{false};
};

std::string describe(const std::string &tensor, const NonFinite &n) {
  std::string counts;
  if (n.nan)
    counts = std::to_string(n.nan) + " NaN";
  if (n.inf)
    counts += (counts.empty() ? "" : ", ") + std::to_string(n.inf) + " inf";
  return "'" + tensor + "' (" + counts + ")";
}

/// Moves plan items through a device with memory of its own (hostResident() false), two at a
/// time, so that reading the model, the copies and the kernels overlap: while the device
/// computes item k, item k+1's inputs are read from their mappings into page-locked memory (a
/// host thread) and then uploaded (Upload queue), and item k-1's output comes back (Download
/// queue). Each of the two slots holds, on the host and on the device, the largest item's
/// inputs and output, so device memory is bounded by a few tensors, never the model.
///
/// Use, for k = 0, 1, ...: upload(k); stage(k + 1); the phases on output(k); computed(k);
/// download(k) (with outputs); then downloaded(k - 1) on the host.
class DevicePipeline {
public:
  /// `pool` copies the inputs into page-locked memory (the staging thread hands it the pieces).
  DevicePipeline(Device &device, ThreadPool &pool, const MergePlan &plan, std::vector<size_t> items,
                 bool outputs)
      : device_(device), pool_(pool), plan_(plan), items_(std::move(items)) {
    uint64_t maxIn = 0, maxOut = 0;
    for (size_t i : items_) {
      maxIn = std::max(maxIn, inputBytes(plan_.items[i]));
      maxOut = std::max(maxOut, outputBytes(plan_.items[i]));
    }
    if (items_.empty())
      return;
    for (Slot &s : slots_) {
      s.hostIn = device_.allocateHost(maxIn);
      s.deviceIn = device_.allocate(maxIn);
      if (outputs) {
        s.hostOut = device_.allocateHost(maxOut);
        s.deviceOut = device_.allocate(maxOut);
      }
    }
    // allocate()'s memory is ordered on Compute (it may have been a buffer of kernels still
    // queued): the copy queues start after what Compute has now.
    Device::Fence ready = device_.record(Device::Queue::Compute);
    device_.wait(Device::Queue::Upload, ready);
    device_.wait(Device::Queue::Download, ready);
  }
  DevicePipeline(const DevicePipeline &) = delete;
  DevicePipeline &operator=(const DevicePipeline &) = delete;

  /// Nothing may be in flight when the buffers go: the copies and kernels first (best effort:
  /// an error is already on its way), then the staging threads (Slot's member order).
  ~DevicePipeline() {
    try {
      device_.synchronize();
    } catch (...) {
    }
  }

  size_t size() const { return items_.size(); }
  size_t item(size_t k) const { return items_[k]; }

  /// Checks item k's files and starts reading its inputs into the slot's page-locked memory on
  /// a thread of its own.
  void stage(size_t k) {
    Slot &s = slot(k);
    if (s.staged == k)
      return;
    // The slot's previous item: its staging was consumed by upload(), whose copies must have
    // read the page-locked memory before it is overwritten.
    if (s.staging.valid())
      s.staging.wait();
    device_.synchronize(s.uploaded);
    const MergePlan::Item &item = plan_.items[items_[k]];
    checkInputs(item);
    // Each input's bytes, or the LoRA target whose delta is computed straight into the
    // page-locked memory (on this thread, while the device computes the item before).
    struct Part {
      const void *data;
      uint64_t nbytes;
      const LoraTarget *delta;
    };
    std::vector<Part> parts;
    for (const TensorInfo *t : item.inputs)
      parts.push_back({t->data, t->nbytes, nullptr});
    for (const MergePlan::Item::Lora &l : item.loras)
      parts[l.input].delta = l.target;
    auto *host = static_cast<uint8_t *>(s.hostIn.get());
    s.staged = k;
    ThreadPool *pool = &pool_;
    s.staging = std::async(std::launch::async, [host, parts, pool] {
      // The copies in pieces over the pool's threads: one thread copies from the page cache at
      // a fraction of the memory's bandwidth, and of the host-to-device copy's.
      struct Piece {
        uint8_t *to;
        const uint8_t *from;
        uint64_t nbytes;
      };
      std::vector<Piece> pieces;
      uint64_t offset = 0;
      std::vector<float> scratch;
      for (const Part &p : parts) {
        if (p.delta)
          LoraAdapter::computeDelta(*p.delta, reinterpret_cast<float *>(host + offset), scratch);
        else
          for (uint64_t at = 0; at < p.nbytes; at += kStagingPieceBytes)
            pieces.push_back({host + offset + at, static_cast<const uint8_t *>(p.data) + at,
                              std::min<uint64_t>(kStagingPieceBytes, p.nbytes - at)});
        offset += align(p.nbytes);
      }
      pool->parallelFor(pieces.size(), [&](size_t i) {
        std::memcpy(pieces[i].to, pieces[i].from, pieces[i].nbytes);
      });
    });
  }

  /// Item k's inputs in device memory: uploads them (after their staging) on Upload; work
  /// enqueued on Compute from now on runs after the upload.
  std::vector<const void *> upload(size_t k) {
    Slot &s = slot(k);
    stage(k);
    s.staging.get(); // rethrows what the staging thread threw
    // The device inputs were last read by the slot's previous item's phases.
    device_.wait(Device::Queue::Upload, s.computed);
    const MergePlan::Item &item = plan_.items[items_[k]];
    std::vector<const void *> inputs;
    uint64_t offset = 0;
    for (const TensorInfo *t : item.inputs) {
      void *target = static_cast<uint8_t *>(s.deviceIn.get()) + offset;
      device_.copyAsync(target, static_cast<uint8_t *>(s.hostIn.get()) + offset, t->nbytes,
                        /*toDevice=*/true, Device::Queue::Upload);
      inputs.push_back(target);
      offset += align(t->nbytes);
    }
    s.uploaded = device_.record(Device::Queue::Upload);
    device_.wait(Device::Queue::Compute, s.uploaded);
    return inputs;
  }

  /// Device memory for item k's output; Compute may write it from now on.
  void *output(size_t k) {
    Slot &s = slot(k);
    // The slot's previous output must have left before it is overwritten.
    device_.wait(Device::Queue::Compute, s.downloaded);
    return s.deviceOut.get();
  }

  /// Item k's phases are enqueued: what follows on other queues may wait for them.
  void computed(size_t k) { slot(k).computed = device_.record(Device::Queue::Compute); }

  /// Starts item k's output down, after its phases.
  void download(size_t k) {
    Slot &s = slot(k);
    device_.wait(Device::Queue::Download, s.computed);
    device_.copyAsync(s.hostOut.get(), s.deviceOut.get(), outputBytes(plan_.items[items_[k]]),
                      /*toDevice=*/false, Device::Queue::Download);
    s.downloaded = device_.record(Device::Queue::Download);
  }

  /// Item k's output on the host (page-locked; valid until download(k + 2)).
  const void *downloaded(size_t k) {
    Slot &s = slot(k);
    device_.synchronize(s.downloaded);
    return s.hostOut.get();
  }

  static uint64_t align(uint64_t bytes) { return (bytes + 255) / 256 * 256; }
  static uint64_t inputBytes(const MergePlan::Item &item) {
    uint64_t bytes = 0;
    for (const TensorInfo *t : item.inputs)
      bytes += align(t->nbytes);
    return bytes;
  }
  static uint64_t outputBytes(const MergePlan::Item &item) {
    return static_cast<uint64_t>(item.base->numel()) * dtypeSize(item.outDType);
  }

private:
  struct Slot {
    std::shared_ptr<void> hostIn, deviceIn, hostOut, deviceOut;
    Device::Fence uploaded, computed, downloaded;
    size_t staged = SIZE_MAX;
    std::future<void> staging; ///< last: destroyed (joined) before the buffers it writes
  };
  Slot &slot(size_t k) { return slots_[k % 2]; }

  /// What one thread of the pool copies at a time when staging inputs.
  static constexpr uint64_t kStagingPieceBytes = 4 << 20;

  Device &device_;
  ThreadPool &pool_;
  const MergePlan &plan_;
  std::vector<size_t> items_;
  Slot slots_[2];
};

/// For a device with memory of its own: the device memory the merge needs at most, checked
/// against --max-gpu-memory (0: what the device has free) before anything runs; and every
/// computed rule must have the device's code. Throws RuntimeError with the arithmetic.
void checkDeviceMemory(const MergePlan &plan, KernelSource &kernels, Device &device,
                       const RunOptions &options) {
  using Kind = CompiledRule::Kind;
  uint64_t largestIn = 0, largestOut = 0, largestScratch = 0;
  const MergePlan::Item *inItem = nullptr, *outItem = nullptr, *scratchItem = nullptr;
  for (const MergePlan::Item &item : plan.items) {
    if (item.copy)
      continue;
    std::vector<DType> dtypes;
    for (const TensorInfo *t : item.inputs)
      dtypes.push_back(t->dtype);
    CompiledRule rule = kernels.kernel(item.rule, dtypes, item.outDType);
    if (rule.hasMatrixPhase())
      continue; // computed on the host (executeMerge), in host memory
    if (!rule.deviceImage)
      throw RuntimeError("tensor '" + item.base->name + "': rule " + std::to_string(item.rule + 1) +
                         " has no kernels for --device " +
                         std::string(deviceName(options.device)) +
                         " (its kernels were compiled for the CPU)");
    uint64_t in = DevicePipeline::inputBytes(item), out = DevicePipeline::outputBytes(item);
    if (in > largestIn) {
      largestIn = in;
      inItem = &item;
    }
    if (out > largestOut) {
      largestOut = out;
      outItem = &item;
    }
    // What runRule allocates besides the pipeline's buffers: one key buffer, the row buffers,
    // the largest reduction's partials, and the selections' own scratch.
    int64_t n = item.base->numel();
    int64_t cols = item.base->shape.empty() ? 1 : item.base->shape.back();
    bool keys = false, selects = false;
    uint64_t partials = 0;
    for (const CompiledRule::Phase &p : rule.phases) {
      keys = keys || p.kind == Kind::TopK || p.kind == Kind::Quantile || p.kind == Kind::Row;
      selects = selects || p.kind == Kind::TopK || p.kind == Kind::Quantile || p.kind == Kind::Row;
      if (p.kind == Kind::Reduce)
        partials = std::max<uint64_t>(
            partials, std::max<size_t>(Device::chunkCount(n), 1) * p.reductions.size() * 8);
    }
    uint64_t scratch = (keys * static_cast<uint64_t>(n) +
                        static_cast<uint64_t>(rule.bufferElements(n, cols))) *
                           sizeof(float) +
                       partials + (selects ? device.selectionScratchBytes(n, cols) : 0) +
                       matrixPhaseBytes(rule, n, cols);
    if (scratch > largestScratch) {
      largestScratch = scratch;
      scratchItem = &item;
    }
  }
  if (!inItem)
    return;
  // 1 MiB more: the scalars arrays and the allocator's rounding.
  constexpr uint64_t kSlack = 1 << 20;
  uint64_t need = 2 * largestIn + 2 * largestOut + largestScratch + kSlack;
  std::string parts = "2 input buffers of " + formatSize(largestIn) + " for the largest inputs ('" +
                      inItem->base->name + "') and the next, 2 output buffers of " +
                      formatSize(largestOut) + " ('" + outItem->base->name + "')";
  if (scratchItem && largestScratch)
    parts += ", " + formatSize(largestScratch) + " of selection, row and partials scratch for '" +
             scratchItem->base->name + "'";
  parts += ", " + formatSize(kSlack) + " for scalars and rounding";
  uint64_t limit = options.maxGpuMemory ? options.maxGpuMemory : device.freeMemory();
  std::string against = options.maxGpuMemory
                            ? "--max-gpu-memory " + formatSize(limit)
                            : "the " + formatSize(limit) + " free on " + device.name();
  if (need > limit)
    throw RuntimeError("this merge needs about " + formatSize(need) + " of GPU memory (" + parts +
                       "), more than " + against);
  device.limitMemory(limit);
  if (options.verbose)
    events().info(rankPrefix(options.comm) + "gpu memory: about " + formatSize(need) + " (" + std::to_string(need) +
                  " bytes: " + parts + "), " + against);
}

/// Where a rule's kernels run: the run's device, except that a rule with linear algebra (a
/// matrix phase: a host program of BLAS and LAPACK calls; cuBLAS and cuSOLVER are not wired
/// in) runs on the host under a GPU too, all its phases, with the host's kernels.
class DeviceFor {
public:
  DeviceFor(Device &device, ThreadPool &pool) : device_(device), pool_(pool) {}
  Device &operator()(const CompiledRule &rule) {
    if (device_.hostResident() || !rule.hasMatrixPhase())
      return device_;
    if (!host_)
      host_ = std::make_unique<HostDevice>(pool_);
    return *host_;
  }
  ThreadPool &pool() { return pool_; }

private:
  Device &device_;
  ThreadPool &pool_;
  std::unique_ptr<HostDevice> host_;
};

/// The device rule `rule` computes on (DeviceFor), from its first computed tensor's kernels.
Device &ruleDevice(const MergePlan &plan, KernelSource &kernels, DeviceFor &devices, size_t rule) {
  for (const MergePlan::Item &item : plan.items)
    if (item.rule == rule && !item.copy) {
      ItemInputs in(item);
      return devices(kernels.kernel(item.rule, in.dtypes, item.outDType));
    }
  throw RuntimeError("internal: rule " + std::to_string(rule + 1) + " computes no tensor");
}

/// Streams plan `items`, in order, through `fn(i, inputs)`: the inputs of plan item i where the
/// kernels read them (its mappings on the CPU, device memory through a DevicePipeline).
template <typename Fn>
void streamItems(MergePlan &plan, Device &device, ThreadPool &pool, LoraDeltas &deltas,
                 const std::vector<size_t> &items, Fn fn) {
  if (!device.hostResident()) {
    DevicePipeline pipe(device, pool, plan, items, /*outputs=*/false);
    for (size_t k = 0; k < pipe.size(); ++k) {
      const MergePlan::Item &item = plan.items[pipe.item(k)];
      std::vector<const void *> inputs = pipe.upload(k);
      if (k + 1 < pipe.size())
        pipe.stage(k + 1);
      fn(pipe.item(k), inputs);
      pipe.computed(k);
      releaseInputs(item);
    }
    return;
  }
  for (size_t i : items) {
    const MergePlan::Item &item = plan.items[i];
    checkInputs(item);
    ItemInputs in(item);
    deltas.fill(item, in);
    fn(i, in.data);
    releaseInputs(item);
    testDelay();
  }
}

/// Which plan items this process computes (all of them without several processes) and which
/// rank computes each.
struct Share {
  std::vector<bool> mine;
  std::vector<size_t> owner;
  std::vector<size_t> of(const MergePlan &plan, size_t rule) const {
    std::vector<size_t> items;
    for (size_t i = 0; i < plan.items.size(); ++i)
      if (plan.items[i].rule == rule && !plan.items[i].copy && mine[i])
        items.push_back(i);
    return items;
  }
};

/// Runs the analysis rounds of every rule with model-scope phases (a whole-model threshold or
/// sum): each round streams the rule's tensors, in plan order, through the phases that feed the
/// unfinished ones. Returns each such rule's finished scope, ready for the merge. With several
/// processes each streams only its own tensors and ModelScope::combineRound() makes the result
/// every tensor's, as one process would have it.
std::map<size_t, ModelScope> analyzeModelScope(MergePlan &plan, KernelSource &kernels,
                                               DeviceFor &devices, LoraDeltas &deltas, bool quiet,
                                               Communicator *comm, const Share &share) {
  std::map<size_t, ModelScope> scopes;
  for (const MergePlan::Item &item : plan.items) {
    if (item.copy || scopes.count(item.rule))
      continue;
    ItemInputs in(item);
    CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
    if (compiled.hasModelScope())
      scopes.emplace(item.rule, ModelScope(compiled));
  }
  for (auto &[rule, scope] : scopes) {
    Device &device = ruleDevice(plan, kernels, devices, rule);
    Share all{std::vector<bool>(plan.items.size(), true), share.owner};
    std::vector<size_t> every = all.of(plan, rule), mine = share.of(plan, rule);
    // A sample's keys and bands are the host's, and one process's: several combine counts.
    if (!comm && device.streamsKeys()) {
      int64_t elements = 0;
      for (size_t i : every)
        elements += plan.items[i].base->numel();
      scope.sampleTopKFirst(elements);
    }
    for (int round = 1; !scope.complete(); ++round) {
      if (!quiet)
        events().info("model scope: rule " + std::to_string(rule + 1) + ", pass " +
                      std::to_string(round) + " over its tensors (" + scope.roundName() + ")");
      scope.beginRound();
      streamItems(plan, device, devices.pool(), deltas, mine,
                  [&](size_t i, const std::vector<const void *> &inputs) {
        const MergePlan::Item &item = plan.items[i];
        ItemInputs in(item);
        CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
        scope.setItem(i);
        runRule(device, compiled, inputs, nullptr, *item.base, static_cast<float>(item.layer),
                static_cast<float>(plan.numLayers), &scope, /*analysis=*/true);
      });
      if (comm)
        scope.combineRound(*comm, every, share.owner);
      scope.endRound();
    }
  }
  return scopes;
}

/// Several processes: a model-scope top-k hands out its tie quotas tensor by tensor in plan
/// order, so a process needs, before each of its tensors, what every earlier tensor (of any
/// rank) handed out. Each process runs its own tensors of such rules through every phase but
/// the map (the keys again: one more read of them), notes what each hands out, and the counts
/// are summed over the ranks (integers). Returns, for each of this process's tensors of such a
/// rule, the scope's merge state before it.
std::map<size_t, std::vector<int64_t>> tieQuotas(MergePlan &plan, KernelSource &kernels,
                                                 DeviceFor &devices, LoraDeltas &deltas,
                                                 Communicator &comm,
                                                 const Share &share,
                                                 std::map<size_t, ModelScope> &scopes) {
  std::map<size_t, std::vector<int64_t>> before;
  for (auto &[rule, scope] : scopes) {
    scope.beginMerge();
    size_t width = scope.mergeState().size();
    if (!width)
      continue;
    Device &device = ruleDevice(plan, kernels, devices, rule);
    Share all{std::vector<bool>(plan.items.size(), true), share.owner};
    std::vector<size_t> every = all.of(plan, rule);
    std::map<size_t, size_t> position;
    for (size_t t = 0; t < every.size(); ++t)
      position[every[t]] = t;
    std::vector<int64_t> handed(every.size() * width, 0);
    streamItems(plan, device, devices.pool(), deltas, share.of(plan, rule),
                [&](size_t i, const std::vector<const void *> &inputs) {
                  const MergePlan::Item &item = plan.items[i];
                  ItemInputs in(item);
                  CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
                  std::vector<int64_t> start = scope.mergeState();
                  runRule(device, compiled, inputs, nullptr, *item.base,
                          static_cast<float>(item.layer), static_cast<float>(plan.numLayers),
                          &scope, /*analysis=*/false);
                  std::vector<int64_t> end = scope.mergeState();
                  for (size_t w = 0; w < width; ++w)
                    handed[position[i] * width + w] = end[w] - start[w];
                });
    comm.check();
    comm.sum(handed.data(), handed.size());
    std::vector<int64_t> state(width, 0);
    for (size_t t = 0; t < every.size(); ++t) {
      if (share.mine[every[t]])
        before[every[t]] = state;
      for (size_t w = 0; w < width; ++w)
        state[w] += handed[t * width + w];
    }
  }
  return before;
}

/// The manifest: what was merged from what, by which recipe and version.
void writeManifest(const MergePlan &plan, const RunOptions &options, const std::string &dir,
                   std::optional<size_t> reused,
                   const nlohmann::ordered_json &output = nlohmann::ordered_json()) {
  nlohmann::ordered_json manifest;
  const auto &p = options.provenance;
  manifest["mergec_version"] = p.version;
  manifest["recipe"] = {{"path", p.recipePath}, {"sha256", p.recipeSha256}, {"text", p.recipeText}};
  nlohmann::ordered_json params = nlohmann::ordered_json::object();
  for (auto &[name, value] : p.params)
    params[name] = value;
  manifest["params"] = params;
  manifest["build"] = p.build;
  if (!p.executable.empty())
    manifest["executable"] = p.executable;
  manifest["seed"] = 0;
  manifest["output_dtype"] = options.dtype ? dtypeName(*options.dtype) : "as base";
  nlohmann::ordered_json inputs = nlohmann::ordered_json::array();
  auto absolute = [](const std::string &path) {
    return std::filesystem::absolute(path).lexically_normal().string();
  };
  for (size_t m = 0; m < plan.models.size(); ++m) {
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    if (const LoraAdapter *adapter = plan.adapters[m].get()) {
      std::error_code ec;
      uint64_t configBytes = std::filesystem::file_size(adapter->configPath(), ec);
      files.push_back({{"path", absolute(adapter->configPath())}, {"bytes", ec ? 0 : configBytes}});
      files.push_back({{"path", absolute(adapter->weights().path())},
                       {"bytes", adapter->weights().fileSize()}});
      inputs.push_back({{"name", plan.models[m].name},
                        {"kind", "lora"},
                        {"on", plan.models[m].on},
                        {"path", absolute(plan.models[m].path)},
                        {"files", files}});
      continue;
    }
    for (auto &f : plan.checkpoints[m]->files())
      files.push_back({{"path", absolute(f->path())}, {"bytes", f->fileSize()}});
    inputs.push_back({{"name", plan.models[m].name},
                      {"path", absolute(plan.models[m].path)},
                      {"files", files}});
  }
  manifest["inputs"] = inputs;
  if (!plan.layers.empty()) {
    // The slices as written, and as data: which model's layers make which output layers.
    nlohmann::ordered_json slices = nlohmann::ordered_json::array();
    int first = 0;
    for (const LayerSlice &slice : plan.layers) {
      nlohmann::ordered_json sources = nlohmann::ordered_json::array();
      for (const LayerSlice::Source &source : slice.sources)
        sources.push_back({{"model", source.model}, {"layer_range", {source.begin, source.end}}});
      slices.push_back({{"output_layers", {first, first + slice.length()}}, {"sources", sources}});
      first += slice.length();
    }
    manifest["layers"] = {{"recipe", describeLayers(plan.layers)},
                          {"num_layers", plan.numLayers},
                          {"slices", slices}};
  }
  manifest["tensors"] = plan.items.size();
  if (!output.is_null())
    manifest["output"] = output; // what the output is when it is not the merged model
  if (reused) {
    // Only a resumed run says so: an uninterrupted run's manifest is as it always was.
    manifest["resumed"] = true;
    manifest["resumed_tensors_reused"] = *reused;
  }
  std::string path = dir + "/" + kManifestName;
  std::ofstream out(path);
  out << manifest.dump(2) << "\n";
  out.close();
  if (!out)
    throw RuntimeError("cannot write " + path);
}

/// With layers: the output model's config.json with the output's layer count and per-layer
/// lists (LayerStack.h), each list's entries from the config of the model a layer comes from.
void writeStackedConfig(const MergePlan &plan, const std::string &dir) {
  const Checkpoint &base = *plan.checkpoints[plan.outputModel];
  std::string path = base.directory() + "/config.json";
  std::optional<std::string> text = detail::readSmallFileIfExists(path, 16u << 20);
  if (!text)
    return;
  std::vector<SourceConfig> sources;
  for (const LayerSlice &slice : plan.layers) {
    const std::string &model = slice.sources.front().model;
    if (std::any_of(sources.begin(), sources.end(),
                    [&](const SourceConfig &c) { return c.model == model; }))
      continue;
    for (size_t m = 0; m < plan.models.size(); ++m)
      if (plan.models[m].name == model && plan.checkpoints[m]) {
        std::string own = plan.checkpoints[m]->directory() + "/config.json";
        if (auto ownText = detail::readSmallFileIfExists(own, 16u << 20))
          sources.push_back({model, own, *ownText});
      }
  }
  std::vector<std::string> warnings;
  std::string config = stackedConfig(*text, path, plan.outputModelLayers, plan.numLayers,
                                     layerOrigins(plan.layers), plan.layers, sources, warnings);
  for (const std::string &warning : warnings)
    events().warning(warning);
  std::string to = dir + "/config.json";
  std::ofstream out(to, std::ios::binary);
  out << config;
  out.close();
  if (!out)
    throw RuntimeError("cannot write " + to);
}

/// What the output depends on besides the code: the journal's header (Journal.h). A resume
/// whose header differs is refused with journalMismatch()'s reason.
nlohmann::json journalHeader(const MergePlan &plan, const std::vector<OutputTensorSpec> &specs,
                             const RunOptions &options) {
  const auto &p = options.provenance;
  nlohmann::json header = nlohmann::json::object();
  header["version"] = p.version;
  header["recipe_sha256"] = p.recipeSha256;
  nlohmann::json params = nlohmann::json::object();
  for (auto &[name, value] : p.params)
    params[name] = value;
  header["params"] = params;
  header["output_dtype"] = options.dtype ? dtypeName(*options.dtype) : "as base";
  header["shard_size"] = options.shardSize;
  header["device"] = deviceName(options.device);
  header["num_layers"] = plan.numLayers;
  if (!plan.layers.empty()) // the same names can come from other layers
    header["layers"] = describeLayers(plan.layers);
  nlohmann::json inputs = nlohmann::json::array();
  for (const auto &checkpoint : plan.checkpoints)
    if (checkpoint)
      for (const auto &f : checkpoint->files())
        inputs.push_back({{"path", std::filesystem::absolute(f->path()).lexically_normal().string()},
                          {"bytes", f->fileSize()},
                          {"mtime_ns", f->mtimeNanoseconds()}});
  // An adapter is small next to a model, and a changed one (retrained into the same directory,
  // same size) must not resume: its config and every tensor's bytes are hashed.
  for (const auto &adapter : plan.adapters)
    if (adapter) {
      const SafetensorsFile &w = adapter->weights();
      uint64_t hash = adapter->configChecksum();
      for (const TensorInfo &t : w.tensors())
        hash = hash * 1000003u ^ checksum64(t.data, t.nbytes);
      char text[17];
      std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
      inputs.push_back({{"path", std::filesystem::absolute(w.path()).lexically_normal().string()},
                        {"bytes", w.fileSize()},
                        {"mtime_ns", w.mtimeNanoseconds()},
                        {"lora_checksum", text}});
    }
  header["inputs"] = inputs;
  // The layout of every shard follows from the tensors' names, dtypes and shapes in order
  // (and the shard size); the rule and copy flag of each say how it is made.
  std::string layout;
  for (size_t i = 0; i < specs.size(); ++i) {
    layout += specs[i].name;
    layout += '\0';
    layout += dtypeName(specs[i].dtype);
    for (int64_t d : specs[i].shape)
      layout += "," + std::to_string(d);
    layout += ";" + std::to_string(plan.items[i].rule) + (plan.items[i].copy ? "c" : "k") + "\n";
  }
  char hash[32];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(checksum64(layout.data(), layout.size())));
  header["plan"] = std::to_string(specs.size()) + " tensors, " + hash;
  return header;
}

/// Removes from an adopted temporary directory what the run writes after the tensors (side
/// files, index, manifest, model card): a run killed during those left some; they are written
/// anew. Shards and the journal stay.
void removeAllBut(const std::string &dir, const std::vector<std::string> &keep) {
  std::error_code ec;
  std::vector<std::filesystem::path> remove;
  for (const auto &entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) == keep.end())
      remove.push_back(entry.path());
  }
  for (const auto &path : remove) {
    std::filesystem::remove_all(path, ec);
    if (ec)
      throw RuntimeError(path.string() + ": cannot remove it from the unfinished output: " +
                         ec.message());
  }
}

} // namespace

std::vector<ProtectedInput> planInputs(const MergePlan &plan) {
  std::vector<ProtectedInput> inputs;
  for (size_t m = 0; m < plan.models.size(); ++m) {
    if (const LoraAdapter *adapter = plan.adapters[m].get()) {
      std::string what = "lora '" + plan.models[m].name + "'";
      inputs.push_back({what, plan.models[m].path});
      inputs.push_back({"a file of " + what, adapter->configPath()});
      inputs.push_back({"a file of " + what, adapter->weights().path()});
      continue;
    }
    std::string what = "model '" + plan.models[m].name + "'";
    inputs.push_back({what, plan.models[m].path});
    for (auto &f : plan.checkpoints[m]->files())
      inputs.push_back({"a file of " + what, f->path()});
  }
  return inputs;
}

namespace {

/// Outputs written whole by one process (an adapter, a bundle) are refused under mpirun:
/// "WHAT is not supported with several processes (mpirun)" and the reason.
void refuseSeveralProcesses(const RunOptions &options, const char *what, const char *why) {
  if (options.comm && options.comm->size() > 1)
    throw RuntimeError(std::string(what) + " is not supported with several processes (mpirun)" +
                       why);
}

/// --emit-lora: every tensor's merge in f32 (the kernels as for a model, on the host, with the
/// model-scope analysis first), handed to an AdapterExtractor instead of a CheckpointWriter; then
/// the adapter, the manifest and the card, committed like a model. No journal and no shards:
/// the adapter's header waits for the last SVD (checkRunOptions refuses --resume).
RunStats extractAdapter(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                        OutputDirectory &outDir) {
  auto start = std::chrono::steady_clock::now();
  refuseSeveralProcesses(options, "--emit-lora",
                         ": the adapter is one file written at the end; run it as one process");
  ThreadPool pool(options.threads);
  std::unique_ptr<Device> devicePtr = createDevice(options, pool);
  Device &device = *devicePtr;
  DeviceFor devices(device, pool);
  std::vector<const TensorInfo *> tensors;
  for (const MergePlan::Item &item : plan.items)
    tensors.push_back(item.base);
  AdapterExtractor extractor(outDir.tempPath(), options.emitLora, tensors);
  for (const std::string &glob : extractor.unmatchedTargets())
    events().warning("--lora-targets: '" + glob + "' matches no tensor of model '" +
                     plan.models[plan.outputModel].name + "'");
  RunStats stats;
  Progress progress(plan.items.size(), plan.inputBytes, options.quiet);
  Share all{std::vector<bool>(plan.items.size(), true), std::vector<size_t>(plan.items.size(), 0)};
  LoraDeltas deltas;
  waitForTestHook();
  std::map<size_t, ModelScope> scopes =
      analyzeModelScope(plan, kernels, devices, deltas, options.quiet, nullptr, all);
  for (auto &[rule, scope] : scopes)
    scope.beginMerge();
  std::vector<float> merged;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    MergePlan::Item &item = plan.items[i];
    if (i + 1 < plan.items.size())
      prefetchInputs(plan.items[i + 1]);
    checkInputs(item);
    const TensorInfo &base = *item.base;
    // The adapter's tensors take the output's dtype (--dtype, else the output model's).
    DType dtype = options.dtype && isComputeDType(base.dtype) ? *options.dtype : base.dtype;
    if (item.copy && !isComputeDType(base.dtype)) {
      extractor.addRaw(base, item.inputs[0]->data);
    } else if (!(item.copy && item.inputs[0] == item.base)) { // the output model's own: 0
      size_t n = static_cast<size_t>(base.numel());
      if (merged.size() < n) {
        std::vector<float>().swap(merged); // never the old and the new one at once
        merged.resize(n);
      }
      if (item.copy) {
        const TensorInfo &in = *item.inputs[0];
        for (size_t e = 0; e < n; ++e)
          merged[e] = in.dtype == DType::F32 ? reinterpret_cast<const float *>(in.data)[e]
                      : in.dtype == DType::BF16
                          ? std::bit_cast<float>(static_cast<uint32_t>(
                                reinterpret_cast<const uint16_t *>(in.data)[e]) << 16)
                          : static_cast<float>(reinterpret_cast<const _Float16 *>(in.data)[e]);
      } else {
        ItemInputs in(item);
        deltas.fill(item, in);
        CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
        auto scope = scopes.find(item.rule);
        NonFiniteCheck check(item.outDType, merged.data(), in);
        runRule(device, compiled, in.data, merged.data(), base, static_cast<float>(item.layer),
                static_cast<float>(plan.numLayers),
                scope == scopes.end() ? nullptr : &scope->second, false, check.hook());
        // An SVD cannot take NaN or inf, and an adapter could not carry them anyway.
        if (auto introduced = check.introduced())
          throw RuntimeError("--emit-lora: tensor " + describe(base.name, *introduced) +
                                 " holds NaN or inf values where its inputs are finite; an "
                                 "adapter cannot carry them, and nothing was written",
                             "", base.name);
      }
      extractor.add(base, merged.data(), dtype);
    }
    releaseInputs(item);
    for (const TensorInfo *t : itemFileTensors(item))
      stats.bytesRead += t->nbytes;
    progress.update(i + 1, stats.bytesRead);
  }
  for (const auto &checkpoint : plan.checkpoints)
    if (checkpoint)
      for (const auto &file : checkpoint->files())
        file->checkUnchanged();
  for (const auto &adapter : plan.adapters)
    if (adapter)
      adapter->weights().checkUnchanged();
  const ModelSpec &outputModel = plan.models[plan.outputModel];
  extractor.finish(std::filesystem::absolute(outputModel.path).lexically_normal().string());
  for (const std::string &warning : extractor.warnings())
    events().warning(warning);
  writeManifest(plan, options, outDir.tempPath(), std::nullopt, extractor.summary());
  writeModelCard(plan, options, outDir.tempPath());
  testDelay();
  outDir.commit();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.bytesWritten = extractor.bytesWritten();
  stats.tensors = plan.items.size();
  progress.finish(stats.seconds, stats.bytesRead, stats.bytesWritten, 1, plan.items.size());
  if (!options.quiet)
    events().info(events().program() + ": adapter: " + extractor.summaryLine());
  return stats;
}

/// A member's fingerprint for bundle.json: FNV-1a over the 64-bit words of each of its tensors'
/// names and bytes, in plan order, computed as the bundle streams them (no second read).
class MemberHash {
public:
  void add(const TensorInfo &t) {
    for (char c : t.name)
      mix(static_cast<uint8_t>(c));
    size_t words = t.nbytes / 8;
    for (size_t w = 0; w < words; ++w) {
      uint64_t v;
      std::memcpy(&v, t.data + 8 * w, 8);
      mix(v);
    }
    for (size_t b = words * 8; b < t.nbytes; ++b)
      mix(t.data[b]);
  }
  std::string hex() const {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h_));
    return text;
  }

private:
  void mix(uint64_t v) {
    h_ ^= v;
    h_ *= 1099511628211ull;
  }
  uint64_t h_ = 14695981039346656037ull;
};

/// compress(...): the bundle (Bundle.h) instead of a model. One pass: for a compressed tensor
/// the rule's kernels run with a BundleSink that takes the members' scales and factors (and
/// sets the tensor's rank for merge.bundle_rank) while the result, the average, comes back in
/// f32; each stored tensor is each member's bytes. Then bundle.json, the manifest and the
/// card, committed like a model.
RunStats writeBundle(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                     OutputDirectory &outDir) {
  auto start = std::chrono::steady_clock::now();
  refuseSeveralProcesses(options, "compress(...)", "; run it as one process");
  if (options.device != DeviceKind::CPU)
    throw RuntimeError("compress(...) runs on the host only (--device cpu): its SVDs are "
                       "LAPACK's");
  ThreadPool pool(options.threads);
  std::unique_ptr<Device> devicePtr = createDevice(options, pool);
  Device &device = *devicePtr;
  std::map<std::string, size_t> modelIndex;
  for (size_t m = 0; m < plan.models.size(); ++m)
    modelIndex[plan.models[m].name] = m;
  std::vector<size_t> members;
  for (const std::string &name : options.bundle.members)
    members.push_back(modelIndex.at(name));
  std::vector<std::vector<const TensorInfo *>> tensors;
  for (const MergePlan::Item &item : plan.items) {
    std::vector<const TensorInfo *> each;
    for (size_t m : members) {
      const TensorInfo *t = plan.checkpoints[m]->find(item.base->name);
      if (!t)
        throw RuntimeError("tensor '" + item.base->name + "': bundle member '" +
                               plan.models[m].name + "' (" + plan.models[m].path +
                               ") has no such tensor",
                           "", item.base->name);
      each.push_back(t);
    }
    tensors.push_back(std::move(each));
  }
  BundleLayout layout(options.bundle, tensors, options.dtype);
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"merged_by", "mergec"},
                                                 {"mergec_bundle", "1"}};
  CheckpointWriter writer(outDir.tempPath(), layout.specs(), options.shardSize, metadata);
  std::vector<MemberHash> hashes(members.size());
  RunStats stats;
  Progress progress(plan.items.size(), plan.inputBytes, options.quiet);
  std::vector<float> average;
  std::vector<uint8_t> bytes;
  size_t next = 0; // the writer's next output tensor
  auto put = [&](const void *data, uint64_t nbytes) {
    writer.write(next++, data, nbytes);
    stats.bytesWritten += nbytes;
  };
  auto putF32 = [&](const std::vector<float> &values, DType dtype) {
    bytes.clear();
    storeF32As(dtype, values.data(), values.size(), bytes);
    put(bytes.data(), bytes.size());
  };
  waitForTestHook();
  for (size_t i = 0; i < plan.items.size(); ++i) {
    MergePlan::Item &item = plan.items[i];
    const BundleLayout::Tensor &entry = layout.tensors()[i];
    if (i + 1 < plan.items.size())
      prefetchInputs(plan.items[i + 1]);
    checkInputs(item);
    for (size_t k = 0; k < members.size(); ++k)
      hashes[k].add(*entry.members[k]);
    if (!entry.compressed) {
      for (const TensorInfo *t : entry.members)
        put(t->data, t->nbytes);
    } else {
      size_t n = static_cast<size_t>(item.base->numel());
      if (average.size() != n) {
        std::vector<float>().swap(average);
        average.resize(n);
      }
      BundleSink sink(layout, entry);
      ItemInputs in(item);
      CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, DType::F32);
      NonFiniteCheck check(DType::F32, average.data(), in);
      setMatrixSink(&sink);
      try {
        runRule(device, compiled, in.data, average.data(), *item.base,
                static_cast<float>(item.layer), static_cast<float>(plan.numLayers), nullptr,
                false, check.hook());
      } catch (...) {
        setMatrixSink(nullptr);
        throw;
      }
      setMatrixSink(nullptr);
      sink.checkComplete();
      if (auto introduced = check.introduced())
        throw RuntimeError("compress: tensor " + describe(item.base->name, *introduced) +
                               " holds NaN or inf values in its average where its inputs are "
                               "finite; nothing was written",
                           "", item.base->name);
      DType dtype = layout.factorDType(*item.base);
      putF32(average, dtype);
      putF32(sink.values(entry.firstSpec + 1), DType::F32);
      for (size_t k = 0; k < members.size(); ++k) {
        putF32(sink.values(entry.firstSpec + 2 + 2 * k), dtype);
        putF32(sink.values(entry.firstSpec + 3 + 2 * k), dtype);
      }
    }
    releaseInputs(item);
    for (const TensorInfo *t : itemFileTensors(item))
      stats.bytesRead += t->nbytes;
    progress.update(i + 1, stats.bytesRead);
  }
  writer.finish();
  for (const auto &checkpoint : plan.checkpoints)
    if (checkpoint)
      for (const auto &file : checkpoint->files())
        file->checkUnchanged();
  std::vector<nlohmann::ordered_json> described;
  uint64_t memberBytes = 0;
  for (size_t k = 0; k < members.size(); ++k) {
    const ModelSpec &m = plan.models[members[k]];
    uint64_t size = 0;
    for (const auto &file : plan.checkpoints[members[k]]->files())
      size += file->fileSize();
    memberBytes += size;
    described.push_back({{"index", k},
                         {"name", m.name},
                         {"path", std::filesystem::absolute(m.path).lexically_normal().string()},
                         {"bytes", size},
                         {"hash", "fnv1a64-words:" + hashes[k].hex()}});
  }
  // The first member's config and tokenizer: the members share them (one architecture), and a
  // member re-materialised from the bundle (`merge zoo[i]`) takes them from here.
  for (const std::string &name : kSideFiles) {
    std::string warning;
    if (copySideFile(plan.checkpoints[members.front()]->directory(), outDir.tempPath(), name,
                     warning) == SideFileResult::Skipped)
      events().warning(warning);
  }
  nlohmann::ordered_json description = layout.describe(described);
  uint64_t bundleBytes = 0;
  for (size_t s = 0; s < writer.shardCount(); ++s)
    bundleBytes += writer.shardFileBytes(s);
  double ratio = memberBytes ? static_cast<double>(bundleBytes) / static_cast<double>(memberBytes)
                             : 0.0;
  description["bytes"] = bundleBytes;
  description["compression_ratio"] = ratio;
  {
    std::string path = outDir.tempPath() + "/" + kBundleFileName;
    std::ofstream out(path);
    out << description.dump(2) << "\n";
    out.close();
    if (!out)
      throw RuntimeError("cannot write " + path);
  }
  size_t compressed = 0;
  for (const BundleLayout::Tensor &t : layout.tensors())
    compressed += t.compressed;
  nlohmann::ordered_json summary = {{"kind", "bundle"},
                                    {"members", options.bundle.members},
                                    {"compressed_tensors", compressed},
                                    {"stored_tensors", layout.tensors().size() - compressed},
                                    {"bytes", bundleBytes},
                                    {"compression_ratio", ratio}};
  writeManifest(plan, options, outDir.tempPath(), std::nullopt, summary);
  testDelay();
  outDir.commit();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.tensors = plan.items.size();
  progress.finish(stats.seconds, stats.bytesRead, stats.bytesWritten, writer.shardCount(),
                  plan.items.size());
  if (!options.quiet) {
    char line[256];
    std::snprintf(line, sizeof line,
                  ": bundle: %zu members, %zu tensors compressed, %zu stored; %.4f of the "
                  "members' bytes",
                  members.size(), compressed, layout.tensors().size() - compressed, ratio);
    events().info(events().program() + line);
  }
  return stats;
}

} // namespace

RunStats executeMerge(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                      OutputDirectory &outDir) {
  auto start = std::chrono::steady_clock::now();
  // Matrix phases' GEMMs (and --emit-lora's SVDs) run on the linear algebra's own threads (a
  // matrix phase runs while the pool waits): as many as --threads.
  mergec_la_set_threads(static_cast<int32_t>(options.threads));
  if (options.emitLora.rank)
    return extractAdapter(plan, kernels, options, outDir);
  if (options.bundle.enabled)
    return writeBundle(plan, kernels, options, outDir);
  std::vector<OutputTensorSpec> specs;
  uint64_t outputBytes = 0;
  for (auto &item : plan.items) {
    specs.push_back({item.base->name, item.outDType, item.base->shape});
    outputBytes += specs.back().nbytes();
  }
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"merged_by", "mergec"}};
  ThreadPool pool(options.threads);
  std::unique_ptr<Device> devicePtr = createDevice(options, pool);
  Device &device = *devicePtr;
  DeviceFor devices(device, pool);
  // Before the first file is created: a merge that cannot fit the GPU stops here.
  if (!device.hostResident())
    checkDeviceMemory(plan, kernels, device, options);
  CheckpointWriter writer(outDir.tempPath(), specs, options.shardSize, metadata);
  RunStats stats;
  // Several processes: each computes and writes the tensors of its shards (balanced by bytes),
  // reading only their inputs; rank 0 writes what follows the tensors and commits.
  Communicator *comm = options.comm && options.comm->size() > 1 ? options.comm : nullptr;
  Share share{std::vector<bool>(plan.items.size(), true),
              std::vector<size_t>(plan.items.size(), 0)};
  if (comm) {
    if (options.resume)
      throw RuntimeError("--resume is not supported with several processes (mpirun); run "
                         "without it");
    std::vector<size_t> owner = writer.assignShards(static_cast<size_t>(comm->size()));
    std::vector<bool> owned(owner.size());
    for (size_t s = 0; s < owner.size(); ++s)
      owned[s] = owner[s] == static_cast<size_t>(comm->rank());
    writer.restrictTo(owned);
    for (size_t i = 0; i < plan.items.size(); ++i) {
      share.owner[i] = owner[writer.shardOf(i)];
      share.mine[i] = owned[writer.shardOf(i)];
    }
    if (options.verbose) {
      size_t shards = 0, tensors = 0;
      uint64_t bytes = 0;
      for (size_t s = 0; s < owned.size(); ++s)
        if (owned[s]) {
          ++shards;
          bytes += writer.shardFileBytes(s);
        }
      for (size_t i = 0; i < plan.items.size(); ++i)
        tensors += share.mine[i];
      events().info(rankPrefix(comm) + "writes " + std::to_string(shards) + " of " +
                    std::to_string(owned.size()) + " shards (" + std::to_string(tensors) +
                    " tensors, " + formatSize(bytes) + ")");
    }
  }
  bool leader = !comm || comm->rank() == 0;

  // The journal (Journal.h): a new one, or with --resume the interrupted run's, continued
  // after the last tensor whose bytes verify. Nothing before `resumeFrom` is computed again.
  std::string journalPath = detail::joinPath(outDir.tempPath(), kJournalName);
  nlohmann::json header = journalHeader(plan, specs, options);
  size_t resumeFrom = 0;
  JournalContents previous;
  std::unique_ptr<JournalWriter> journal;
  if (!options.resume && outDir.removedProgress() > 0)
    events().note("removed the unfinished output of an earlier run (" +
                  std::to_string(outDir.removedProgress()) +
                  " tensors done); --resume would have continued it");
  if (options.resume && outDir.resumable().empty())
    events().note("--resume: no unfinished output of an earlier run for " + outDir.finalPath() +
                  "; merging from the start");
  if (options.resume && !outDir.resumable().empty()) {
    previous = readJournal(detail::joinPath(outDir.resumable(), kJournalName));
    if (std::string why = journalMismatch(previous.header, header); !why.empty())
      throw RuntimeError("--resume: " + why + "; run without --resume to start over");
    auto verifyStart = std::chrono::steady_clock::now();
    outDir.adopt();
    ResumePoint point = verifyJournal(writer, outDir.tempPath(), previous);
    resumeFrom = point.index;
    std::string reason = point.reason;
    if (reason.empty() && !previous.stoppedAt.empty() && resumeFrom < plan.items.size())
      reason = "the journal's " + previous.stoppedAt;
    // The model-scope state journalled for the tensors kept must fit this run's rules.
    for (size_t j = 0; j < resumeFrom; ++j) {
      const JournalEntry &e = previous.entries[j];
      if (!plan.items[j].copy && !e.scope.empty() && e.scope.size() % 2) {
        resumeFrom = j;
        reason = "journal entry " + std::to_string(j + 1) + " has a malformed scope";
      }
    }
    std::vector<std::string> keep = writer.shardFileNames();
    keep.push_back(kJournalName);
    removeAllBut(outDir.tempPath(), keep);
    writer.resumeAt(resumeFrom);
    journal = std::make_unique<JournalWriter>(
        journalPath, resumeFrom ? previous.ends[resumeFrom - 1] : previous.headerEnd);
    for (size_t j = 0; j < resumeFrom; ++j)
      if (previous.entries[j].nan || previous.entries[j].inf)
        stats.nonFinite.emplace_back(specs[j].name,
                                     NonFinite{previous.entries[j].nan, previous.entries[j].inf});
    stats.resumedTensors = resumeFrom;
    if (!options.quiet) {
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                     verifyStart).count();
      std::string line = events().program() + ": resuming: " + std::to_string(resumeFrom) + " of " +
                         std::to_string(plan.items.size()) +
                         " tensors verified in the unfinished output and reused (" +
                         formatSize(point.bytesRead) + " re-read in " +
                         std::to_string(static_cast<int>(seconds * 1000)) + " ms)";
      if (resumeFrom < plan.items.size())
        line += "; merging on from tensor '" + specs[resumeFrom].name + "'";
      if (!reason.empty())
        line += " (" + reason + ")";
      events().info(line);
    }
  }
  // Several processes write no journal (and --resume is refused): one file, many writers.
  if (!journal && !comm)
    journal = std::make_unique<JournalWriter>(journalPath, header);

  // Several processes: rank 0 shows its own share's progress; the others are quiet.
  size_t ownItems = 0;
  uint64_t ownBytes = 0;
  for (size_t i = 0; i < plan.items.size(); ++i)
    if (share.mine[i]) {
      ++ownItems;
      for (const TensorInfo *t : itemFileTensors(plan.items[i]))
        ownBytes += t->nbytes;
    }
  Progress progress(comm ? ownItems : plan.items.size(), comm ? ownBytes : plan.inputBytes,
                    options.quiet || !leader, options.onProgress);
  size_t progressDone = resumeFrom;
  waitForTestHook();
  LoraDeltas deltas;
  std::map<size_t, ModelScope> scopes =
      analyzeModelScope(plan, kernels, devices, deltas, options.quiet || !leader, comm, share);
  std::map<size_t, std::vector<int64_t>> quotas;
  if (comm)
    quotas = tieQuotas(plan, kernels, devices, deltas, *comm, share, scopes);
  // Several processes: a tensor's model-scope top-k starts with the quotas of those before it.
  auto restoreQuotas = [&](size_t i) {
    if (auto q = quotas.find(i); q != quotas.end())
      scopes.at(plan.items[i].rule).restoreMergeState(q->second);
  };
  // The merge starts each scope afresh; a resumed one continues from the state the journal
  // recorded after the last tensor of the rule that it keeps.
  auto beginMerge = [&] {
    for (auto &[rule, scope] : scopes) {
      scope.beginMerge();
      const JournalEntry *last = nullptr;
      for (size_t j = 0; j < resumeFrom; ++j)
        if (plan.items[j].rule == rule && !plan.items[j].copy)
          last = &previous.entries[j];
      if (last && !scope.mergeState().empty()) {
        if (last->scope.size() != scope.mergeState().size())
          throw RuntimeError("--resume: the journal's model-scope state for tensor '" +
                             last->name + "' does not fit rule " + std::to_string(rule + 1) +
                             "; run without --resume to start over");
        scope.restoreMergeState(last->scope);
      }
    }
  };
  if (resumeFrom)
    progress.update(resumeFrom, 0);
  size_t computedTensors = 0;
  size_t hostTensors = 0; ///< of those, computed on the host under a GPU (DeviceFor)
  // A computed tensor's output was checked: NaN or inf its inputs did not bring is an error
  // under --strict, else remembered for the warning (and the journal).
  auto reportNonFinite = [&](const MergePlan::Item &item, const NonFiniteCheck &check) {
    if (auto introduced = check.introduced()) {
      if (options.strict)
        throw RuntimeError("--strict: tensor " + describe(item.base->name, *introduced) +
                               " holds NaN or inf values where its inputs are finite; nothing "
                               "was written",
                           "", item.base->name);
      stats.nonFinite.emplace_back(item.base->name, *introduced);
      return *introduced;
    }
    return NonFinite{};
  };
  auto scopeState = [&](const MergePlan::Item &item) {
    auto scope = scopes.find(item.rule);
    return scope == scopes.end() ? std::vector<int64_t>() : scope->second.mergeState();
  };
  {
    // One writer for both paths; closed (and joined) before the final checks below.
    AsyncWriter async(writer, device.hostResident() ? kWindowsQueued : kTensorsQueued,
                      journal.get());
    beginMerge();
    // Every tensor, computed or copied, ends the same way: its input bytes counted, its job to
    // the writer (in plan order), the progress moved on.
    auto submit = [&](const MergePlan::Item &item, AsyncWriter::Job job) {
      for (const TensorInfo *t : itemFileTensors(item))
        stats.bytesRead += t->nbytes;
      async.push(std::move(job));
      progress.update(++progressDone, stats.bytesRead);
    };
    // An item computed on the host, its output streamed to the writer in windows: every item
    // when the run's device is the host, and under a GPU those of rules with linear algebra
    // (DeviceFor), `on` then being the host device their kernels run on.
    auto computeOnHost = [&](size_t i, Device &on) {
      MergePlan::Item &item = plan.items[i];
      ItemInputs in(item);
      deltas.fill(item, in);
      CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
      auto scope = scopes.find(item.rule);
      restoreQuotas(i);
      NonFiniteCheck check(item.outDType, nullptr, in);
      int64_t n = item.base->numel();
      size_t elementBytes = dtypeSize(item.outDType);
      // A rule of one map phase reads each input element once, in that window: its pages can
      // go as soon as the window is computed. Earlier phases read the whole tensor, and a
      // LoRA input (or a bundle member's reconstructed tensor) is a buffer rather than a
      // mapping: those are released after it.
      bool releaseEachWindow = compiled.phases.size() == 1 && item.loras.empty() &&
                               item.reconstructed.empty();
      // The window being computed, and the tensor's last one, held back until the tensor's
      // NaN/inf verdict and model-scope state are known: the journal entry goes with it, and
      // under --strict a tensor that fails never gets one.
      AsyncWriter::Job window{i, nullptr, 0}, last{i, nullptr, 0};
      MapWindows windows{
          kWindowElements, elementBytes,
          [&](int64_t begin, int64_t end) {
            uint64_t nbytes = static_cast<uint64_t>(end - begin) * elementBytes;
            window = AsyncWriter::Job{i, nullptr, nbytes};
            window.buffer = async.recycle(window.nbytes);
            window.data = window.buffer.data();
            check.window(window.data, begin);
            return window.buffer.data();
          },
          [&](int64_t begin, int64_t end) {
            if (releaseEachWindow)
              for (const TensorInfo *t : item.inputs) {
                uint64_t size = dtypeSize(t->dtype);
                t->file->release(*t, static_cast<uint64_t>(begin) * size,
                                 static_cast<uint64_t>(end) * size);
              }
            if (end == n) {
              last = std::move(window);
              return;
            }
            window.last = false;
            async.push(std::move(window));
          }};
      runRule(on, compiled, in.data, nullptr, *item.base, static_cast<float>(item.layer),
              static_cast<float>(plan.numLayers),
              scope == scopes.end() ? nullptr : &scope->second, false, check.hook(), nullptr,
              &windows);
      last.nonFinite = reportNonFinite(item, check);
      last.scope = scopeState(item);
      ++computedTensors;
      releaseInputs(item);
      submit(item, std::move(last));
    };
    if (!device.hostResident()) {
      // The pipeline's items; a rule with linear algebra computes on the host (DeviceFor).
      std::vector<size_t> computed;
      std::vector<bool> onHost(plan.items.size(), false);
      for (size_t i = resumeFrom; i < plan.items.size(); ++i) {
        const MergePlan::Item &item = plan.items[i];
        if (item.copy || !share.mine[i])
          continue;
        ItemInputs in(item);
        if (kernels.kernel(item.rule, in.dtypes, item.outDType).hasMatrixPhase())
          onHost[i] = true;
        else
          computed.push_back(i);
      }
      if (!options.quiet && leader) {
        std::set<size_t> hostRules;
        for (size_t i = 0; i < plan.items.size(); ++i)
          if (onHost[i] && hostRules.insert(plan.items[i].rule).second)
            events().note("rule " + std::to_string(plan.items[i].rule + 1) +
                          " has linear algebra, which has no GPU kernels yet: its tensors are "
                          "computed on the CPU");
      }
      DevicePipeline pipe(device, pool, plan, computed, /*outputs=*/true);
      // The item whose output is on its way down while the next one computes, and its rule's
      // model-scope state after it (the next item's kernels have moved the scope on since).
      std::optional<size_t> pending;
      std::vector<int64_t> pendingScope;
      auto finishPending = [&] {
        if (!pending)
          return;
        size_t k = *pending, i = pipe.item(k);
        pending.reset();
        const MergePlan::Item &item = plan.items[i];
        AsyncWriter::Job job{i, nullptr, specs[i].nbytes()};
        const auto *host = static_cast<const uint8_t *>(pipe.downloaded(k));
        job.buffer = async.recycle(job.nbytes);
        // Out of the page-locked memory chunk by chunk over the pool, each chunk checked as the
        // CPU checks it after its kernel, while it is in cache; the inputs the check looks at
        // (only where the output is not finite) are still mapped.
        ItemInputs in(item);
        NonFiniteCheck check(item.outDType, job.buffer.data(), in);
        int64_t n = item.base->numel();
        size_t elementBytes = dtypeSize(item.outDType);
        pool.parallelFor(Device::chunkCount(n), [&](size_t c) {
          int64_t begin = static_cast<int64_t>(c) * Device::kChunk;
          int64_t end = std::min(n, begin + Device::kChunk);
          std::memcpy(job.buffer.data() + begin * elementBytes, host + begin * elementBytes,
                      static_cast<size_t>(end - begin) * elementBytes);
          (*check.hook())(begin, end);
        });
        job.nonFinite = reportNonFinite(item, check);
        job.scope = std::move(pendingScope);
        job.data = job.buffer.data();
        releaseInputs(item);
        submit(item, std::move(job));
      };
      if (pipe.size())
        pipe.stage(0);
      size_t k = 0;
      for (size_t i = resumeFrom; i < plan.items.size(); ++i) {
        MergePlan::Item &item = plan.items[i];
        if (!share.mine[i])
          continue;
        if (i + 1 < plan.items.size() && (plan.items[i + 1].copy || onHost[i + 1]) &&
            share.mine[i + 1])
          prefetchInputs(plan.items[i + 1]);
        if (item.copy) {
          // Written in plan order: the computed tensor before it first.
          finishPending();
          checkInputs(item);
          AsyncWriter::Job job{i, item.inputs[0]->data, specs[i].nbytes()};
          job.release = item.inputs;
          submit(item, std::move(job));
          continue;
        }
        if (onHost[i]) {
          finishPending();
          checkInputs(item);
          ItemInputs in(item);
          computeOnHost(i, devices(kernels.kernel(item.rule, in.dtypes, item.outDType)));
          ++hostTensors;
          continue;
        }
        std::vector<const void *> inputs = pipe.upload(k);
        if (k + 1 < pipe.size())
          pipe.stage(k + 1);
        if (k + 2 < pipe.size())
          prefetchInputs(plan.items[pipe.item(k + 2)]);
        ItemInputs in(item);
        CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
        auto scope = scopes.find(item.rule);
        restoreQuotas(i);
        runRule(device, compiled, inputs, pipe.output(k), *item.base,
                static_cast<float>(item.layer), static_cast<float>(plan.numLayers),
                scope == scopes.end() ? nullptr : &scope->second, false, nullptr);
        std::vector<int64_t> state = scopeState(item);
        pipe.computed(k);
        pipe.download(k);
        finishPending();
        pending = k++;
        pendingScope = std::move(state);
        ++computedTensors;
      }
      finishPending();
    } else {
      for (size_t i = resumeFrom; i < plan.items.size(); ++i) {
        MergePlan::Item &item = plan.items[i];
        if (!share.mine[i])
          continue;
        if (i + 1 < plan.items.size() && share.mine[i + 1])
          prefetchInputs(plan.items[i + 1]);
        checkInputs(item);
        if (item.copy) {
          // Straight from the input's mapping to the file: no kernel, no copy in memory.
          AsyncWriter::Job job{i, item.inputs[0]->data, specs[i].nbytes()};
          job.release = item.inputs;
          submit(item, std::move(job));
          continue;
        }
        computeOnHost(i, device);
      }
    }
    async.close();
  }
  // Every tensor was read: one more look catches a file changed during the last ones.
  for (const auto &checkpoint : plan.checkpoints)
    if (checkpoint)
      for (const auto &file : checkpoint->files())
        file->checkUnchanged();
  for (const auto &adapter : plan.adapters)
    if (adapter)
      adapter->weights().checkUnchanged();
  testFailRank(comm);
  if (journal)
    journal->close();
  writer.finish(/*index=*/!comm);
  // Several processes: every shard is written before rank 0 finishes the output.
  uint64_t allBytesRead = stats.bytesRead;
  if (comm) {
    comm->check();
    int64_t read = static_cast<int64_t>(stats.bytesRead);
    comm->sum(&read, 1);
    allBytesRead = static_cast<uint64_t>(read);
    if (!leader) {
      comm->check(); // rank 0's commit
      stats.seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      stats.bytesWritten = outputBytes;
      stats.tensors = plan.items.size();
      if (options.verbose)
        if (std::string line = device.summary(computedTensors - hostTensors); !line.empty())
          events().info(rankPrefix(comm) + line);
      return stats;
    }
    writer.writeIndex();
  }
  const Checkpoint &base = *plan.checkpoints[plan.outputModel];
  for (const std::string &name : kSideFiles) {
    if (name == "config.json" && !plan.layers.empty()) {
      writeStackedConfig(plan, outDir.tempPath());
      continue;
    }
    std::string warning;
    if (copySideFile(base.directory(), outDir.tempPath(), name, warning) ==
        SideFileResult::Skipped)
      events().warning(warning);
  }
  writeManifest(plan, options, outDir.tempPath(),
                options.resume && !previous.header.is_null() ? std::optional(resumeFrom)
                                                              : std::nullopt);
  writeModelCard(plan, options, outDir.tempPath());
  // The journal is not part of the output. Killed between here and the rename, a run leaves
  // no journal: --resume then starts over.
  testDelay();
  if (journal && ::unlink(journalPath.c_str()) != 0)
    throw RuntimeError(journalPath + ": cannot remove the journal: " + detail::errnoText(errno));
  outDir.commit();
  if (comm)
    comm->check(); // the other ranks wait for the commit
  stats.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.bytesWritten = outputBytes;
  stats.tensors = plan.items.size();
  // Several processes: rank 0 reports the bytes every rank read.
  stats.bytesRead = allBytesRead;
  progress.finish(stats.seconds, stats.bytesRead, stats.bytesWritten,
                  comm ? static_cast<size_t>(comm->size()) : 1, plan.items.size());
  if (options.verbose)
    if (std::string line = device.summary(computedTensors - hostTensors); !line.empty())
      events().info(rankPrefix(comm) + line);
  return stats;
}

std::string unmatchedPatternWarning(const std::string &pattern, const std::string &outputModel) {
  return "pattern \"" + pattern + "\" matches no tensor of model '" + outputModel + "'";
}

std::string nonFiniteWarning(const RunStats &stats) {
  if (stats.nonFinite.empty())
    return "";
  constexpr size_t kShown = 5;
  size_t n = stats.nonFinite.size();
  std::string text = std::to_string(n) + (n == 1 ? " tensor holds" : " tensors hold") +
                     " NaN or inf values where the inputs are finite: ";
  for (size_t i = 0; i < std::min(n, kShown); ++i)
    text += (i ? ", " : "") + describe(stats.nonFinite[i].first, stats.nonFinite[i].second);
  if (n > kShown)
    text += " and " + std::to_string(n - kShown) + " more";
  return text + " (--strict makes this an error)";
}

void analyzeTensors(MergePlan &plan, KernelSource &kernels, const RunOptions &options,
                    const std::function<void(size_t, const std::vector<double> &)> &onTensor) {
  ThreadPool pool(options.threads);
  std::unique_ptr<Device> device = createDevice(options, pool);
  std::vector<size_t> computed;
  for (size_t i = 0; i < plan.items.size(); ++i)
    if (!plan.items[i].copy)
      computed.push_back(i);
  std::vector<double> scalars;
  size_t done = 0;
  uint64_t bytes = 0;
  LoraDeltas deltas;
  // The same streaming as a model-scope pass (prefetch, release, the GPU's staging, LoRA
  // deltas): one read of every input, no output.
  streamItems(plan, *device, pool, deltas, computed,
              [&](size_t i, const std::vector<const void *> &inputs) {
    const MergePlan::Item &item = plan.items[i];
    ItemInputs in(item);
    CompiledRule compiled = kernels.kernel(item.rule, in.dtypes, item.outDType);
    if (compiled.hasModelScope())
      throw RuntimeError("internal: an analysis run of a rule with model-scope phases");
    runRule(*device, compiled, inputs, nullptr, *item.base, static_cast<float>(item.layer),
            static_cast<float>(plan.numLayers), nullptr, /*analysis=*/false, nullptr, &scalars);
    onTensor(i, scalars);
    for (const TensorInfo *t : item.inputs)
      bytes += t->nbytes;
    if (options.onProgress)
      options.onProgress(++done, computed.size(), bytes);
  });
}

} // namespace mergec::rt
