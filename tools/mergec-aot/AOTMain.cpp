//===- AOTMain.cpp - main() of merge executables --------------------------===//
// `mergec compile RECIPE --emit=exe` links this with the recipe's kernels (an object from
// MergeObject.cpp) and the runtime: a program that merges without LLVM, MLIR, ANTLR, the
// standard library or the recipe file. Everything it knows about the recipe is the object's
// `mergec_program` JSON and its kernel table (KernelABI.h).
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Executor.h"
#include "mergec/Runtime/Interrupts.h"
#include "mergec/Runtime/KernelABI.h"
#include "mergec/Runtime/Number.h"
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/OutputDirectory.h"
#include "mergec/Runtime/RuleDescription.h"
#include "mergec/Runtime/RunOptionsParser.h"
#include "mergec/Runtime/Size.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <unistd.h>

using namespace mergec;
using nlohmann::json;

namespace {

std::string programName = "merge";

/// The shortest text that reads back as `value`.
std::string shortest(double value) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(value);
}

/// Whether compiling depended on param `name`'s value (it is built into the kernels).
bool isFixed(const json &program, const std::string &name) {
  for (const json &f : program.at("fixed_params"))
    if (f.get<std::string>() == name)
      return true;
  return false;
}

/// Whether the program was compiled with --device cuda (its kernels carry PTX, but for rules
/// with linear algebra, which run on the host under a GPU too: "host").
bool hasDeviceKernels(const json &program) {
  for (const json &k : program.at("kernels"))
    if (!k.contains("ptx") && !k.value("host", false))
      return false;
  return !program.at("kernels").empty();
}

/// The kernels of the object, by rule and signature, resolved through the kernel table.
class TableKernelSource : public rt::KernelSource {
public:
  /// `params`: every param's value for this run (compiled in, or given with --set).
  TableKernelSource(const json &program, std::vector<std::pair<std::string, double>> params)
      : params_(std::move(params)) {
    std::map<std::string, rt::PackedKernel> table;
    for (uint64_t i = 0; i < mergec_kernel_count; ++i)
      table[mergec_kernel_table[i].symbol] = mergec_kernel_table[i].fn;
    for (const json &rule : program.at("rules"))
      inputs_.push_back(rule.at("inputs").get<std::vector<std::string>>());
    for (const json &k : program.at("kernels")) {
      rt::KernelSignature signature;
      for (const json &d : k.at("inputs"))
        signature.inputs.push_back(*rt::parseDType(d.get<std::string>()));
      signature.output = *rt::parseDType(k.at("output").get<std::string>());
      rt::CompiledRule rule = rt::ruleFromDescription(k.at("description"), "embedded program");
      rule.paramValues = rt::bindParams(rule.params, params_);
      // Built with --device cuda: the PTX of the rule's phases, for a run with --device cuda.
      if (auto ptx = k.find("ptx"); ptx != k.end())
        rule.deviceImage = std::make_shared<const std::string>(ptx->get<std::string>());
      for (auto &phase : rule.phases) {
        auto fn = table.find(phase.symbol);
        if (fn == table.end())
          throw rt::RuntimeError("this executable lacks the kernel " + phase.symbol);
        phase.fn = fn->second;
      }
      rules_[{k.at("rule").get<size_t>(), signature}] = std::move(rule);
    }
  }

  std::vector<std::string> ruleInputs(size_t rule) override { return inputs_.at(rule); }

  rt::CompiledRule kernel(size_t rule, const std::vector<rt::DType> &inputs,
                          rt::DType output) override {
    auto it = rules_.find({rule, {inputs, output}});
    if (it == rules_.end())
      throw rt::RuntimeError("rule " + std::to_string(rule + 1) + " was not compiled for " +
                             rt::KernelSignature{inputs, output}.text());
    return it->second;
  }

  bool hasKernel(size_t rule, const std::vector<rt::DType> &inputs, rt::DType output) override {
    return rules_.count({rule, {inputs, output}}) != 0;
  }

  std::string availableKernels(size_t rule) override {
    std::string list;
    for (auto &[key, _] : rules_)
      if (key.first == rule)
        list += (list.empty() ? "" : "; ") + key.second.text();
    return list;
  }

private:
  std::vector<std::pair<std::string, double>> params_;
  std::vector<std::vector<std::string>> inputs_;
  std::map<std::pair<size_t, rt::KernelSignature>, rt::CompiledRule> rules_;
};

void usage(std::ostream &os, const json &program) {
  os << "usage: " << programName
     << " -o OUT [--model NAME=PATH]... [--set NAME=VALUE]... [--dtype f32|bf16|f16]\n"
        "       [--threads N] [--shard-size SIZE] [--max-memory SIZE] [--force] [--resume] [--strict]\n"
        "       [--quiet] [--verbose] [--json] [--device cpu|cuda] [--max-gpu-memory SIZE]\n"
        "       [--no-model-card] [--emit-lora RANK [--sv-epsilon E] [--lora-targets GLOB,...]]\n\n"
     << "A merge compiled ahead of time by mergec " << program.at("mergec_version").get<std::string>()
     << " from " << program.at("recipe").at("path").get<std::string>() << " (sha256 "
     << program.at("recipe").at("sha256").get<std::string>().substr(0, 12) << ").\n\nmodels:\n";
  for (const json &m : program.at("models"))
    os << "  " << m.at("name").get<std::string>() << " = " << m.at("path").get<std::string>()
       << (m.at("name") == program.at("output_model") ? "   (the output's tensors and files)" : "")
       << (m.value("kind", "") == "lora"
               ? "   (a LoRA adapter on " + m.at("on").get<std::string>() + ")"
               : std::string())
       << "\n";
  os << "params (--set NAME=VALUE; those marked fixed were needed while compiling, so --set\n"
        "must repeat their value):\n";
  if (program.at("params").empty())
    os << "  (none)\n";
  for (const json &p : program.at("params"))
    os << "  " << p.at(0).get<std::string>() << " = " << shortest(p.at(1).get<double>())
       << (isFixed(program, p.at(0).get<std::string>()) ? "   (fixed)" : "") << "\n";
  os << "kernels:\n";
  std::map<size_t, std::string> perRule;
  for (const json &k : program.at("kernels")) {
    std::string sig;
    for (const json &d : k.at("inputs"))
      sig += (sig.empty() ? "" : ",") + d.get<std::string>();
    std::string &line = perRule[k.at("rule").get<size_t>()];
    line += (line.empty() ? "" : "; ") + sig + " -> " + k.at("output").get<std::string>();
  }
  for (auto &[rule, line] : perRule)
    os << "  rule " << rule + 1 << ": " << line << "\n";
}

int usageError(const std::string &message) {
  rt::events().error(message + " (see --help)");
  return 2;
}

int run(int argc, char **argv) {
  json program = json::parse(mergec_program);
  rt::RunOptions options;
  std::map<std::string, std::string> modelPaths;
  for (const json &m : program.at("models"))
    modelPaths[m.at("name").get<std::string>()] = m.at("path").get<std::string>();
  std::map<std::string, double> params;
  for (const json &p : program.at("params"))
    params[p.at(0).get<std::string>()] = p.at(1).get<double>();

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool inlineValue = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      inlineValue = true;
    }
    auto next = [&]() -> std::optional<std::string> {
      if (inlineValue)
        return value;
      if (i + 1 >= argc)
        return std::nullopt;
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      usage(std::cout, program);
      return 0;
    } else if (arg == "--version") {
      std::cout << programName << " (mergec " << program.at("mergec_version").get<std::string>()
                << ", ahead of time)\n";
      return 0;
    } else if (arg == "-o" || arg == "--output") {
      auto v = next();
      if (!v || v->empty())
        return usageError(arg + " needs a path");
      options.output = *v;
    } else if (arg == "--model" || arg == "--set") {
      auto v = next();
      size_t eq = v ? v->find('=') : std::string::npos;
      if (!v || eq == std::string::npos || eq == 0)
        return usageError(arg + " needs NAME=VALUE");
      std::string name = v->substr(0, eq), text = v->substr(eq + 1);
      if (arg == "--model") {
        if (!modelPaths.count(name))
          return usageError("--model " + name + ": the recipe has no model '" + name + "'");
        modelPaths[name] = text;
      } else {
        auto it = params.find(name);
        if (it == params.end())
          return usageError("--set " + name + ": the recipe has no param '" + name + "'");
        // Read as `mergec run --set` and a recipe read it, so the same text gives the same value.
        auto number = rt::parseNumber(text);
        if (!number || !std::isfinite(*number))
          return usageError("--set " + name + "=" + text + ": not a number");
        if (*number != it->second && isFixed(program, name))
          return usageError("--set " + name + "=" + text + ": param '" + name +
                            "' was compiled into this executable as " + shortest(it->second) +
                            " (compiling depended on its value); compile again with `mergec "
                            "compile RECIPE --emit=exe --set " + name + "=" + text + "`");
        it->second = *number;
      }
    } else if (rt::RunOptionArity arity = rt::runOptionArity(arg);
               arity != rt::RunOptionArity::NotARunOption) {
      // The options merge executables share with `mergec run` (one parser, one set of messages).
      std::optional<std::string> optionValue =
          arity == rt::RunOptionArity::Value ? next() : inlineValue ? std::optional(value)
                                                                     : std::nullopt;
      if (std::string error = rt::applyRunOption(arg, optionValue, options); !error.empty())
        return usageError(error);
      if (arg == "--device" && options.device == rt::DeviceKind::CUDA && !hasDeviceKernels(program))
        return usageError("--device cuda: this executable has no GPU kernels (compile it with "
                          "`mergec compile RECIPE --emit=exe --device cuda`)");
    } else {
      return usageError("unexpected argument '" + arg + "'");
    }
  }
  if (options.output.empty())
    return usageError("-o OUT is required");
  if (std::string error = rt::checkRunOptions(options); !error.empty())
    return usageError(error);
  rt::events().configure(programName, options.json);

  const json &recipe = program.at("recipe");
  options.provenance = {program.at("mergec_version").get<std::string>(),
                        recipe.at("path").get<std::string>(), recipe.at("text").get<std::string>(),
                        recipe.at("sha256").get<std::string>(), {}};
  for (const json &p : program.at("params")) // final values, in the recipe's order
    options.provenance.params.emplace_back(p.at(0).get<std::string>(),
                                           params.at(p.at(0).get<std::string>()));
  options.provenance.build = "aot";
  if (auto methods = program.find("methods"); methods != program.end())
    options.provenance.methods = methods->get<std::vector<std::string>>();
  char self[PATH_MAX];
  if (::realpath("/proc/self/exe", self))
    options.provenance.executable = self;
  if (!options.maxMemory)
    options.maxMemory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) / 2;

  std::vector<rt::ModelSpec> models;
  std::vector<rt::ProtectedInput> inputs;
  for (const json &m : program.at("models")) {
    std::string name = m.at("name").get<std::string>();
    bool lora = m.value("kind", "") == "lora";
    models.push_back({name, modelPaths[name],
                      lora ? rt::ModelSpec::Kind::Lora : rt::ModelSpec::Kind::Model,
                      lora ? m.at("on").get<std::string>() : std::string()});
    inputs.push_back({(lora ? "lora '" : "model '") + name + "'", modelPaths[name]});
  }
  inputs.push_back({"this executable", options.provenance.executable});
  std::vector<rt::RuleSpec> rules;
  for (const json &r : program.at("rules")) {
    rt::RuleSpec spec;
    spec.patterns = r.at("patterns").get<std::vector<std::string>>();
    if (r.contains("copies") && !r.at("copies").is_null())
      spec.passthroughModel = r.at("copies").get<std::string>();
    spec.readsNumLayers = r.value("reads_num_layers", false);
    rules.push_back(std::move(spec));
  }

  // Merge executables link no MPI (they go to GPU machines without it): several processes of
  // one would each merge the whole output on their own. `mergec run` shares a merge among them.
  if (rt::mpiWorldSizeFromEnvironment() != 1)
    throw rt::RuntimeError("a merge executable does not run under mpirun (it has no MPI); use "
                           "`mpirun ... mergec run RECIPE -o OUT` to share a merge among "
                           "processes, or run it as a single process");
  rt::checkDevice(options); // no GPU: stop before the output directory exists
  rt::OutputDirectory out(options.output, options.force, inputs, options.resume);
  TableKernelSource kernels(program, options.provenance.params);
  // Empty without a `layers` declaration: the output has the output model's layers.
  std::vector<rt::LayerSlice> layers;
  if (auto l = program.find("layers"); l != program.end())
    layers = rt::layersFromJson(*l);
  rt::MergePlan plan = rt::planMerge(models, program.at("output_model").get<std::string>(), rules,
                                     kernels, options, layers);
  out.protect(rt::planInputs(plan));
  for (const std::string &warning : plan.warnings)
    rt::events().warning(warning);
  uint64_t memory = rt::checkMemory(plan, kernels, options);
  // No recipe to point into: the warning `mergec run` gives at the pattern, without a position.
  for (size_t r = 0; r < rules.size(); ++r)
    for (size_t p = 0; p < rules[r].patterns.size(); ++p)
      if (plan.patternMatches[r][p] == 0)
        rt::events().warning(rt::unmatchedPatternWarning(
            rules[r].patterns[p], program.at("output_model").get<std::string>()));
  rt::reportPlan(plan, rules, options, memory);
  rt::RunStats stats = rt::executeMerge(plan, kernels, options, out);
  rt::reportDone(stats, options);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  rt::installInterruptCleanup();
  if (argc > 0) {
    const char *slash = std::strrchr(argv[0], '/');
    programName = slash ? slash + 1 : argv[0];
  }
  // --json anywhere: even a usage error is an event; the parsed options then decide.
  rt::events().configure(programName, rt::jsonRequested(argc, argv));
  try {
    return run(argc, argv);
  } catch (const rt::RuntimeError &e) {
    rt::events().error(e.what(), e.file(), e.tensor());
    return 1;
  } catch (const json::exception &e) {
    rt::events().error(std::string("the embedded program is damaged: ") + e.what());
    return 1;
  } catch (const std::bad_alloc &) {
    rt::events().error("out of memory");
    return 1;
  }
}
