//===- KernelCache.h - compiled kernels on disk between runs ----*- C++ -*-===//
// A second run of the same recipe compiles nothing: each serialized kernel (the CPU backend's
// object file) is stored under a key that hashes everything its bytes depend on: mergec's
// version and build (the passes after the keyed module are the compiler's own code), the
// backend's identity (target triple, CPU and features) and the lowered module.
// Entries are written to a temporary name and renamed, so concurrent runs never see half an
// entry; each carries its key, length and SHA-256, so a truncated, corrupt or foreign entry is
// detected and recompiled, never executed. The entries are kept under a size limit, the least
// recently used (a load refreshes an entry's modification time) removed first.
#pragma once
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

namespace mergec {

class KernelCache {
public:
  /// An empty `directory` disables the cache.
  explicit KernelCache(std::string directory);

  /// $MERGEC_CACHE_DIR, else $XDG_CACHE_HOME/mergec, else ~/.cache/mergec ("" without HOME).
  static std::string defaultDirectory();
  /// The hex SHA-256 of the parts and compilerBuild(), each length-prefixed (so no two part
  /// lists collide).
  static std::string key(const std::string &version, const std::string &identity,
                         const std::string &module);
  /// This build of the compiler: the GNU build ID of the executable or library holding it (the
  /// linker's hash of its bytes), else its path, size and modification time. Two builds of one
  /// version lower the same module differently when a pass changed (the key's module is the
  /// target-neutral loops; the passes after it are this code): their entries must not mix.
  static const std::string &compilerBuild();

  bool enabled() const { return !directory_.empty(); }
  const std::string &directory() const { return directory_; }

  /// The entry's bytes; nullopt when there is none or it is damaged (`damage` says how).
  std::optional<std::string> load(const std::string &key, std::string &damage) const;
  /// Stores an entry; returns a warning instead of throwing when it cannot (a cache that cannot
  /// be written costs time, not correctness).
  std::optional<std::string> store(const std::string &key, const std::string &bytes) const;
  /// Where an entry lives (for tests and messages).
  std::string entryPath(const std::string &key) const;

  /// The most bytes of entries kept: $MERGEC_CACHE_MAX (a size, "512MiB", "2GB"; throws
  /// rt::RuntimeError naming it when it is not one), else kDefaultMaxBytes (tens of thousands
  /// of kernels: a CPU kernel is 3-15 KB).
  static constexpr uint64_t kDefaultMaxBytes = uint64_t{256} << 20;
  static uint64_t maxBytes();
  /// When the entries hold more than `maxBytes`, removes the least recently used until they
  /// hold at most three quarters of it (so a run that adds a few does not prune every time),
  /// but none used or stored at or after `keepSince` (the calling run's own kernels), and the
  /// temporaries of writers killed over a day ago. Only names this cache writes are touched.
  /// Returns what it removed (for --verbose), nothing when it removed nothing.
  std::optional<std::string> prune(uint64_t maxBytes, const struct timespec &keepSince) const;

private:
  std::string directory_;
};

} // namespace mergec
