//===- module.cpp - mergec._mergec: the Python module's native part -------===//
// The driver's run, compile and inspect (tools/mergec/Driver.h, Inspect.h: the code the command
// line runs) behind three functions. Each runs on a worker thread with a large stack while the
// calling thread, the GIL released between short waits, hands progress to the Python callback,
// forwards messages and watches for Ctrl-C: an interrupt (or an exception in the callback)
// stops the merge at the next tensor, the unfinished output is removed, and the exception is
// raised. mergec/__init__.py wraps these in the documented API (docs/python.md).
#include "Driver.h"
#include "HeatMap.h"
#include "Inspect.h"
#include "Options.h"

#include "mergec/Runtime/AtomicFile.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/InputProtection.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <dlfcn.h>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

namespace py = pybind11;
using namespace mergec;

namespace {

/// Thrown from the progress hook on the worker thread once the caller asked to stop.
struct Cancelled : std::exception {
  const char *what() const noexcept override { return "cancelled"; }
};

/// A recipe that did not compile: its diagnostics, as reported and as printed.
struct RecipeFailed : std::exception {
  std::vector<DiagnosticEngine::Record> records;
  std::string text;
  const char *what() const noexcept override { return text.c_str(); }
};

/// A command that failed with only a message (a usage error of the driver).
struct Failed : std::exception {
  std::string text;
  explicit Failed(std::string t) : text(std::move(t)) {}
  const char *what() const noexcept override { return text.c_str(); }
};

/// What the worker and the calling thread share during one call.
struct Call {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::tuple<size_t, size_t, uint64_t>> progress;
  std::vector<std::string> messages, allMessages;
  bool finished = false;
  std::atomic<bool> cancel{false};
  std::exception_ptr error;
  /// The `done` of the last update the calling thread has handed to the callback and then
  /// looked for Ctrl-C after; `handed` is notified when it moves or the call is cancelled.
  size_t handedThrough = 0;
  std::condition_variable handed;

  /// The progress hook (worker thread): queues the update, or stops the merge. The last one
  /// (the output is committed after it) waits until the calling thread has run the callback
  /// on every update and looked for Ctrl-C: an exception or interrupt there stops the merge
  /// before its output appears, however far ahead of the callbacks the worker had got.
  void onProgress(size_t done, size_t total, uint64_t bytes) {
    if (cancel.load())
      throw Cancelled();
    std::unique_lock<std::mutex> lock(mutex);
    progress.emplace_back(done, total, bytes);
    wake.notify_one();
    if (done != total)
      return;
    handed.wait(lock, [&] { return cancel.load() || handedThrough >= done; });
    if (cancel.load())
      throw Cancelled();
  }
  void onMessage(const std::string &line) {
    std::lock_guard<std::mutex> lock(mutex);
    messages.push_back(line);
    allMessages.push_back(line);
    wake.notify_one();
  }
};

/// The events stream is the process's: one call at a time.
std::mutex &callMutex() {
  static std::mutex m;
  return m;
}

/// The exception classes of mergec/errors.py.
py::object errorClass(const char *name) { return py::module_::import("mergec.errors").attr(name); }

[[noreturn]] void raise(py::object type, py::object instance) {
  PyErr_SetObject(type.ptr(), instance.ptr());
  throw py::error_already_set();
}

/// The worker's failure as the module's exceptions: RecipeError, InputError, MemoryError, Error.
[[noreturn]] void raiseNative(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const RecipeFailed &e) {
    py::list diagnostics;
    py::object diagnostic = errorClass("Diagnostic");
    for (const auto &r : e.records)
      diagnostics.append(diagnostic(r.severity, r.file, r.line, r.column, r.message));
    py::object type = errorClass("RecipeError");
    raise(type, type(e.text, diagnostics));
  } catch (const rt::RuntimeError &e) {
    py::object type = errorClass("InputError");
    raise(type, type(std::string(e.what()), e.file(), e.tensor()));
  } catch (const std::bad_alloc &) {
    PyErr_NoMemory();
    throw py::error_already_set();
  } catch (const std::exception &e) {
    py::object type = errorClass("Error");
    raise(type, type(std::string(e.what())));
  }
}

/// Runs `work` on a worker thread (with a large stack: the compiler recurses) while this thread
/// delivers progress to `callback` (may be None) and messages to sys.stderr (unless `quiet`),
/// and checks for signals. Returns the messages the call produced.
std::vector<std::string> runWorker(const std::function<void(Call &)> &work,
                                   const py::object &callback, bool quiet) {
  Call call;
  std::unique_lock<std::mutex> serial(callMutex(), std::defer_lock);
  {
    py::gil_scoped_release nogil;
    serial.lock();
  }
  rt::events().setSink([&call](const std::string &line) { call.onMessage(line); });
  // Back to stderr however this call ends (the sink refers to `call`).
  struct SinkReset {
    ~SinkReset() { rt::events().setSink({}); }
  } sinkReset;
  std::thread worker([&] {
    try {
      onLargeStack([&] {
        work(call);
        return 0;
      });
    } catch (...) {
      call.error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(call.mutex);
    call.finished = true;
    call.wake.notify_one();
  });
  std::optional<py::error_already_set> pending;
  for (bool done = false; !done;) {
    std::deque<std::tuple<size_t, size_t, uint64_t>> progress;
    std::vector<std::string> messages;
    {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lock(call.mutex);
      call.wake.wait_for(lock, std::chrono::milliseconds(50), [&] {
        return call.finished || !call.progress.empty() || !call.messages.empty();
      });
      progress.swap(call.progress);
      messages.swap(call.messages);
      done = call.finished;
    }
    // Once these updates are handed over (or the call is cancelled): a worker waiting at its
    // last update goes on.
    auto handOver = [&] {
      {
        std::lock_guard<std::mutex> lock(call.mutex);
        if (!progress.empty())
          call.handedThrough = std::get<0>(progress.back());
      }
      call.handed.notify_all();
    };
    if (pending) {
      handOver();
      continue;
    }
    try {
      if (!quiet && !messages.empty()) {
        py::object err = py::module_::import("sys").attr("stderr");
        for (const std::string &m : messages)
          err.attr("write")(m);
      }
      if (!callback.is_none())
        for (auto &[d, total, bytes] : progress)
          callback(d, total, bytes);
      if (PyErr_CheckSignals() != 0) // KeyboardInterrupt (only the main thread sees signals)
        throw py::error_already_set();
    } catch (py::error_already_set &e) {
      pending.emplace(std::move(e));
      call.cancel.store(true);
    }
    handOver();
  }
  {
    py::gil_scoped_release nogil;
    worker.join();
  }
  if (pending)
    throw std::move(*pending);
  if (call.error)
    raiseNative(call.error);
  return call.allMessages;
}

/// The CommandLine a call describes (the options `mergec run` and `compile` take).
CommandLine commandLine(const std::string &recipe, const std::optional<std::string> &text,
                        const std::vector<std::pair<std::string, std::string>> &models,
                        const std::vector<std::pair<std::string, std::string>> &params,
                        const std::optional<std::string> &dtype, unsigned threads,
                        const std::string &stdlib, const std::string &cacheDir) {
  CommandLine cl;
  cl.recipe = recipe;
  cl.recipeText = text;
  cl.overrides.models = models;
  cl.overrides.params = params;
  if (dtype) {
    if (*dtype == "f32")
      cl.run.dtype = rt::DType::F32;
    else if (*dtype == "bf16")
      cl.run.dtype = rt::DType::BF16;
    else if (*dtype == "f16")
      cl.run.dtype = rt::DType::F16;
    else
      throw py::value_error("dtype must be 'f32', 'bf16' or 'f16', not '" + *dtype + "'");
  }
  cl.dtype = cl.run.dtype;
  cl.run.threads = threads;
  cl.stdlib = stdlib;
  cl.cacheDir = cacheDir;
  return cl;
}

/// A status other than 0 from the driver as an exception on the worker thread.
void check(int status, const Compilation &c, const std::ostringstream &diagnostics, Call &call) {
  if (status == 0)
    return;
  if (c.diags && c.diags->errorCount() > 0) {
    RecipeFailed failed;
    failed.records = c.diags->records();
    failed.text = diagnostics.str();
    throw failed;
  }
  std::lock_guard<std::mutex> lock(call.mutex);
  std::string text = call.allMessages.empty() ? "mergec failed (status " +
                                                     std::to_string(status) + ")"
                                               : call.allMessages.back();
  while (!text.empty() && text.back() == '\n')
    text.pop_back();
  throw Failed(text);
}

py::dict run(const std::string &recipe, const std::optional<std::string> &text,
             const std::string &output, const std::vector<std::pair<std::string, std::string>> &models,
             const std::vector<std::pair<std::string, std::string>> &params,
             const std::optional<std::string> &dtype, unsigned threads, bool force, bool quiet,
             const py::object &progress, const std::string &stdlib, const std::string &cacheDir) {
  CommandLine cl = commandLine(recipe, text, models, params, dtype, threads, stdlib, cacheDir);
  cl.command = Command::Run;
  cl.run.output = output;
  cl.run.force = force;
  cl.run.quiet = true; // progress is the callback's (or tqdm's), not a status line on fd 2
  rt::RunStats stats;
  std::ostringstream diagnostics;
  cl.diagnostics = &diagnostics;
  std::vector<std::string> messages = runWorker(
      [&](Call &call) {
        cl.run.onProgress = [&call](size_t d, size_t t, uint64_t b) { call.onProgress(d, t, b); };
        Compilation c;
        check(runMerge(cl, c, {}, &stats), c, diagnostics, call);
        // Recipe warnings (a pattern matching nothing) were printed into `diagnostics`.
        if (!diagnostics.str().empty())
          call.onMessage(diagnostics.str());
      },
      progress, quiet);
  py::dict result;
  result["output"] = output;
  result["tensors"] = stats.tensors;
  result["bytes_read"] = stats.bytesRead;
  result["bytes_written"] = stats.bytesWritten;
  result["seconds"] = stats.seconds;
  result["messages"] = messages;
  return result;
}

std::string compileRecipe(const std::string &recipe, const std::optional<std::string> &text,
                          const std::string &emit,
                          const std::vector<std::pair<std::string, std::string>> &models,
                          const std::vector<std::pair<std::string, std::string>> &params,
                          const std::optional<std::string> &dtype, const std::string &stdlib,
                          const std::string &cacheDir) {
  CommandLine cl = commandLine(recipe, text, models, params, dtype, 0, stdlib, cacheDir);
  cl.command = Command::Compile;
  std::optional<Emit> stage = parseEmit(emit);
  if (!stage || emitsFile(*stage)) {
    std::string names;
    std::istringstream all(emitNames());
    for (std::string name; all >> name;)
      if (!emitsFile(*parseEmit(name)))
        names += (names.empty() ? "" : ", ") + name;
    throw py::value_error("emit must be one of " + names +
                          " (obj and exe are files: use the mergec command), not '" + emit + "'");
  }
  cl.emit = *stage;
  std::ostringstream diagnostics;
  cl.diagnostics = &diagnostics;
  std::string out;
  runWorker(
      [&](Call &call) {
        Compilation c;
        check(runCompile(cl, c, &out), c, diagnostics, call);
      },
      py::none(), /*quiet=*/true);
  return out;
}

std::string inspect(const std::string &base, const std::vector<std::string> &paths,
                    const std::vector<std::string> &names, double density, unsigned threads,
                    const std::optional<std::string> &png, bool quiet, const py::object &progress,
                    const std::string &stdlib, const std::string &cacheDir) {
  if (paths.empty())
    throw py::value_error("inspect needs at least one fine-tune besides the base model");
  if (!(density > 0 && density <= 1))
    throw py::value_error("density must be in (0, 1]");
  CommandLine cl = commandLine(base, std::nullopt, {}, {}, std::nullopt, threads, stdlib, cacheDir);
  cl.command = Command::Inspect;
  cl.inspectModels = paths;
  cl.inspectDensity = density;
  cl.run.quiet = true;
  std::string json;
  runWorker(
      [&](Call &call) {
        cl.run.onProgress = [&call](size_t d, size_t t, uint64_t b) { call.onProgress(d, t, b); };
        std::vector<rt::ProtectedInput> inputs{{"the base model", base}};
        for (size_t m = 0; m < paths.size(); ++m)
          inputs.push_back({"model '" + names[m] + "'", paths[m]});
        if (png)
          rt::checkOutputAgainstInputs(*png, inputs);
        nlohmann::ordered_json report = inspectModels(cl, names);
        if (png)
          rt::writeFileAtomically(*png, heatMapPng(report), inputs);
        json = report.dump();
      },
      progress, quiet);
  return json;
}

} // namespace

PYBIND11_MODULE(_mergec, m) {
  m.doc() = "mergec's compiler and runtime (use the mergec package, not this module)";
  // Python loads extensions RTLD_LOCAL; the JIT links kernels against the process's symbols
  // (mergec_la_* for linear algebra), so this module's own symbols must be global.
  Dl_info self;
  if (::dladdr(reinterpret_cast<void *>(&modelNames), &self) && self.dli_fname)
    ::dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  m.attr("version") = MERGEC_VERSION;
  m.def("run", &run, py::arg("recipe"), py::arg("text"), py::arg("output"), py::arg("models"),
        py::arg("params"), py::arg("dtype"), py::arg("threads"), py::arg("force"),
        py::arg("quiet"), py::arg("progress"), py::arg("stdlib"), py::arg("cache_dir"));
  m.def("compile", &compileRecipe, py::arg("recipe"), py::arg("text"), py::arg("emit"),
        py::arg("models"), py::arg("params"), py::arg("dtype"), py::arg("stdlib"),
        py::arg("cache_dir"));
  m.def("inspect", &inspect, py::arg("base"), py::arg("paths"), py::arg("names"),
        py::arg("density"), py::arg("threads"), py::arg("png"), py::arg("quiet"),
        py::arg("progress"), py::arg("stdlib"), py::arg("cache_dir"));
  m.def("model_names", &modelNames, py::arg("paths"));
}
