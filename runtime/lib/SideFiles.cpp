//===- SideFiles.cpp - copy the base model's tokenizer and config ---------===//
#include "mergec/Runtime/SideFiles.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/InputProtection.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace mergec::rt {

using detail::fail;
using detail::joinPath;
namespace fs = std::filesystem;

const std::vector<std::string> kSideFiles = {
    "config.json",           "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json",            "merges.txt",              "added_tokens.json",
    "chat_template.json",    "chat_template.jinja"};

namespace {

std::optional<std::string> realPath(const std::string &path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf))
    return std::nullopt;
  return std::string(buf);
}

/// Where a side file may come from: the model directory itself, and for a Hugging Face cache
/// snapshot (`.../models--org--name/snapshots/<rev>`) that model's blob store, which is where
/// every file of a snapshot links to.
bool allowedSource(const fs::path &target, const fs::path &modelDir) {
  if (pathWithin(target, modelDir))
    return true;
  fs::path snapshots = modelDir.parent_path();
  if (snapshots.filename() != "snapshots")
    return false;
  fs::path blobs = snapshots.parent_path() / "blobs";
  return target.parent_path() == blobs;
}

} // namespace

SideFileResult copySideFile(const std::string &modelDir, const std::string &toDir,
                            const std::string &name, std::string &warning) {
  std::string from = joinPath(modelDir, name), to = joinPath(toDir, name);
  struct stat st;
  if (::lstat(from.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return SideFileResult::Absent;
    warning = from + ": not copied: " + detail::errnoText(errno);
    return SideFileResult::Skipped;
  }
  auto skip = [&](const std::string &why) {
    warning = from + ": not copied into the output: " + why;
    return SideFileResult::Skipped;
  };
  auto dir = realPath(modelDir);
  auto target = realPath(from);
  if (!dir || !target)
    return skip("it is a link that leads nowhere");
  if (!allowedSource(*target, *dir))
    return skip("it links to " + *target + ", outside the model directory");
  if (::stat(target->c_str(), &st) != 0)
    return skip(detail::errnoText(errno));
  if (!S_ISREG(st.st_mode))
    return skip("not a regular file");

  // O_NONBLOCK: a FIFO swapped in after the check must not block; O_NOFOLLOW: nor a link.
  int in = ::open(target->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (in < 0)
    fail(from, "cannot open: " + detail::errnoText(errno));
  struct stat opened;
  if (::fstat(in, &opened) != 0 || !S_ISREG(opened.st_mode) || opened.st_ino != st.st_ino ||
      opened.st_dev != st.st_dev) {
    ::close(in);
    return skip("it changed while being copied");
  }
  mode_t mode = opened.st_mode & 0777;
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (out < 0) {
    int err = errno;
    ::close(in);
    fail(to, "cannot create: " + detail::errnoText(err));
  }
  try {
    std::vector<char> buf(1u << 20);
    for (;;) {
      ssize_t r = ::read(in, buf.data(), buf.size());
      if (r < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (r < 0)
        fail(from, "read failed: " + detail::errnoText(errno));
      if (r == 0)
        break;
      detail::writeAll(out, buf.data(), static_cast<uint64_t>(r), to, "copy of " + name);
    }
    // The source's permission bits exactly (fchmod is not subject to the umask); set-id and
    // sticky bits are not carried over.
    if (::fchmod(out, mode) != 0)
      fail(to, "cannot set permissions: " + detail::errnoText(errno));
    detail::syncFd(out, to);
  } catch (...) {
    ::close(in);
    ::close(out);
    throw;
  }
  ::close(in);
  if (::close(out) != 0)
    fail(to, "close failed: " + detail::errnoText(errno));
  return SideFileResult::Copied;
}

} // namespace mergec::rt
