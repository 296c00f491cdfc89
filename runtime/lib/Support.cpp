//===- Support.cpp - helpers shared by the runtime's .cpp files -----------===//
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mergec::rt::detail {

void fail(const std::string &file, const std::string &message) {
  throw RuntimeError(file + ": " + message, file, "");
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
/// Builds the DOM from nlohmann's SAX events, as nlohmann's own builder does, but stops at the
/// first key repeated within an object (nlohmann would keep the last one silently, hiding a
/// corrupt header) and at containers nested deeper than kMaxJsonDepth. Linear in the text:
/// nlohmann's parse with a callback rescans the parent object at the end of every child
/// (O(n^2) for a header of n tensors: 50,000 took 17 s).
class StrictDomBuilder {
public:
  /// `lastKeyWins`: a repeated key replaces the earlier value, as nlohmann's own parse does.
  explicit StrictDomBuilder(nlohmann::json &root, bool lastKeyWins = false)
      : root_(root), lastKeyWins_(lastKeyWins) {}

  bool null() { return add(nullptr); }
  bool boolean(bool v) { return add(v); }
  bool number_integer(nlohmann::json::number_integer_t v) { return add(v); }
  bool number_unsigned(nlohmann::json::number_unsigned_t v) { return add(v); }
  bool number_float(nlohmann::json::number_float_t v, const nlohmann::json::string_t &) {
    return add(v);
  }
  bool string(nlohmann::json::string_t &v) { return add(std::move(v)); }
  bool binary(nlohmann::json::binary_t &v) { return add(nlohmann::json::binary(v)); }
  bool start_object(std::size_t) { return open(nlohmann::json::object()); }
  bool key(nlohmann::json::string_t &k) {
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(nlohmann::json::array()); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string &, const nlohmann::json::exception &e) {
    error_ = std::string("is not valid JSON: ") + e.what();
    return false;
  }

  /// Why the parse stopped ("is not valid JSON: ...", "has the key 'k' twice", ...).
  const std::string &error() const { return error_; }
  bool tooDeep() const { return tooDeep_; }

private:
  /// Places a value in the open container (or as the root); the new value's address, or null
  /// after a duplicate key.
  nlohmann::json *place(nlohmann::json value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    nlohmann::json &parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    auto &object = parent.get_ref<nlohmann::json::object_t &>();
    if (lastKeyWins_) {
      nlohmann::json &slot = object[key_];
      slot = std::move(value);
      return &slot;
    }
    auto [it, inserted] = object.emplace(key_, std::move(value));
    if (!inserted) {
      error_ = "has the key '" + key_ + "' twice";
      return nullptr;
    }
    return &it->second;
  }
  bool add(nlohmann::json value) { return place(std::move(value)) != nullptr; }
  bool open(nlohmann::json container) {
    if (open_.size() >= kMaxJsonDepth) {
      tooDeep_ = true;
      error_ = "is nested too deeply (more than " + std::to_string(kMaxJsonDepth) +
               " levels of objects and arrays)";
      return false;
    }
    nlohmann::json *placed = place(std::move(container));
    if (!placed)
      return false;
    // Only the innermost open container grows, so this pointer stays valid while it is open.
    open_.push_back(placed);
    return true;
  }
  bool close() {
    open_.pop_back();
    return true;
  }

  nlohmann::json &root_;
  std::vector<nlohmann::json *> open_;
  std::string key_;
  std::string error_;
  bool lastKeyWins_;
  bool tooDeep_ = false;
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
  nlohmann::json json;
  StrictDomBuilder builder(json);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &builder))
    fail(file, what + " " + builder.error());
  return json;
}

nlohmann::json parseLenientJson(std::string_view text, const std::string &file,
                                const std::string &what) {
  nlohmann::json json;
  StrictDomBuilder builder(json, /*lastKeyWins=*/true);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &builder)) {
    if (builder.tooDeep())
      fail(file, what + " " + builder.error());
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
  return json;
}

std::string jsonExcerpt(const nlohmann::json &j) {
  constexpr size_t kShown = 80;
  std::string text = j.dump();
  if (text.size() > kShown)
    text = text.substr(0, kShown) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
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

namespace {
const char *fileKind(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a file";
}
} // namespace

int openRegularFile(const std::string &path, struct stat &st) {
  if (::stat(path.c_str(), &st) != 0)
    fail(path, "cannot open: " + errnoText(errno));
  if (!S_ISREG(st.st_mode))
    fail(path, std::string("not a regular file (") + fileKind(st.st_mode) + ")");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    fail(path, "cannot open: " + errnoText(errno));
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    ::close(fd);
    fail(path, S_ISREG(st.st_mode) ? "cannot stat: " + errnoText(err)
                                   : std::string("not a regular file (") +
                                         fileKind(st.st_mode) + ")");
  }
  return fd;
}

std::string readSmallFile(const std::string &path, uint64_t limit) {
  struct stat st;
  int fd = openRegularFile(path, st);
  std::string text;
  try {
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

std::optional<std::string> readSmallFileIfExists(const std::string &path, uint64_t limit) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return std::nullopt;
  } else if (S_ISLNK(st.st_mode) && ::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return std::nullopt; // a dangling link is as good as no file
  }
  return readSmallFile(path, limit);
}

std::string joinPath(const std::string &dir, const std::string &name) {
  if (dir.empty())
    return name;
  if (dir.back() == '/')
    return dir + name;
  return dir + "/" + name;
}

} // namespace mergec::rt::detail
