//===- OutputDirectory.cpp - all-or-nothing output directories ------------===//
#include "mergec/Runtime/OutputDirectory.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <cerrno>
#include <csignal>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mergec::rt {

using detail::fail;
using detail::joinPath;

namespace {
constexpr const char *kTempTag = ".mergec-tmp-";
/// commit() moves a replaced output aside under this tag before deleting it.
constexpr const char *kOldTag = ".mergec-old-";

/// Temporaries this process has live. A temporary carrying our own pid that is not listed
/// here is a leftover of an earlier process that had the same pid (common in containers).
std::mutex liveMutex;
std::set<std::string> &liveTemps() {
  static std::set<std::string> set;
  return set;
}

void removeTree(const std::string &path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec); // best effort: callers cannot do better
}

bool exists(const std::string &path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

/// "a/b/out/" as path "a/b/out", parent "a/b", prefix "a/b/" and name "out". Siblings are
/// spelled prefix + entry, so a bare "out" keeps a bare ".out.mergec-tmp-PID".
struct PathParts {
  std::string path, parent, prefix, name;
};

PathParts splitPath(const std::string &path) {
  PathParts parts;
  parts.path = path;
  while (parts.path.size() > 1 && parts.path.back() == '/')
    parts.path.pop_back();
  auto slash = parts.path.find_last_of('/');
  if (slash == std::string::npos) {
    parts.parent = ".";
    parts.name = parts.path;
  } else {
    parts.parent = slash == 0 ? "/" : parts.path.substr(0, slash);
    parts.prefix = parts.path.substr(0, slash + 1);
    parts.name = parts.path.substr(slash + 1);
  }
  return parts;
}

/// The pid in "<prefix><digits>", or 0 when `entry` is not such a name.
pid_t pidSuffix(const std::string &entry, const std::string &prefix) {
  if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0)
    return 0;
  long long pid = 0;
  for (size_t i = prefix.size(); i < entry.size(); ++i) {
    char c = entry[i];
    if (c < '0' || c > '9' || pid > 1'000'000'000)
      return 0;
    pid = pid * 10 + (c - '0');
  }
  return static_cast<pid_t>(pid);
}

bool processIsDead(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

/// Removes `.<name>.mergec-tmp-<pid>` (and -old-) entries in `parent` whose process is gone.
void removeStaleTemps(const PathParts &parts) {
  DIR *dir = ::opendir(parts.parent.c_str());
  if (!dir)
    return;
  std::vector<std::string> stale;
  std::string prefixes[] = {"." + parts.name + kTempTag, "." + parts.name + kOldTag};
  while (dirent *e = ::readdir(dir)) {
    std::string entry = e->d_name;
    for (const std::string &prefix : prefixes) {
      pid_t pid = pidSuffix(entry, prefix);
      if (pid <= 0)
        continue;
      std::string full = parts.prefix + entry;
      bool ours = pid == ::getpid();
      std::lock_guard<std::mutex> lock(liveMutex);
      if ((ours && !liveTemps().count(full)) || (!ours && processIsDead(pid)))
        stale.push_back(full);
    }
  }
  ::closedir(dir);
  for (const std::string &path : stale)
    removeTree(path);
}

void checkParent(const std::string &finalPath, const std::string &parent) {
  struct stat st;
  if (::stat(parent.c_str(), &st) != 0) {
    if (errno == ENOENT)
      fail(finalPath, "cannot create the output: parent directory '" + parent + "' does not exist");
    fail(finalPath, "cannot create the output: parent directory '" + parent +
                        "': " + detail::errnoText(errno));
  }
  if (!S_ISDIR(st.st_mode))
    fail(finalPath, "cannot create the output: '" + parent + "' is not a directory");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    fail(finalPath, "cannot create the output: parent directory '" + parent + "' is not writable");
}
} // namespace

OutputDirectory::OutputDirectory(const std::string &finalPath, bool force) : force_(force) {
  PathParts parts = splitPath(finalPath);
  if (parts.name.empty() || parts.name == "." || parts.name == "..")
    fail(finalPath, "not a usable output directory name");
  final_ = parts.path;
  checkParent(final_, parts.parent);
  if (!force_ && exists(final_))
    fail(final_, "output already exists (use --force to replace it)");
  removeStaleTemps(parts);

  temp_ = parts.prefix + "." + parts.name + kTempTag + std::to_string(::getpid());
  std::lock_guard<std::mutex> lock(liveMutex);
  if (liveTemps().count(temp_))
    fail(final_, "output is already being written by this process");
  if (::mkdir(temp_.c_str(), 0755) != 0)
    fail(temp_, "cannot create the temporary output directory: " + detail::errnoText(errno));
  liveTemps().insert(temp_);
}

OutputDirectory::~OutputDirectory() {
  if (!committed_)
    removeTree(temp_);
  std::lock_guard<std::mutex> lock(liveMutex);
  liveTemps().erase(temp_);
}

void OutputDirectory::commit() {
  if (committed_)
    fail(final_, "output already committed");
  detail::syncPath(temp_);
  PathParts parts = splitPath(final_);

  // A non-empty directory cannot be renamed over, so an output being replaced is moved
  // aside first and put back if the final rename fails.
  std::string aside;
  if (exists(final_)) {
    if (!force_)
      fail(final_, "output already exists (use --force to replace it)");
    aside = parts.prefix + "." + parts.name + kOldTag + std::to_string(::getpid());
    removeTree(aside);
    if (::rename(final_.c_str(), aside.c_str()) != 0)
      fail(final_, "cannot move the existing output aside: " + detail::errnoText(errno));
  }
  if (::rename(temp_.c_str(), final_.c_str()) != 0) {
    int err = errno;
    if (!aside.empty())
      ::rename(aside.c_str(), final_.c_str());
    fail(final_, "cannot rename " + temp_ + " into place: " + detail::errnoText(err));
  }
  committed_ = true;
  if (!aside.empty())
    removeTree(aside);
  detail::syncPath(parts.parent);
}

bool copyFileIfExists(const std::string &fromDir, const std::string &toDir,
                      const std::string &name) {
  std::string from = joinPath(fromDir, name), to = joinPath(toDir, name);
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    if (errno == ENOENT)
      return false;
    fail(from, "cannot open: " + detail::errnoText(errno));
  }
  struct stat st;
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return false; // a directory or device under that name is not a file to copy
  }
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    int err = errno;
    ::close(in);
    fail(to, "cannot create: " + detail::errnoText(err));
  }
  try {
    std::vector<char> buf(1u << 20);
    for (;;) {
      ssize_t r = ::read(in, buf.data(), buf.size());
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        fail(from, "read failed: " + detail::errnoText(errno));
      if (r == 0)
        break;
      detail::writeAll(out, buf.data(), static_cast<uint64_t>(r), to, "copy of " + name);
    }
    detail::syncFd(out, to);
  } catch (...) {
    ::close(in);
    ::close(out);
    throw;
  }
  ::close(in);
  if (::close(out) != 0)
    fail(to, "close failed: " + detail::errnoText(errno));
  return true;
}

} // namespace mergec::rt
