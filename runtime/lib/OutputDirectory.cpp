//===- OutputDirectory.cpp - all-or-nothing output directories ------------===//
#include "mergec/Runtime/OutputDirectory.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Journal.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace mergec::rt {

using detail::fail;

namespace {
constexpr const char *kTempTag = ".mergec-tmp-";
/// commit() moves a replaced output aside under this tag before deleting it.
constexpr const char *kOldTag = ".mergec-old-";
constexpr const char *kLockTag = ".mergec-lock";
/// A manifest embeds the recipe's text; real ones are kilobytes.
constexpr off_t kMaxManifestBytes = 64 << 20;

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

/// Removes `.<name>.mergec-tmp-*` and `.<name>.mergec-old-*` entries in `parent` that this
/// process does not own. Called with the output's lock held, so no other live mergec run can
/// own one: whatever is there was left by a run that died (SIGKILL, power loss), whether or
/// not its pid has been reused since.
/// With `keep`, the temporary with the newest journal is not removed but returned (its tensors
/// are not counted in `removedProgress`).
std::string removeStaleTemps(const PathParts &parts, bool keep, size_t &removedProgress) {
  DIR *dir = ::opendir(parts.parent.c_str());
  if (!dir)
    return "";
  std::vector<std::string> stale;
  std::string prefixes[] = {"." + parts.name + kTempTag, "." + parts.name + kOldTag};
  while (dirent *e = ::readdir(dir)) {
    std::string entry = e->d_name;
    for (const std::string &prefix : prefixes) {
      if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0)
        continue;
      std::string full = parts.prefix + entry;
      if (!isTemporaryOfThisProcess(full))
        stale.push_back(full);
    }
  }
  ::closedir(dir);
  std::string kept;
  struct timespec newest = {};
  std::map<std::string, size_t> progress;
  for (const std::string &path : stale) {
    if (path.find(kTempTag) == std::string::npos)
      continue;
    std::string journal = detail::joinPath(path, kJournalName);
    JournalContents c = readJournal(journal);
    if (c.header.is_null())
      continue;
    progress[path] = c.entries.size();
    struct stat st;
    if (keep && ::lstat(journal.c_str(), &st) == 0 &&
        (kept.empty() || st.st_mtim.tv_sec > newest.tv_sec ||
         (st.st_mtim.tv_sec == newest.tv_sec && st.st_mtim.tv_nsec > newest.tv_nsec))) {
      kept = path;
      newest = st.st_mtim;
    }
  }
  for (const std::string &path : stale) {
    if (path == kept)
      continue;
    removedProgress = std::max(removedProgress, progress[path]);
    removeTree(path);
  }
  return kept;
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

bool isEmptyDirectory(const std::string &path) {
  DIR *dir = ::opendir(path.c_str());
  if (!dir)
    return false;
  bool empty = true;
  while (dirent *e = ::readdir(dir))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  ::closedir(dir);
  return empty;
}
} // namespace

bool isMergecOutput(const std::string &dir, std::string *why) {
  auto no = [&](std::string reason) {
    if (why)
      *why = std::move(reason);
    return false;
  };
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0)
    return no("it cannot be read: " + detail::errnoText(errno));
  if (S_ISLNK(st.st_mode))
    return no("it is a symbolic link");
  if (!S_ISDIR(st.st_mode))
    return no("it is not a directory");
  std::string manifest = detail::joinPath(dir, kManifestName);
  if (::lstat(manifest.c_str(), &st) != 0)
    return no(std::string("it has no ") + kManifestName);
  if (!S_ISREG(st.st_mode))
    return no(std::string("its ") + kManifestName + " is not a regular file");
  if (st.st_size > kMaxManifestBytes)
    return no(std::string("its ") + kManifestName + " is too large to be mergec's");
  // O_NONBLOCK and O_NOFOLLOW: what was a regular file a moment ago must not turn into a
  // FIFO that blocks or a link that points elsewhere.
  int fd = ::open(manifest.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return no(std::string("its ") + kManifestName + " cannot be read");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  ssize_t got = ::pread(fd, text.data(), text.size(), 0);
  ::close(fd);
  if (got != static_cast<ssize_t>(text.size()))
    return no(std::string("its ") + kManifestName + " cannot be read");
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("mergec_version") ||
      !json["mergec_version"].is_string() || !json.contains("recipe") ||
      !json["recipe"].is_object() || !json.contains("tensors"))
    return no(std::string("its ") + kManifestName + " is not one mergec wrote");
  return true;
}

OutputDirectory::OutputDirectory(const std::string &finalPath, bool force,
                                 const std::vector<ProtectedInput> &inputs, bool resume)
    : force_(force) {
  PathParts parts = splitPath(finalPath);
  if (parts.name.empty() || parts.name == "." || parts.name == "..")
    fail(finalPath, "not a usable output directory name");
  final_ = parts.path;
  checkParent(final_, parts.parent);
  checkOutputAgainstInputs(final_, inputs);
  acquireLock(parts.prefix + "." + parts.name + kLockTag);
  checkReplaceable();
  resumable_ = removeStaleTemps(parts, resume, removedProgress_);

  temp_ = parts.prefix + "." + parts.name + kTempTag + std::to_string(::getpid());
  // Registered before it exists: a signal between the two would otherwise leave it behind.
  tempGuard_.emplace(temp_);
  if (::mkdir(temp_.c_str(), 0755) != 0)
    fail(temp_, "cannot create the temporary output directory: " + detail::errnoText(errno));
}

OutputDirectory::OutputDirectory(Joined, const std::string &finalPath, const std::string &tempPath)
    : final_(splitPath(finalPath).path), temp_(tempPath), joined_(true) {
  struct stat st;
  if (::stat(temp_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail(temp_, "the temporary output directory of the first process is not here (is the "
                "output on a filesystem every process shares?)");
}

OutputDirectory::~OutputDirectory() {
  if (!committed_ && !temp_.empty() && !joined_)
    removeTree(temp_);
}

OutputDirectory::Lock::~Lock() {
  // Unlinked while still locked: a run that opened the old file re-checks the inode after
  // its flock succeeds and starts over (acquireLock).
  ::unlink(guard_.path().c_str());
  ::close(fd_);
}

void OutputDirectory::acquireLock(const std::string &lockPath) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
      fail(lockPath, "cannot create the output's lock file: " + detail::errnoText(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      char pid[32] = {};
      ssize_t n = ::pread(fd, pid, sizeof(pid) - 1, 0);
      ::close(fd);
      if (err == EWOULDBLOCK) {
        std::string who = n > 0 ? " (pid " + std::string(pid, static_cast<size_t>(n)) + ")" : "";
        fail(final_, "another mergec run" + who + " is writing this output; wait for it to "
                     "finish or choose another -o");
      }
      fail(lockPath, "cannot lock: " + detail::errnoText(err));
    }
    struct stat held, named;
    if (::fstat(fd, &held) == 0 && ::stat(lockPath.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      std::string pid = std::to_string(::getpid());
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
        // Only a message suffers: the lock itself is held.
      }
      lock_.emplace(fd, lockPath);
      return;
    }
    ::close(fd); // the file was unlinked by the run that just finished: lock the new one
  }
  fail(lockPath, "cannot lock the output: the lock file keeps changing");
}

void OutputDirectory::checkReplaceable() const {
  struct stat st;
  if (::lstat(final_.c_str(), &st) != 0)
    return;
  if (!force_)
    fail(final_, "output already exists (use --force to replace a previous mergec output)");
  if (S_ISDIR(st.st_mode) && isEmptyDirectory(final_))
    return; // nothing to lose
  std::string why;
  if (!isMergecOutput(final_, &why))
    fail(final_, "--force replaces only a directory that mergec wrote (one holding its " +
                     std::string(kManifestName) + "), and " + why + "; remove it yourself or "
                     "choose another -o");
}

void OutputDirectory::adopt() {
  if (joined_)
    fail(final_, "internal: adopt() in a joined output");
  if (resumable_.empty())
    fail(final_, "internal: nothing to resume");
  // rename(2) replaces an empty directory atomically; a signal after it removes the adopted
  // directory as it would have removed this run's own.
  if (::rename(resumable_.c_str(), temp_.c_str()) != 0)
    fail(resumable_, "cannot take over the unfinished output: " + detail::errnoText(errno));
  resumable_.clear();
}

void OutputDirectory::protect(const std::vector<ProtectedInput> &inputs) const {
  checkOutputAgainstInputs(final_, inputs);
}

void OutputDirectory::commit() {
  if (committed_)
    fail(final_, "output already committed");
  if (joined_)
    fail(final_, "internal: commit() in a joined output");
  detail::syncPath(temp_);
  PathParts parts = splitPath(final_);

  // A non-empty directory cannot be renamed over, so an output being replaced is moved
  // aside first and put back if the final rename fails. A signal waits until both renames
  // are done, so the user never finds the old output gone and the new one missing.
  std::optional<TemporaryPath> asideGuard;
  std::string aside;
  {
    auto hold = holdOffInterruptCleanup();
    if (exists(final_)) {
      checkReplaceable(); // it may have changed since the run started
      aside = parts.prefix + "." + parts.name + kOldTag + std::to_string(::getpid());
      removeTree(aside);
      if (::rename(final_.c_str(), aside.c_str()) != 0)
        fail(final_, "cannot move the existing output aside: " + detail::errnoText(errno));
      asideGuard.emplace(aside);
    }
    if (::rename(temp_.c_str(), final_.c_str()) != 0) {
      int err = errno;
      if (!aside.empty() && ::rename(aside.c_str(), final_.c_str()) == 0)
        asideGuard.reset(); // back in place: the user's again
      fail(final_, "cannot rename " + temp_ + " into place: " + detail::errnoText(err));
    }
    committed_ = true;
    tempGuard_.reset();
  }
  if (!aside.empty())
    removeTree(aside);
  detail::syncPath(parts.parent);
}

} // namespace mergec::rt
