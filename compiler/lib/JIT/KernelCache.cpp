//===- KernelCache.cpp - compiled kernels on disk between runs ------------===//
#include "mergec/JIT/KernelCache.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Size.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/SHA256.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <filesystem>
#include <link.h>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>
#include <vector>

namespace mergec {

namespace {
/// Entry layout: the magic line, then "key <64 hex>\n", "bytes <n>\n", "sha256 <64 hex>\n", then
/// the n bytes.
constexpr const char *kMagic = "mergec kernel cache entry 1\n";
/// Larger than any kernel object; a bigger file is not one of ours.
constexpr uint64_t kMaxEntryBytes = 1ull << 30;

std::string sha256Hex(llvm::StringRef bytes) {
  auto digest = llvm::SHA256::hash(llvm::arrayRefFromStringRef(bytes));
  return llvm::toHex(digest, /*LowerCase=*/true);
}

bool readAll(const std::string &path, std::string &out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return false;
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) > kMaxEntryBytes) {
    ::close(fd);
    return false;
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return true;
}

/// The text after `prefix` up to the next newline, advancing `pos`; nullopt if absent.
std::optional<std::string> field(const std::string &text, size_t &pos, const char *prefix) {
  size_t len = std::strlen(prefix);
  if (text.compare(pos, len, prefix) != 0)
    return std::nullopt;
  size_t end = text.find('\n', pos + len);
  if (end == std::string::npos || end - pos > 200)
    return std::nullopt;
  std::string value = text.substr(pos + len, end - pos - len);
  pos = end + 1;
  return value;
}
/// The GNU build ID (the linker's hash of the linked bytes) of the loaded object, executable
/// or shared library, that holds `address`: "" when it has none.
std::string buildIdHolding(const void *address) {
  struct Search {
    uintptr_t address;
    std::string id;
  } search{reinterpret_cast<uintptr_t>(address), ""};
  ::dl_iterate_phdr(
      [](dl_phdr_info *info, size_t, void *data) -> int {
        auto &s = *static_cast<Search *>(data);
        bool holds = false;
        for (int i = 0; i < info->dlpi_phnum && !holds; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
          holds = ph.p_type == PT_LOAD && s.address >= begin && s.address < begin + ph.p_memsz;
        }
        if (!holds)
          return 0;
        auto align4 = [](size_t n) { return (n + 3) & ~size_t{3}; };
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr) &ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_NOTE)
            continue;
          const char *p = reinterpret_cast<const char *>(info->dlpi_addr + ph.p_vaddr);
          const char *end = p + ph.p_memsz;
          while (static_cast<size_t>(end - p) >= sizeof(ElfW(Nhdr))) {
            const auto *note = reinterpret_cast<const ElfW(Nhdr) *>(p);
            const char *name = p + sizeof(ElfW(Nhdr));
            const char *desc = name + align4(note->n_namesz);
            if (desc + note->n_descsz > end)
              break;
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 &&
                std::memcmp(name, "GNU", 4) == 0) {
              s.id = llvm::toHex(llvm::StringRef(desc, note->n_descsz), /*LowerCase=*/true);
              return 1;
            }
            p = desc + align4(note->n_descsz);
          }
        }
        return 1; // the object holding the address, without a build ID
      },
      &search);
  return search.id;
}
} // namespace

KernelCache::KernelCache(std::string directory) : directory_(std::move(directory)) {}

const std::string &KernelCache::compilerBuild() {
  // Once per process: the build cannot change under it.
  static const std::string build = [] {
    const void *self = reinterpret_cast<const void *>(&KernelCache::compilerBuild);
    std::string id = buildIdHolding(self);
    if (!id.empty())
      return "build-id " + id;
    // A link without build IDs: the object's path, size and modification time.
    Dl_info info;
    struct stat st;
    if (::dladdr(self, &info) && info.dli_fname && ::stat(info.dli_fname, &st) == 0)
      return std::string("file ") + info.dli_fname + " " + std::to_string(st.st_size) + " " +
             std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    return std::string("unknown build");
  }();
  return build;
}

std::string KernelCache::defaultDirectory() {
  if (const char *dir = std::getenv("MERGEC_CACHE_DIR"); dir && *dir)
    return dir;
  if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/mergec";
  if (const char *home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/mergec";
  return "";
}

std::string KernelCache::key(const std::string &version, const std::string &identity,
                             const std::string &module) {
  std::string all;
  for (const std::string *part : {&version, &compilerBuild(), &identity, &module})
    all += std::to_string(part->size()) + ":" + *part;
  return sha256Hex(all);
}

std::string KernelCache::entryPath(const std::string &key) const {
  return directory_ + "/" + key + ".kernel";
}

std::optional<std::string> KernelCache::load(const std::string &key, std::string &damage) const {
  damage.clear();
  if (!enabled())
    return std::nullopt;
  std::string path = entryPath(key), text;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    return std::nullopt; // a miss
  if (!readAll(path, text)) {
    damage = "unreadable or not a regular file";
    return std::nullopt;
  }
  size_t pos = 0;
  size_t magic = std::strlen(kMagic);
  if (text.compare(0, magic, kMagic) != 0) {
    damage = "not a mergec cache entry";
    return std::nullopt;
  }
  pos = magic;
  auto storedKey = field(text, pos, "key ");
  auto bytes = field(text, pos, "bytes ");
  auto digest = field(text, pos, "sha256 ");
  if (!storedKey || !bytes || !digest) {
    damage = "damaged header";
    return std::nullopt;
  }
  if (*storedKey != key) {
    damage = "it belongs to another kernel";
    return std::nullopt;
  }
  uint64_t n = 0;
  if (!llvm::to_integer(*bytes, n, 10) || n != text.size() - pos) {
    damage = "truncated or padded: " + std::to_string(text.size() - pos) + " bytes, header says " +
             *bytes;
    return std::nullopt;
  }
  std::string payload = text.substr(pos);
  if (sha256Hex(payload) != *digest) {
    damage = "checksum mismatch";
    return std::nullopt;
  }
  // Used now: the last an over-full cache removes (a read-only cache keeps its times).
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return payload;
}

uint64_t KernelCache::maxBytes() {
  const char *text = std::getenv("MERGEC_CACHE_MAX");
  if (!text || !*text)
    return kDefaultMaxBytes;
  std::optional<uint64_t> bytes = rt::parseSize(text);
  if (!bytes || *bytes == 0)
    throw rt::RuntimeError(std::string("MERGEC_CACHE_MAX: '") + text +
                           "' is not a size (e.g. 512MiB or 2GB) above zero");
  return *bytes;
}

namespace {
/// An entry's file name: 64 lower-case hex digits, ".kernel".
bool isEntryName(const std::string &name) {
  constexpr size_t kHex = 64;
  return name.size() == kHex + 7 && name.compare(kHex, 7, ".kernel") == 0 &&
         std::all_of(name.begin(), name.begin() + kHex,
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
/// A temporary store() writes before the rename: "." + an entry's key + ".tmp-PID-N".
bool isTemporaryName(const std::string &name) {
  return name.size() > 65 && name[0] == '.' && name.compare(65, 5, ".tmp-") == 0 &&
         isEntryName(name.substr(1, 64) + ".kernel");
}
} // namespace

std::optional<std::string> KernelCache::prune(uint64_t maxBytes,
                                              const struct timespec &keepSince) const {
  if (!enabled())
    return std::nullopt;
  struct Entry {
    std::string path;
    uint64_t bytes;
    struct timespec used;
  };
  std::vector<Entry> entries;
  uint64_t total = 0, removed = 0, removedBytes = 0, temporaries = 0;
  time_t dayAgo = ::time(nullptr) - 24 * 60 * 60;
  std::error_code ec;
  // Increments that fail (the directory removed under it) end the scan instead of throwing.
  for (std::filesystem::directory_iterator it(directory_, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::filesystem::directory_entry &item = *it;
    std::string name = item.path().filename().string();
    bool entry = isEntryName(name);
    if (!entry && !isTemporaryName(name))
      continue;
    struct stat st;
    if (::lstat(item.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (!entry) { // a writer killed between write and rename leaves it for good
      if (st.st_mtim.tv_sec < dayAgo && ::unlink(item.path().c_str()) == 0)
        ++temporaries;
      continue;
    }
    entries.push_back({item.path().string(), static_cast<uint64_t>(st.st_size), st.st_mtim});
    total += static_cast<uint64_t>(st.st_size);
  }
  if (total > maxBytes) {
    std::sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) {
      return std::tie(a.used.tv_sec, a.used.tv_nsec, a.path) <
             std::tie(b.used.tv_sec, b.used.tv_nsec, b.path);
    });
    uint64_t goal = maxBytes / 4 * 3;
    for (const Entry &e : entries) {
      if (total <= goal ||
          std::tie(e.used.tv_sec, e.used.tv_nsec) >= std::tie(keepSince.tv_sec, keepSince.tv_nsec))
        break;
      // Another run may have removed it first; either way it is gone.
      if (::unlink(e.path.c_str()) == 0 || errno == ENOENT) {
        total -= e.bytes;
        ++removed, removedBytes += e.bytes;
      }
    }
  }
  if (removed == 0 && temporaries == 0)
    return std::nullopt;
  std::string said = "kernel cache: removed ";
  if (removed)
    said += std::to_string(removed) + " least recently used entr" + (removed == 1 ? "y" : "ies") +
            " (" + rt::formatSize(removedBytes) + ") to stay under " + rt::formatSize(maxBytes) +
            " (MERGEC_CACHE_MAX; " + rt::formatSize(total) + " kept)";
  if (temporaries)
    said += std::string(removed ? " and " : "") + std::to_string(temporaries) +
            " temporar" + (temporaries == 1 ? "y" : "ies") + " of runs killed over a day ago";
  return said;
}

std::optional<std::string> KernelCache::store(const std::string &key,
                                              const std::string &bytes) const {
  if (!enabled())
    return std::nullopt;
  std::error_code ec;
  std::filesystem::create_directories(directory_, ec);
  if (ec)
    return "kernel cache: cannot create " + directory_ + ": " + ec.message();
  static std::atomic<unsigned> counter{0};
  std::string temp = directory_ + "/." + key + ".tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter++);
  std::string entry = std::string(kMagic) + "key " + key + "\nbytes " +
                      std::to_string(bytes.size()) + "\nsha256 " + sha256Hex(bytes) + "\n" + bytes;
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return "kernel cache: cannot write in " + directory_ + ": " + std::strerror(errno);
  size_t done = 0;
  bool ok = true;
  while (done < entry.size()) {
    ssize_t n = ::write(fd, entry.data() + done, entry.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ok = false;
      break;
    }
    done += static_cast<size_t>(n);
  }
  ok = (::close(fd) == 0) && ok;
  // Renamed into place only when whole: a reader sees the old entry, the new one, or none.
  if (!ok || ::rename(temp.c_str(), entryPath(key).c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return "kernel cache: cannot store " + entryPath(key) + ": " + std::strerror(err);
  }
  return std::nullopt;
}

} // namespace mergec
