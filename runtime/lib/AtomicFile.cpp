//===- AtomicFile.cpp - a file that is replaced whole or not at all -------===//
#include "mergec/Runtime/AtomicFile.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Interrupts.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace mergec::rt {

using detail::fail;

namespace {

/// The path a write to `path` lands on: a link's final target, else `path` itself.
std::string landingPath(const std::string &path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode))
    return path;
  std::error_code ec;
  auto target = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec);
  return ec ? path : target.string();
}

void writeDirectly(const std::string &path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, "cannot open for writing: " + detail::errnoText(errno));
  try {
    detail::writeAll(fd, bytes.data(), bytes.size(), path, "output");
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0)
    fail(path, "close failed: " + detail::errnoText(errno));
}

} // namespace

void writeFileAtomically(const std::string &path, std::string_view bytes,
                         const std::vector<ProtectedInput> &inputs, unsigned mode) {
  checkOutputAgainstInputs(path, inputs);
  std::string target = landingPath(path);
  struct stat st;
  bool replacing = ::stat(target.c_str(), &st) == 0;
  if (replacing) {
    if (S_ISDIR(st.st_mode))
      fail(path, "is a directory");
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))
      return writeDirectly(target, bytes);
    if (!S_ISREG(st.st_mode))
      fail(path, "not a regular file, a character device or a FIFO");
  }

  std::filesystem::path t(target);
  std::string dir = t.has_parent_path() ? t.parent_path().string() : ".";
  std::string temp = (std::filesystem::path(dir) /
                      ("." + t.filename().string() + ".mergec-tmp-" + std::to_string(::getpid())))
                         .string();
  TemporaryPath guard(temp);
  ::unlink(temp.c_str()); // a leftover of a killed run with our pid
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  static_cast<mode_t>(mode));
  if (fd < 0)
    fail(path, "cannot create a temporary file in '" + dir + "': " + detail::errnoText(errno));
  try {
    detail::writeAll(fd, bytes.data(), bytes.size(), path, "output");
    // A replaced file keeps its permission bits, as an editor's save would.
    if (replacing && ::fchmod(fd, st.st_mode & 07777) != 0)
      fail(path, "cannot set permissions: " + detail::errnoText(errno));
    detail::syncFd(fd, path);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    fail(path, "close failed: " + detail::errnoText(err));
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    fail(path, "cannot rename the temporary file into place: " + detail::errnoText(err));
  }
  guard.release();
  detail::syncPath(dir);
}

} // namespace mergec::rt
