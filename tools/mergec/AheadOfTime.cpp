//===- AheadOfTime.cpp - mergec compile --emit=obj|exe --------------------===//
#include "AheadOfTime.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace mergec {

namespace fs = std::filesystem;

std::vector<rt::ModelSpec> modelSpecs(const sema::Program &program) {
  std::vector<rt::ModelSpec> models;
  for (auto &m : program.models)
    models.push_back({m.name, m.path,
                      m.lora                  ? rt::ModelSpec::Kind::Lora
                      : m.bundleMember >= 0   ? rt::ModelSpec::Kind::BundleMember
                                              : rt::ModelSpec::Kind::Model,
                      m.on, m.bundleMember});
  return models;
}

std::vector<rt::RuleSpec> ruleSpecs(const sema::Program &program, bool withCopies) {
  std::vector<rt::RuleSpec> rules;
  for (auto &rule : program.rules) {
    rt::RuleSpec spec;
    for (auto &p : rule.patterns)
      spec.patterns.push_back(p.glob);
    if (withCopies && rule.result->op == sema::Node::Op::Input)
      spec.passthroughModel = rule.result->model;
    spec.readsNumLayers = rule.readsNumLayers;
    rules.push_back(std::move(spec));
  }
  return rules;
}

std::vector<std::vector<rt::KernelSignature>>
aheadOfTimeSignatures(const sema::Program &program, KernelJIT &jit, bool verbose) {
  const rt::DType computable[] = {rt::DType::BF16, rt::DType::F16, rt::DType::F32};
  std::vector<std::set<rt::KernelSignature>> sets(program.rules.size());
  for (size_t r = 0; r < program.rules.size(); ++r)
    for (rt::DType d : computable)
      sets[r].insert({std::vector<rt::DType>(jit.ruleInputs(r).size(), d), d});

  // The models' own signatures, read from their headers as `mergec run` would plan them (no
  // copies: every tensor's signature is collected).
  try {
    rt::RunOptions options;
    rt::MergePlan plan =
        rt::planMerge(modelSpecs(program), program.outputModel,
                      ruleSpecs(program, /*withCopies=*/false), jit, options, program.layers);
    for (const auto &item : plan.items) {
      std::vector<rt::DType> inputs;
      for (const rt::TensorInfo *t : item.inputs)
        inputs.push_back(t->dtype);
      if (!std::all_of(inputs.begin(), inputs.end(), rt::isComputeDType))
        continue;
      for (rt::DType d : computable)
        sets[item.rule].insert({inputs, d});
    }
  } catch (const rt::RuntimeError &e) {
    if (verbose)
      std::cerr << "aot: the models cannot be read now (" << e.what()
                << "); compiling the bf16, f16 and f32 signatures only\n";
  }
  std::vector<std::vector<rt::KernelSignature>> result;
  for (auto &set : sets)
    result.emplace_back(set.begin(), set.end());
  return result;
}

nlohmann::json aheadOfTimeProgram(const sema::Program &program, KernelJIT &jit,
                                  const rt::RunOptions::Provenance &provenance) {
  // A bundle in or out needs the runtime's bundle handling, which executables do not carry.
  if (program.bundle)
    throw rt::RuntimeError("compress(...) writes a bundle with `mergec run`; merge executables "
                           "(--emit=obj|exe) write models");
  nlohmann::json models = nlohmann::json::array();
  for (auto &m : program.models) {
    if (m.bundleMember >= 0)
      throw rt::RuntimeError("bundle member '" + m.name + "' is read by `mergec run`; merge "
                             "executables (--emit=obj|exe) read models and loras");
    models.push_back({{"name", m.name},
                      {"path", fs::absolute(m.path).lexically_normal().string()}});
    if (m.lora) { // the executable reads the adapter the same way (MergecAOTMain)
      models.back()["kind"] = "lora";
      models.back()["on"] = m.on;
    }
  }
  nlohmann::json rules = nlohmann::json::array();
  for (size_t r = 0; r < program.rules.size(); ++r) {
    const sema::Rule &rule = program.rules[r];
    std::vector<std::string> patterns;
    for (auto &p : rule.patterns)
      patterns.push_back(p.glob);
    nlohmann::json copies = nullptr;
    if (rule.result->op == sema::Node::Op::Input)
      copies = rule.result->model;
    rules.push_back({{"patterns", patterns},
                     {"inputs", jit.ruleInputs(r)},
                     {"copies", copies},
                     {"reads_num_layers", rule.readsNumLayers}});
  }
  return {{"mergec_version", provenance.version},
          {"recipe",
           {{"path", fs::absolute(provenance.recipePath).lexically_normal().string()},
            {"sha256", provenance.recipeSha256},
            {"text", provenance.recipeText}}},
          {"models", models},
          {"output_model", program.outputModel},
          {"params", provenance.params},
          {"methods", provenance.methods},
          {"fixed_params", program.fixedParams},
          {"layers", rt::layersToJson(program.layers)},
          {"rules", rules}};
}

namespace {

/// The directory holding libMergecAOTMain.a and libMergecRuntime.a: ../lib beside an installed
/// mergec, else the build tree's.
std::string runtimeLibraryDirectory() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "lib";
    if (fs::exists(installed / "libMergecAOTMain.a"))
      return installed.string();
  }
  return MERGEC_AOT_LIB_DIR;
}

std::string readAll(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

} // namespace

std::string linkExecutable(const std::string &object, bool verbose) {
  std::string libs = runtimeLibraryDirectory();
  for (const char *lib : {"libMergecAOTMain.a", "libMergecRuntime.a"})
    if (!fs::exists(fs::path(libs) / lib))
      throw rt::RuntimeError("--emit=exe: " + (fs::path(libs) / lib).string() +
                             " is missing (build mergec's MergecAOTMain target)");
  char pattern[] = "/tmp/mergec-exe-XXXXXX";
  if (!::mkdtemp(pattern))
    throw rt::RuntimeError("--emit=exe: cannot create a temporary directory");
  fs::path dir = pattern;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  {
    std::ofstream out(dir / "kernels.o", std::ios::binary);
    out << object;
    if (!out.flush())
      throw rt::RuntimeError("--emit=exe: cannot write " + (dir / "kernels.o").string());
  }
  const char *env = std::getenv("MERGEC_LINKER");
  std::string linker = env && *env ? env : MERGEC_DEFAULT_LINKER;
  // libstdc++ and libgcc are linked statically, so the program needs only the C library at run
  // time, whatever C++ runtime the machine it runs on has.
  std::vector<std::string> args = {linker,
                                   "-o",
                                   (dir / "merge").string(),
                                   (dir / "kernels.o").string(),
                                   libs + "/libMergecAOTMain.a",
                                   libs + "/libMergecRuntime.a"};
  // The runtime's linear algebra loads OpenBLAS and LAPACKE itself when a kernel first calls it
  // (runtime/lib/BlasLibrary.h), so nothing is linked for it: only an executable whose kernels
  // use matrices needs them where it runs.
  for (const char *flag : {"-static-libstdc++", "-static-libgcc", "-pthread", "-lm",
                           // The kernel table in the dynamic symbol table: the mock CUDA driver
                           // (tests/cuda/mock) finds the phases' CPU twins there with dlsym
                           // (two symbols, nothing else).
                           "-Wl,--export-dynamic-symbol=mergec_kernel_table",
                           "-Wl,--export-dynamic-symbol=mergec_kernel_count",
                           // With --gpu-emulation, the host builds of the GPU kernels the mock
                           // runs instead (GpuKernelEmulation.h); absent otherwise.
                           "-Wl,--export-dynamic-symbol=mergec_gpu_emulation_table",
                           "-Wl,--export-dynamic-symbol=mergec_gpu_emulation_count",
                           "-Wl,--export-dynamic-symbol=mergec_gpu_emulation_resolve"})
    args.push_back(flag);
  // The flags mergec itself was linked with (a sanitizer build's libraries need its runtime).
  std::istringstream extra(MERGEC_AOT_LINK_FLAGS);
  for (std::string flag; extra >> flag;)
    args.push_back(flag);
  if (verbose) {
    std::cerr << "aot: linking:";
    for (auto &a : args)
      std::cerr << " " << a;
    std::cerr << "\n";
  }
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (int err = ::posix_spawnp(&pid, linker.c_str(), nullptr, nullptr, argv.data(), environ))
    throw rt::RuntimeError("--emit=exe: cannot run the linker '" + linker +
                           "': " + std::strerror(err) + " (set MERGEC_LINKER)");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw rt::RuntimeError("--emit=exe: the linker '" + linker + "' failed (exit status " +
                           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  return readAll(dir / "merge");
}

} // namespace mergec
