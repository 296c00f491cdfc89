//===- MappedInputGuard.cpp - a clear error when a mapped input shrinks ---===//
#include "mergec/Runtime/MappedInputGuard.h"
#include "mergec/Runtime/Events.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unistd.h>

namespace mergec::rt {

namespace {

/// One registered mapping. Slots are never freed, only emptied and reused, so the handler can
/// walk the list at any moment without a lock; the path is a fixed buffer for the same reason.
struct Slot {
  std::atomic<uintptr_t> begin{0}; ///< 0 while the slot is empty
  std::atomic<uintptr_t> end{0};
  char path[4096] = {};
  std::atomic<Slot *> next{nullptr};
};

std::atomic<Slot *> slots{nullptr};
std::mutex registryMutex; // registration only; the handler never locks
std::atomic<void (*)()> fatalCleanup{nullptr};
struct sigaction previousAction;

void writeAll(const char *text, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, text, n);
    if (w <= 0)
      return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}
void writeText(const char *text) { writeAll(text, std::strlen(text)); }

/// `text` as the inside of a JSON string, written piecewise (no allocation: a signal handler).
void writeJsonString(const char *text) {
  for (; *text; ++text) {
    unsigned char c = static_cast<unsigned char>(*text);
    if (c == '"' || c == '\\') {
      char escaped[2] = {'\\', static_cast<char>(c)};
      writeAll(escaped, 2);
    } else if (c < 0x20) {
      const char *hex = "0123456789abcdef";
      char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      writeAll(escaped, 6);
    } else {
      writeAll(text, 1);
    }
  }
}

/// A non-negative integer in decimal, without the C library's formatting.
void writeNumber(uint64_t n) {
  char digits[24];
  size_t i = sizeof digits;
  do
    digits[--i] = static_cast<char>('0' + n % 10);
  while (n /= 10);
  writeAll(digits + i, sizeof digits - i);
}

const char *const kChanged = ": changed while mergec was reading it (the file is now shorter than "
                             "when it was opened: truncated, or rewritten by a download?)";

/// The error, as text or (--json) as an error event; only async-signal-safe calls.
void reportChanged(const char *path) {
  if (!events().json()) {
    writeText("mergec: error: ");
    writeText(path);
    writeText(kChanged);
    writeText("\n");
    return;
  }
  uint64_t ms = static_cast<uint64_t>(events().seconds() * 1000); // clock_gettime
  writeText("{\"event\":\"error\",\"t\":");
  writeNumber(ms / 1000);
  char fraction[4] = {'.', static_cast<char>('0' + ms / 100 % 10),
                      static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10)};
  writeAll(fraction, 4);
  writeText(",\"message\":\"");
  writeJsonString(path);
  writeJsonString(kChanged);
  writeText("\",\"file\":\"");
  writeJsonString(path);
  writeText("\"}\n");
}

void onSigbus(int sig, siginfo_t *info, void *context) {
  auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot *s = slots.load(std::memory_order_acquire); s;
       s = s->next.load(std::memory_order_acquire)) {
    uintptr_t begin = s->begin.load(std::memory_order_acquire);
    if (begin == 0 || address < begin || address >= s->end.load(std::memory_order_acquire))
      continue;
    reportChanged(s->path);
    if (auto cleanup = fatalCleanup.load())
      cleanup();
    ::_exit(1);
  }
  // Not one of ours: the handler that was there before takes it, or the default action
  // (re-raised by returning, as the faulting access runs again).
  if (previousAction.sa_flags & SA_SIGINFO) {
    if (previousAction.sa_sigaction) {
      previousAction.sa_sigaction(sig, info, context);
      return;
    }
  } else if (previousAction.sa_handler != SIG_DFL && previousAction.sa_handler != SIG_IGN) {
    previousAction.sa_handler(sig);
    return;
  }
  ::signal(SIGBUS, SIG_DFL);
  if (info->si_code <= 0) // sent by kill(2), not a fault that happens again on return
    ::raise(SIGBUS);
}

void installHandler() {
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_sigaction = onSigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO;
  ::sigaction(SIGBUS, &action, &previousAction);
}

} // namespace

MappedInputGuard::MappedInputGuard(const void *data, size_t size, const std::string &path) {
  std::lock_guard<std::mutex> lock(registryMutex);
  static std::once_flag installed;
  std::call_once(installed, installHandler);
  Slot *slot = nullptr;
  for (Slot *s = slots.load(); s && !slot; s = s->next.load())
    if (s->begin.load() == 0)
      slot = s;
  if (!slot) {
    slot = new Slot; // lives for the process: the handler may be reading the list
    slot->next.store(slots.load());
    slots.store(slot, std::memory_order_release);
  }
  size_t n = std::min(path.size(), sizeof slot->path - 1);
  std::memcpy(slot->path, path.data(), n);
  slot->path[n] = '\0';
  auto begin = reinterpret_cast<uintptr_t>(data);
  slot->end.store(begin + size, std::memory_order_release);
  slot->begin.store(begin, std::memory_order_release); // published last
  slot_ = slot;
}

MappedInputGuard::~MappedInputGuard() {
  std::lock_guard<std::mutex> lock(registryMutex);
  static_cast<Slot *>(slot_)->begin.store(0, std::memory_order_release);
}

void setFatalCleanup(void (*fn)()) { fatalCleanup.store(fn); }

} // namespace mergec::rt
