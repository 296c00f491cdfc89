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
#include <sys/stat.h>

namespace mergec::rt::detail {

/// "<file>: <message>", the shape of every runtime error.
[[noreturn]] void fail(const std::string &file, const std::string &message);
/// strerror(err) as a std::string (thread-safe).
std::string errnoText(int err);

/// Index of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or
/// code points past U+10FFFF), or nullopt when all of `text` is valid.
std::optional<size_t> findInvalidUtf8(std::string_view text);

/// Objects and arrays nested deeper than this are refused while parsing: safetensors headers,
/// indexes and configs nest 2 to 5 levels, and printing a value (nlohmann's dump, in error
/// messages) recurses once per level.
inline constexpr size_t kMaxJsonDepth = 64;

/// Parses `text` as JSON in time linear in its length, rejecting invalid UTF-8, duplicate
/// object keys (nlohmann would keep the last one silently, hiding a corrupt header) and nesting
/// deeper than kMaxJsonDepth. `what` names the JSON in messages ("header", "index"); errors
/// are reported against `file`.
nlohmann::json parseStrictJson(std::string_view text, const std::string &file,
                               const std::string &what);

/// Parses like nlohmann::json::parse(text, nullptr, false): a discarded value when `text` is not
/// JSON, the last of repeated keys wins. But nesting deeper than kMaxJsonDepth is an error
/// naming `file`, and the time is linear. For files read leniently (config.json).
nlohmann::json parseLenientJson(std::string_view text, const std::string &file,
                                const std::string &what);

/// A JSON value as text for an error message, cut after 80 characters (a malformed field can
/// be megabytes long).
std::string jsonExcerpt(const nlohmann::json &j);

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
/// Opens `path` read-only if it is a regular file, filling `st`. It is checked before the open
/// (opening a FIFO blocks until a writer comes, a device may never end) and again on what was
/// opened (O_NONBLOCK: a FIFO swapped in between must not block either). Throws
/// "<path>: not a regular file (a FIFO)" and the like.
int openRegularFile(const std::string &path, struct stat &st);
/// Reads a whole regular file of at most `limit` bytes.
std::string readSmallFile(const std::string &path, uint64_t limit);
/// readSmallFile, or nullopt when nothing (or a dangling link) is at `path`.
std::optional<std::string> readSmallFileIfExists(const std::string &path, uint64_t limit);
/// "a" + "/" + "b", without doubling a trailing slash of `dir`.
std::string joinPath(const std::string &dir, const std::string &name);

} // namespace mergec::rt::detail
