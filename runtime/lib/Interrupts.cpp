//===- Interrupts.cpp - clean up partial outputs on SIGINT/TERM/HUP -------===//
#include "mergec/Runtime/Interrupts.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/MappedInputGuard.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <pthread.h>
#include <set>
#include <thread>
#include <unistd.h>

namespace mergec::rt {

namespace {
/// Guards the registry; held by commits too (holdOffInterruptCleanup) so a signal never sees
/// an output half-way between its old and new place.
std::recursive_mutex &registryMutex() {
  static std::recursive_mutex m;
  return m;
}
std::set<std::string> &registry() {
  static std::set<std::string> paths;
  return paths;
}

/// Set (async-signal-safely) when another fatal signal handler hands its exit to this thread:
/// then the cleanup runs without the "interrupted" line, and the exit status is 1.
std::atomic<bool> fatalExit{false};

/// The SIGBUS handler's cleanup (MappedInputGuard's setFatalCleanup): it has printed its error;
/// removing trees is not async-signal-safe, so it wakes the signal thread, which can, and waits
/// for it to end the process.
void exitThroughCleanup() {
  fatalExit.store(true);
  ::kill(::getpid(), SIGTERM);
  for (;;)
    ::pause();
}

void writeStderr(const std::string &text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0)
      return;
    done += static_cast<size_t>(n);
  }
}

/// The thread that owns the signals: waits, cleans up, exits. It is an ordinary thread (the
/// signals are delivered through sigwait, not a handler), so it may lock and remove trees.
[[noreturn]] void waitForSignals(sigset_t set) {
  int sig = 0;
  while (::sigwait(&set, &sig) != 0) {
  }
  std::lock_guard<std::recursive_mutex> lock(registryMutex());
  std::string removed;
  for (const std::string &path : registry()) {
    std::error_code ec;
    // Writers still running may create files in a directory being removed; a few rounds
    // catch those (new files fail with ENOENT once the directory is gone).
    for (int round = 0;
         round < 3 && std::filesystem::exists(std::filesystem::symlink_status(path, ec)); ++round)
      std::filesystem::remove_all(path, ec);
    if (path.find(".mergec-tmp-") != std::string::npos)
      removed += removed.empty() ? path : ", " + path;
  }
  if (fatalExit.load())
    ::_exit(1); // the error was printed by the handler that asked for this
  const char *name = ::sigabbrev_np(sig);
  std::string message = "mergec: interrupted by SIG" + std::string(name ? name : "?");
  if (!removed.empty())
    message += "; removed the unfinished output " + removed;
  if (events().json()) // an ordinary thread: the event stream's lock is fine here
    events().error(message.substr(message.find(": ") + 2));
  else
    writeStderr(message + "\n");
  ::_exit(128 + sig);
}
/// The thread in waitForSignals, for forwardToSignalThread.
pthread_t signalThread;

/// Threads started before installInterruptCleanup blocked the signals (a shared library that
/// starts workers in its constructor, before main, as OpenBLAS does: BlasLibrary.h loads it
/// later for that reason) would still take them: a handler hands each one to the signal thread,
/// where it is blocked and so waits for its sigwait.
/// pthread_kill is async-signal-safe.
void forwardToSignalThread(int sig) { ::pthread_kill(signalThread, sig); }
} // namespace

void installInterruptCleanup() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread waiter(waitForSignals, set);
    signalThread = waiter.native_handle();
    waiter.detach();
    struct sigaction forward = {};
    forward.sa_handler = forwardToSignalThread;
    sigemptyset(&forward.sa_mask);
    forward.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
      ::sigaction(sig, &forward, nullptr);
    setFatalCleanup(exitThroughCleanup);
  });
}

TemporaryPath::TemporaryPath(std::string path) : path_(std::move(path)) {
  std::lock_guard<std::recursive_mutex> lock(registryMutex());
  registered_ = registry().insert(path_).second;
}

TemporaryPath::~TemporaryPath() { release(); }

void TemporaryPath::release() {
  if (!registered_)
    return;
  std::lock_guard<std::recursive_mutex> lock(registryMutex());
  registry().erase(path_);
  registered_ = false;
}

bool isTemporaryOfThisProcess(const std::string &path) {
  std::lock_guard<std::recursive_mutex> lock(registryMutex());
  return registry().count(path) != 0;
}

std::unique_lock<std::recursive_mutex> holdOffInterruptCleanup() {
  return std::unique_lock<std::recursive_mutex>(registryMutex());
}

} // namespace mergec::rt
