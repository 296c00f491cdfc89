//===- Support.cpp - helpers shared by the runtime's .cpp files -----------===//
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mergec::rt::detail {

void fail(const std::string &file, const std::string &message) {
  throw RuntimeError(file + ": " + message);
}

namespace {
// strerror_r is the XSI one (int, fills buf) or the GNU one (may return a static string)
// depending on the C library; overloads pick the right reading of its result.
[[maybe_unused]] const char *strerrorResult(int rc, const char *buf) {
  return rc == 0 ? buf : "unknown error";
}
[[maybe_unused]] const char *strerrorResult(const char *text, const char *) { return text; }
} // namespace

std::string errnoText(int err) {
  char buf[256] = {};
  return strerrorResult(strerror_r(err, buf, sizeof buf), buf);
}

std::optional<size_t> findInvalidUtf8(std::string_view text) {
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i; // continuation byte, overlong lead (C0/C1) or F5..FF
    }
    if (n - i < len)
      return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80)
        return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (overlong || surrogate || cp > 0x10FFFF)
      return i;
    i += len;
  }
  return std::nullopt;
}

namespace {
/// Tracks the keys of every open object while nlohmann parses, remembering the first key
/// that repeats within one object.
struct DuplicateKeyFinder {
  std::vector<std::set<std::string>> open;
  std::optional<std::string> duplicate;

  bool operator()(int, nlohmann::json::parse_event_t event, nlohmann::json &parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open.emplace_back();
    } else if (event == E::object_end) {
      if (!open.empty())
        open.pop_back();
    } else if (event == E::key && !open.empty() && parsed.is_string()) {
      const auto &key = parsed.get_ref<const std::string &>();
      if (!open.back().insert(key).second && !duplicate)
        duplicate = key;
    }
    return true;
  }
};
} // namespace

nlohmann::json parseStrictJson(std::string_view text, const std::string &file,
                               const std::string &what) {
  if (auto bad = findInvalidUtf8(text))
    fail(file, what + " is not valid UTF-8 (bad byte at offset " + std::to_string(*bad) + ")");
  // nlohmann treats a NUL byte as the end of the input, which would silently accept
  // "{...}\0<anything>"; JSON allows NUL only escaped inside a string.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    fail(file, what + " contains a NUL byte at offset " + std::to_string(nul));
  DuplicateKeyFinder finder;
  nlohmann::json json;
  try {
    // The callback is copied by nlohmann, so it refers back to `finder` through a pointer.
    DuplicateKeyFinder *f = &finder;
    json =
        nlohmann::json::parse(text.begin(), text.end(),
                              [f](int depth, nlohmann::json::parse_event_t event,
                                  nlohmann::json &parsed) { return (*f)(depth, event, parsed); });
  } catch (const nlohmann::json::exception &e) {
    fail(file, what + " is not valid JSON: " + e.what());
  }
  if (finder.duplicate)
    fail(file, what + " has the key '" + *finder.duplicate + "' twice");
  return json;
}

void writeAll(int fd, const void *data, uint64_t n, const std::string &file,
              const std::string &what) {
  const auto *p = static_cast<const uint8_t *>(data);
  while (n > 0) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, kWriteBlock));
    ssize_t w = ::write(fd, p, chunk);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == ENOSPC || errno == EDQUOT))
      throw RuntimeError(
          (errno == ENOSPC ? "no space left on device writing " : "disk quota exceeded writing ") +
          file + " (" + what + ")");
    if (w < 0)
      fail(file, "write failed (" + what + "): " + errnoText(errno));
    if (w == 0) // Would loop forever; POSIX only allows it for a zero-length write.
      fail(file, "write made no progress (" + what + ")");
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

void syncFd(int fd, const std::string &file) {
  while (::fsync(fd) != 0) {
    if (errno == EINTR)
      continue;
    // Directories on some filesystems do not support fsync; nothing more can be done there.
    if (errno == EINVAL || errno == EROFS)
      return;
    fail(file, "fsync failed: " + errnoText(errno));
  }
}

void syncPath(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, "cannot open for fsync: " + errnoText(errno));
  try {
    syncFd(fd, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::string readSmallFile(const std::string &path, uint64_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, "cannot open: " + errnoText(errno));
  std::string text;
  try {
    struct stat st;
    if (::fstat(fd, &st) != 0)
      fail(path, "cannot stat: " + errnoText(errno));
    if (!S_ISREG(st.st_mode))
      fail(path, "not a regular file");
    if (static_cast<uint64_t>(st.st_size) > limit)
      fail(path, "file is too large (" + std::to_string(st.st_size) + " bytes, limit " +
                     std::to_string(limit) + ")");
    text.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < text.size()) {
      ssize_t r = ::read(fd, text.data() + done, text.size() - done);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        fail(path, "read failed: " + errnoText(errno));
      if (r == 0) // Shrunk while reading: keep what is there.
        break;
      done += static_cast<size_t>(r);
    }
    text.resize(done);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return text;
}

std::string joinPath(const std::string &dir, const std::string &name) {
  if (dir.empty())
    return name;
  if (dir.back() == '/')
    return dir + name;
  return dir + "/" + name;
}

} // namespace mergec::rt::detail
