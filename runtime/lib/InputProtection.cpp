//===- InputProtection.cpp - outputs never overlap what mergec reads ------===//
#include "mergec/Runtime/InputProtection.h"
#include "mergec/Runtime/Error.h"

#include <filesystem>
#include <optional>
#include <sys/stat.h>

namespace mergec::rt {

namespace fs = std::filesystem;

namespace {

/// `path` made absolute with every symlink in its existing part resolved and `.`/`..`
/// folded; the part that does not exist yet is folded lexically.
fs::path resolve(const std::string &path) {
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec)
    return fs::path(path).lexically_normal();
  fs::path resolved = fs::weakly_canonical(absolute, ec);
  if (ec)
    return absolute.lexically_normal();
  // weakly_canonical keeps a trailing separator ("out/" -> "/x/out/"): drop it so that
  // component comparisons see "out" and not an empty last component.
  std::string text = resolved.string();
  while (text.size() > 1 && text.back() == '/')
    text.pop_back();
  return text;
}

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId &other) const { return dev == other.dev && ino == other.ino; }
};

std::optional<FileId> idOf(const fs::path &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

/// `path` and each of its existing ancestors, by identity: catches the same directory reached
/// through a bind mount or a second mount point, which path comparison alone cannot see.
std::vector<FileId> selfAndAncestors(fs::path path) {
  std::vector<FileId> ids;
  for (;;) {
    if (auto id = idOf(path))
      ids.push_back(*id);
    if (!path.has_relative_path())
      return ids;
    path = path.parent_path();
  }
}

[[noreturn]] void refuse(const std::string &output, const char *relation,
                         const ProtectedInput &input, const fs::path &resolved) {
  std::string where = input.path;
  if (resolved.string() != input.path)
    where += " -> " + resolved.string();
  throw RuntimeError("-o " + output + ": the output " + relation + " " + input.what + " (" + where +
                     "); mergec never writes over or removes its inputs");
}

} // namespace

bool pathWithin(const fs::path &inner, const fs::path &outer) {
  auto i = inner.begin(), o = outer.begin();
  for (; o != outer.end(); ++o, ++i)
    if (i == inner.end() || *i != *o)
      return false;
  return true;
}

void checkOutputAgainstInputs(const std::string &output,
                              const std::vector<ProtectedInput> &inputs) {
  fs::path out = resolve(output);
  std::vector<FileId> outChain = selfAndAncestors(out);
  std::optional<FileId> outId = idOf(out);
  for (const ProtectedInput &input : inputs) {
    fs::path in = resolve(input.path);
    if (in == out)
      refuse(output, "is", input, in);
    if (pathWithin(in, out))
      refuse(output, "contains", input, in);
    if (pathWithin(out, in))
      refuse(output, "lies inside", input, in);
    std::optional<FileId> inId = idOf(in);
    if (inId && outId && *inId == *outId)
      refuse(output, "is", input, in);
    if (outId)
      for (const FileId &id : selfAndAncestors(in))
        if (id == *outId)
          refuse(output, "contains", input, in);
    if (inId)
      for (const FileId &id : outChain)
        if (id == *inId)
          refuse(output, "lies inside", input, in);
  }
}

} // namespace mergec::rt
