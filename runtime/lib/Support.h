//===- Support.h - helpers shared by the runtime's .cpp files ---*- C++ -*-===//
// Private to runtime/lib: POSIX I/O with full error reporting, strict JSON parsing and
// UTF-8 validation. Every function throws RuntimeError with a user-facing message.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mergec::rt::detail {

/// "<file>: <message>", the shape of every runtime error.
[[noreturn]] void fail(const std::string &file, const std::string &message);
/// strerror(err) as a std::string (thread-safe).
std::string errnoText(int err);

/// Index of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or
/// code points past U+10FFFF), or nullopt when all of `text` is valid.
std::optional<size_t> findInvalidUtf8(std::string_view text);

/// Parses `text` as JSON, rejecting invalid UTF-8 and duplicate object keys (nlohmann would
/// keep the last one silently, hiding a corrupt header). `what` names the JSON in messages
/// ("header", "index"); errors are reported against `file`.
nlohmann::json parseStrictJson(std::string_view text, const std::string &file,
                               const std::string &what);

/// Size of a block handed to one write(2): large enough to stream at disk speed, small enough
/// to keep a single syscall short.
inline constexpr size_t kWriteBlock = 8u << 20;

/// Writes all `n` bytes, retrying on EINTR and short writes. ENOSPC gives
/// "no space left on device writing <file> (<what>)".
void writeAll(int fd, const void *data, uint64_t n, const std::string &file,
              const std::string &what);
/// fsync(fd), reporting failure against `file`.
void syncFd(int fd, const std::string &file);
/// Opens `path` (a file or a directory) read-only and fsyncs it.
void syncPath(const std::string &path);
/// Reads a whole regular file of at most `limit` bytes.
std::string readSmallFile(const std::string &path, uint64_t limit);
/// "a" + "/" + "b", without doubling a trailing slash of `dir`.
std::string joinPath(const std::string &dir, const std::string &name);

} // namespace mergec::rt::detail
