//===- KernelCache.cpp - compiled kernels on disk between runs ------------===//
#include "mergec/JIT/KernelCache.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/SHA256.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

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
} // namespace

KernelCache::KernelCache(std::string directory) : directory_(std::move(directory)) {}

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
  for (const std::string *part : {&version, &identity, &module})
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
  return payload;
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
