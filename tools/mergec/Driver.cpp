//===- Driver.cpp - mergec's commands as a library -----------------------===//
#include "Driver.h"
#include "AheadOfTime.h"

#include "mergec/Frontend/Limits.h"
#include "mergec/Frontend/MLIRGen.h"
#include "mergec/Frontend/Parser.h"
#include "mergec/Frontend/Sema.h"
#include "mergec/Import/MergekitConfig.h"
#include "mergec/JIT/KernelJIT.h"
#include "mergec/Target/CPU/MergeObject.h"
#include "mergec/MergeInitAll.h"
#include "mergec/Pipelines/Pipelines.h"
#include "mergec/Runtime/AtomicFile.h"
#include "mergec/Runtime/Device.h"
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Executor.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/stat.h>
#include <functional>
#include <optional>
#include <set>
#include <pthread.h>
#include <unistd.h>

using namespace mergec;

std::filesystem::path mergec::stdlibDirectory(const CommandLine &cl) {
  if (!cl.stdlib.empty())
    return cl.stdlib;
  if (const char *env = std::getenv("MERGEC_STDLIB"))
    return env;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "share" / "mergec" / "stdlib";
    if (std::filesystem::is_directory(installed))
      return installed;
  }
  return MERGEC_STDLIB_DIR;
}

namespace {

/// A whole file's bytes, or nullopt with `why` set. Only a regular file of at most
/// kMaxRecipeBytes is read: a FIFO or a terminal would block the open or the read forever, a
/// device may never end. It is checked before the open (stat) and on what was opened (fstat;
/// O_NONBLOCK keeps a FIFO swapped in between from blocking the open).
std::optional<std::string> readText(const std::filesystem::path &path, std::string &why) {
  auto check = [&](const struct stat &st) {
    if (!S_ISREG(st.st_mode))
      why = "not a regular file";
    else if (static_cast<uint64_t>(st.st_size) > limits::kMaxRecipeBytes)
      why = "file too large (" + std::to_string(st.st_size) + " bytes, limit " +
            std::to_string(limits::kMaxRecipeBytes) + ")";
    return why.empty();
  };
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    why = std::generic_category().message(errno);
    return std::nullopt;
  }
  if (!check(st))
    return std::nullopt;
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    why = std::generic_category().message(errno);
    return std::nullopt;
  }
  std::string text;
  if (::fstat(fd, &st) == 0 && check(st)) {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        why = std::generic_category().message(errno);
        break;
      }
      if (n == 0)
        break;
      text.append(buf, static_cast<size_t>(n));
      if (text.size() > limits::kMaxRecipeBytes) { // grew since the fstat
        why = "file too large (limit " + std::to_string(limits::kMaxRecipeBytes) + " bytes)";
        break;
      }
    }
  } else if (why.empty()) {
    why = std::generic_category().message(errno);
  }
  ::close(fd);
  if (!why.empty())
    return std::nullopt;
  return text;
}

/// Parses every stdlib/*.merge (in name order), each its own source for diagnostics.
bool loadStdlib(const CommandLine &cl, DiagnosticEngine &diags,
                std::vector<std::unique_ptr<ast::Recipe>> &out) {
  std::filesystem::path dir = stdlibDirectory(cl);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw rt::RuntimeError("standard library not found at '" + dir.string() +
                           "' (set MERGEC_STDLIB)");
  std::vector<std::filesystem::path> files;
  for (auto &entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".merge")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (auto &path : files) {
    std::string why;
    auto text = readText(path, why);
    if (!text)
      throw rt::RuntimeError("cannot read library file '" + path.string() + "': " + why,
                             path.string(), "");
    int file = diags.addFile(path.string(), *text);
    auto library = parseRecipe(diags, file);
    if (!library)
      return false;
    out.push_back(std::move(library));
  }
  return true;
}

/// `cl.recipe` (a mergekit configuration, already read into `diags` as file 0) translated to
/// recipe text; nullopt after an error. Its out_dtype (or dtype) is the output dtype unless
/// --dtype says otherwise.
std::optional<import::ImportResult> importConfig(const CommandLine &cl, DiagnosticEngine &diags) {
  import::ImportOptions options;
  options.models = cl.overrides.models;
  // The stdlib's def names, which a model name must not shadow (its methods are what the
  // translation calls).
  std::vector<std::unique_ptr<ast::Recipe>> libraries;
  if (!loadStdlib(cl, diags, libraries))
    return std::nullopt;
  for (const auto &library : libraries)
    for (const ast::DefDecl &def : library->defs)
      options.libraryNames.insert(def.name);
  return import::importMergekitConfig(cl.recipe, 0, options, diags);
}

} // namespace

int mergec::runImport(const CommandLine &cl) {
  std::string why;
  auto text = readText(cl.recipe, why);
  if (!text) {
    rt::events().error("cannot read configuration '" + cl.recipe + "': " + why, cl.recipe);
    return 1;
  }
  DiagnosticEngine diags(cl.recipe, *text, std::cerr);
  auto imported = importConfig(cl, diags);
  if (!imported)
    return 1;
  if (cl.outputFile.empty() || cl.outputFile == "-") {
    std::cout << imported->recipe;
    return 0;
  }
  rt::writeFileAtomically(cl.outputFile, imported->recipe, {{"the configuration", cl.recipe}});
  return 0;
}

std::optional<int> mergec::compile(const CommandLine &cl, Compilation &c, Emit stop) {
  std::ostream &diagnostics = cl.diagnostics ? *cl.diagnostics : std::cerr;
  if (cl.recipeText) {
    c.source = *cl.recipeText;
  } else {
    std::string why;
    auto text = readText(cl.recipe, why);
    if (!text)
      throw rt::RuntimeError("cannot read recipe '" + cl.recipe + "': " + why, cl.recipe, "");
    c.source = std::move(*text);
  }
  c.diags = std::make_unique<DiagnosticEngine>(cl.recipe, c.source, diagnostics);
  sema::Overrides overrides = cl.overrides;
  if (!cl.recipeText && import::isMergekitConfigPath(cl.recipe)) {
    // A mergekit configuration: its translation is the recipe (file 0 stays the YAML, so the
    // translation's errors point into it; the recipe's own errors name CONFIG.merge, the text
    // `mergec import CONFIG` prints).
    auto imported = importConfig(cl, *c.diags);
    if (!imported)
      return 1;
    c.source = imported->recipe;
    if (imported->dtype)
      c.importedDType = *imported->dtype == "f32"  ? rt::DType::F32
                        : *imported->dtype == "f16" ? rt::DType::F16
                                                    : rt::DType::BF16;
    c.diags = std::make_unique<DiagnosticEngine>(cl.recipe + ".merge", c.source, diagnostics);
    overrides.models.clear(); // --model named the configuration's models
  }
  c.recipe = parseRecipe(*c.diags);
  if (!c.recipe)
    return 1;
  if (stop == Emit::AST)
    return std::nullopt;
  if (!loadStdlib(cl, *c.diags, c.libraries))
    return 1;
  std::vector<const ast::Recipe *> libraries;
  for (auto &l : c.libraries)
    libraries.push_back(l.get());
  c.program = sema::analyze(*c.recipe, overrides, *c.diags, libraries);
  if (!c.program)
    return 1;

  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  c.context.appendDialectRegistry(registry);
  c.context.loadAllAvailableDialects();
  c.module = generateMLIR(c.context, *c.program);
  if (failed(mlir::verify(*c.module)))
    throw rt::RuntimeError("internal error: MLIRGen produced invalid IR");
  mlir::PassManager pm(&c.context);
  if (stop == Emit::Merge)
    buildCleanupPipeline(pm);
  else
    buildFusionPipeline(pm);
  if (failed(pm.run(*c.module)))
    throw rt::RuntimeError("internal error: the pass pipeline failed");
  return std::nullopt;
}

namespace {

std::string sha256Hex(const std::string &text) {
  auto digest = llvm::SHA256::hash(llvm::arrayRefFromStringRef(text));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

std::string printModule(mlir::ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}

/// What mergec reads and so must never write over or remove: the recipe, the standard
/// library and the models (as the recipe names them, --model applied). The files a model's
/// index names are added once the plan has opened them (planInputs).
std::vector<rt::ProtectedInput> protectedInputs(const CommandLine &cl, const Compilation &c) {
  std::vector<rt::ProtectedInput> inputs;
  if (c.program)
    for (auto &m : c.program->models)
      inputs.push_back({(m.lora ? "lora '" : "model '") + m.name + "'", m.path});
  if (!cl.recipeText)
    inputs.push_back({"the recipe", cl.recipe});
  inputs.push_back({"the standard library", stdlibDirectory(cl).string()});
  return inputs;
}

/// The standard library's public methods the recipe calls, in the order they first appear (in
/// its rules, then in its own defs), for the model card.
std::vector<std::string> methodsUsed(const Compilation &c) {
  std::set<std::string> library;
  for (const auto &lib : c.libraries)
    for (const ast::DefDecl &def : lib->defs)
      if (!def.name.empty() && def.name[0] != '_')
        library.insert(def.name);
  for (const ast::DefDecl &def : c.recipe->defs)
    library.erase(def.name); // the recipe's own def shadows the library's
  std::vector<std::string> used;
  std::function<void(const ast::Expr *)> walk = [&](const ast::Expr *e) {
    if (!e)
      return;
    if (auto *call = llvm::dyn_cast<ast::CallExpr>(e)) {
      if (library.count(call->callee) &&
          std::find(used.begin(), used.end(), call->callee) == used.end())
        used.push_back(call->callee);
      for (const ast::Argument &a : call->args)
        walk(a.value.get());
    } else if (auto *u = llvm::dyn_cast<ast::UnaryExpr>(e)) {
      walk(u->operand.get());
    } else if (auto *b = llvm::dyn_cast<ast::BinaryExpr>(e)) {
      walk(b->lhs.get());
      walk(b->rhs.get());
    } else if (auto *l = llvm::dyn_cast<ast::ListExpr>(e)) {
      for (const ast::ExprPtr &x : l->elements)
        walk(x.get());
    } else if (auto *let = llvm::dyn_cast<ast::LetExpr>(e)) {
      walk(let->value.get());
      walk(let->body.get());
    }
  };
  for (const ast::MergeDecl &m : c.recipe->merges)
    for (const ast::Rule &r : m.rules)
      walk(r.body.get());
  for (const ast::DefDecl &def : c.recipe->defs)
    walk(def.body.get());
  return used;
}

/// What a merge records about its recipe (mergec-manifest.json; embedded in executables).
rt::RunOptions::Provenance provenance(const CommandLine &cl, const Compilation &c) {
  rt::RunOptions::Provenance p{MERGEC_VERSION, cl.recipe, c.source, sha256Hex(c.source),
                               c.program->params};
  p.methods = methodsUsed(c);
  return p;
}

KernelJITOptions jitOptions(const CommandLine &cl, const Compilation &c) {
  KernelJITOptions options;
  options.verbose = cl.verbose;
  options.version = MERGEC_VERSION;
  if (c.program)
    options.params = c.program->params;
  if (!cl.noCache)
    options.cacheDir = cl.cacheDir.empty() ? KernelCache::defaultDirectory() : cl.cacheDir;
  options.device = cl.run.device;
  options.gpuArch = cl.gpuArch;
  return options;
}

/// `text` to -o FILE, else to `captured` when given, else to stdout.
int writeOutput(const CommandLine &cl, const Compilation &c, const std::string &text,
                std::string *captured) {
  if (captured && (cl.outputFile.empty() || cl.outputFile == "-")) {
    *captured = text;
    return 0;
  }
  if (cl.outputFile.empty() || cl.outputFile == "-") {
    std::cout << text;
    return 0;
  }
  rt::writeFileAtomically(cl.outputFile, text, protectedInputs(cl, c));
  return 0;
}

} // namespace

int mergec::runCompile(const CommandLine &cl, Compilation &c, std::string *captured) {
  if (auto status = compile(cl, c, cl.emit))
    return *status;
  // Refused before the (slow) later stages, not after them.
  if (!cl.outputFile.empty() && cl.outputFile != "-")
    rt::checkOutputAgainstInputs(cl.outputFile, protectedInputs(cl, c));
  if (cl.emit == Emit::AST)
    return writeOutput(cl, c, ast::dump(*c.recipe), captured);
  if (cl.emit == Emit::Merge || cl.emit == Emit::Fused)
    return writeOutput(cl, c, printModule(*c.module), captured);
  // compile's --device says what an executable carries, not where compiling happens: the
  // JIT itself makes host objects for --emit=obj|exe.
  KernelJITOptions compileOptions = jitOptions(cl, c);
  compileOptions.device = rt::DeviceKind::CPU;
  KernelJIT jit(*c.module, compileOptions);
  if (!cl.cpu.empty() && cl.emit != Emit::Obj && cl.emit != Emit::Exe) {
    rt::events().error("--cpu applies to --emit=obj and --emit=exe (the JIT compiles for the "
                       "CPU it runs on)");
    return 2;
  }
  if (cl.gpuEmulation && (!emitsFile(cl.emit) || cl.run.device != rt::DeviceKind::CUDA)) {
    rt::events().error("--gpu-emulation applies to --emit=obj and --emit=exe with --device cuda");
    return 2;
  }
  if (cl.emit == Emit::Obj || cl.emit == Emit::Exe) {
    if (cl.outputFile.empty() || cl.outputFile == "-") {
      rt::events().error(std::string("--emit=") + (cl.emit == Emit::Obj ? "obj" : "exe") +
                         " writes a binary file: give -o FILE");
      return 2;
    }
    auto signatures = aheadOfTimeSignatures(*c.program, jit, cl.verbose);
    std::string object =
        cpu::buildMergeObject(jit, signatures, aheadOfTimeProgram(*c.program, jit, provenance(cl, c)),
                              /*withDeviceKernels=*/cl.run.device == rt::DeviceKind::CUDA, cl.cpu,
                              cl.gpuEmulation);
    if (cl.emit == Emit::Obj) {
      rt::writeFileAtomically(cl.outputFile, object, protectedInputs(cl, c));
      return 0;
    }
    rt::writeFileAtomically(cl.outputFile, linkExecutable(object, cl.verbose),
                            protectedInputs(cl, c), 0777);
    return 0;
  }
  // Later stages are per dtype signature: every input and the output in --dtype (default f32).
  rt::DType dtype = cl.dtype ? *cl.dtype : c.importedDType.value_or(rt::DType::F32);
  std::string text;
  if (cl.emit == Emit::GPU || cl.emit == Emit::NVVM || cl.emit == Emit::NVVMLLVM ||
      cl.emit == Emit::PTX) {
    std::vector<rt::KernelSignature> signatures;
    for (size_t r = 0; r < c.program->rules.size(); ++r)
      signatures.push_back({std::vector<rt::DType>(jit.ruleInputs(r).size(), dtype), dtype});
    return writeOutput(cl, c, jit.emitAll(signatures, emitName(cl.emit)), captured);
  }
  for (size_t r = 0; r < c.program->rules.size(); ++r) {
    rt::KernelSignature signature{std::vector<rt::DType>(jit.ruleInputs(r).size(), dtype), dtype};
    if (cl.emit == Emit::Loops)
      text += printModule(*jit.lower(r, signature));
    else
      text += jit.emit(r, signature, emitName(cl.emit));
  }
  return writeOutput(cl, c, text, captured);
}

int mergec::runMerge(const CommandLine &cl, Compilation &c,
                     const std::function<std::unique_ptr<rt::Communicator>()> &startProcesses,
                     rt::RunStats *statsOut) {
  if (auto status = compile(cl, c, Emit::Fused))
    return *status;
  const sema::Program &program = *c.program;

  std::vector<rt::ModelSpec> models = modelSpecs(program);
  std::vector<rt::RuleSpec> rules = ruleSpecs(program);
  rt::RunOptions options = cl.run;
  options.provenance = provenance(cl, c);
  if (program.bundle) {
    // merge compress(...): the output is a bundle (runtime/include/mergec/Runtime/Bundle.h).
    if (options.emitLora.rank)
      throw rt::RuntimeError("--emit-lora writes an adapter, compress(...) a bundle: use one");
    // Like --emit-lora: its SVDs are LAPACK's, and what an interrupted run wrote is not
    // journalled.
    if (options.device != rt::DeviceKind::CPU)
      throw rt::RuntimeError(std::string("compress(...) runs on the CPU (its SVDs are "
                                         "LAPACK's), not --device ") +
                             rt::deviceName(options.device));
    if (options.resume)
      throw rt::RuntimeError("compress(...) cannot --resume: run it again without --resume");
    const sema::BundleOutput &b = *program.bundle;
    options.bundle = {true, b.members, b.rank, b.rate, b.exclude, b.oversample, b.iters, b.seed};
  }
  if (!options.dtype) // --dtype wins over a configuration's out_dtype
    options.dtype = c.importedDType;
  if (!options.maxMemory) {
    // Default: half of physical memory, leaving the rest to the page cache.
    options.maxMemory = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) / 2;
  }

  // Under mpirun (docs/cli.md, "Several processes and machines (MPI)"): rank 0 creates the
  // temporary output (and holds the lock), every rank writes its share of the shards into it.
  std::unique_ptr<rt::Communicator> mpi = startProcesses ? startProcesses() : nullptr;
  rt::Communicator *comm = mpi && mpi->size() > 1 ? mpi.get() : nullptr;
  options.comm = comm;
  bool leader = !comm || comm->rank() == 0;
  std::optional<rt::OutputDirectory> out;
  try {
    if (comm && options.resume)
      throw rt::RuntimeError("--resume is not supported with several processes (mpirun); run "
                             "without it");
    // Before any work: the output must not touch an input, --force replaces only mergec's own
    // output, and a second run for the same output stops here.
    rt::checkDevice(options); // no GPU: stop before the output directory exists
    if (leader)
      out.emplace(options.output, options.force, protectedInputs(cl, c), options.resume);
    if (comm) {
      comm->check();
      std::string temp = comm->broadcast(leader ? out->tempPath() : std::string());
      if (!leader)
        out.emplace(rt::OutputDirectory::Joined{}, options.output, temp);
    }
    KernelJIT jit(*c.module, jitOptions(cl, c));
    rt::MergePlan plan =
        rt::planMerge(models, program.outputModel, rules, jit, options, program.layers);
    out->protect(rt::planInputs(plan));
    if (leader)
      for (const std::string &warning : plan.warnings)
        rt::events().warning(warning);
    uint64_t memory = rt::checkMemory(plan, jit, options);
    if (leader) {
      for (size_t r = 0; r < rules.size(); ++r)
        for (size_t p = 0; p < rules[r].patterns.size(); ++p)
          if (plan.patternMatches[r][p] == 0)
            c.diags->warning(program.rules[r].patterns[p].loc,
                             rt::unmatchedPatternWarning(rules[r].patterns[p], program.outputModel));
      rt::reportPlan(plan, rules, options, memory);
    }
    rt::RunStats stats = rt::executeMerge(plan, jit, options, *out);
    if (cl.verbose) {
      std::ostringstream line;
      line << rt::rankPrefix(comm) << "jit: " << jit.compiledCount() << " kernel(s) compiled, "
           << jit.cachedCount() << " loaded from the cache, in " << jit.totalCompileMs() << " ms";
      rt::events().info(line.str());
    }
    if (leader)
      rt::reportDone(stats, options);
    else if (std::string warning = rt::nonFiniteWarning(stats); !warning.empty())
      rt::events().warning(rt::rankPrefix(comm) + warning);
    if (statsOut)
      *statsOut = stats;
  } catch (...) {
    if (!comm)
      throw;
    // Said before the other ranks learn of it: once one exits 1, mpirun may end the others.
    bool learned = comm->failed();
    if (!learned || leader) {
      // A rank that learned of another's failure says so only on rank 0.
      std::string prefix = learned ? "" : rt::rankPrefix(comm);
      try {
        throw;
      } catch (const rt::RuntimeError &e) {
        rt::events().error(prefix + e.what(), e.file(), e.tensor());
      } catch (const std::bad_alloc &) {
        rt::events().error(prefix + "out of memory");
      } catch (const std::exception &e) {
        rt::events().error(prefix + e.what());
      }
    }
    // The other ranks learn of it at their next check; then none writes into the temporary
    // output any more, and rank 0 removes it (before MPI_Finalize, which waits for every rank).
    comm->fail();
    out.reset();
    return 1;
  }
  return 0;
}

int mergec::onLargeStack(const std::function<int()> &command) {
  struct Call {
    const std::function<int()> &command;
    int status = 1;
    std::exception_ptr error;
  } call{command};
  pthread_attr_t attr;
  pthread_t thread;
  if (::pthread_attr_init(&attr) != 0 || ::pthread_attr_setstacksize(&attr, 256u << 20) != 0 ||
      ::pthread_create(&thread, &attr, [](void *p) -> void * {
        auto *c = static_cast<Call *>(p);
        try {
          c->status = c->command();
        } catch (...) {
          c->error = std::current_exception();
        }
        return nullptr;
      }, &call) != 0)
    return command(); // no such thread to be had: the default stack still holds a real recipe
  ::pthread_attr_destroy(&attr);
  ::pthread_join(thread, nullptr);
  if (call.error)
    std::rethrow_exception(call.error);
  return call.status;
}
