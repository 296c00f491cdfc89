//===- AtomicFileTest.cpp - files replaced whole or not at all ------------===//
#include "mergec/Runtime/AtomicFile.h"
#include "TestUtil.h"

#include <filesystem>
#include <gtest/gtest.h>
#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;

namespace {
/// Entries of `dir` other than `keep`: a temporary left behind would show here.
int strayEntries(const TempDir &dir, std::vector<std::string> keep) {
  int stray = 0;
  for (auto &e : std::filesystem::directory_iterator(dir.path()))
    if (std::find(keep.begin(), keep.end(), e.path().filename().string()) == keep.end())
      ++stray;
  return stray;
}
} // namespace

TEST(AtomicFileTest, WritesAndReplaces) {
  TempDir dir;
  std::string out = dir.file("kernels.ll");
  writeFileAtomically(out, "first", {});
  EXPECT_EQ(readFile(out), "first");
  ASSERT_EQ(::chmod(out.c_str(), 0600), 0);
  writeFileAtomically(out, "second", {});
  EXPECT_EQ(readFile(out), "second");
  struct stat st;
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u); // a replaced file keeps its permissions
  EXPECT_EQ(strayEntries(dir, {"kernels.ll"}), 0);
  // A link is followed: its target is replaced, the link stays a link.
  writeFile(dir.file("target"), "old");
  ASSERT_EQ(::symlink("target", dir.file("link").c_str()), 0);
  writeFileAtomically(dir.file("link"), "new", {});
  EXPECT_EQ(readFile(dir.file("target")), "new");
  ASSERT_EQ(::lstat(dir.file("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST(AtomicFileTest, RefusesInputsAndDirectories) {
  TempDir dir;
  std::string recipe = dir.file("recipe.merge");
  writeFile(recipe, "merge base");
  std::string models = dir.file("base");
  ::mkdir(models.c_str(), 0755);
  std::vector<ProtectedInput> inputs = {{"the recipe", recipe}, {"model 'base'", models}};
  std::string message = errorOf([&] { writeFileAtomically(recipe, "x", inputs); });
  EXPECT_NE(message.find("the output is the recipe"), std::string::npos) << message;
  message = errorOf([&] { writeFileAtomically(dir.path() + "/./recipe.merge", "x", inputs); });
  EXPECT_NE(message.find("the output is the recipe"), std::string::npos) << message;
  message = errorOf([&] { writeFileAtomically(models + "/out.ll", "x", inputs); });
  EXPECT_NE(message.find("the output lies inside model 'base'"), std::string::npos) << message;
  EXPECT_EQ(readFile(recipe), "merge base");
  message = errorOf([&] { writeFileAtomically(dir.path(), "x", {}); });
  EXPECT_NE(message.find("is a directory"), std::string::npos) << message;
}

TEST(AtomicFileTest, FailedWriteLeavesTheOldFileAndNoTemporary) {
  // A file size limit makes the temporary's write fail part-way, as a full disk would (EFBIG
  // instead of ENOSPC); it runs in a child so the limit does not outlive the test.
  TempDir dir;
  std::string out = dir.file("kernels.ll");
  writeFile(out, "old content");
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      writeFileAtomically(out, std::string(1 << 20, 'x'), {});
    } catch (const mergec::rt::RuntimeError &e) {
      ::_exit(std::string(e.what()).find(out + ": ") == 0 ? 0 : 1);
    }
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 2: no error";
  EXPECT_EQ(readFile(out), "old content");
  EXPECT_EQ(strayEntries(dir, {"kernels.ll"}), 0);

  // /dev/full, a character device, is written directly, and its ENOSPC reported.
  std::string message = errorOf([&] { writeFileAtomically("/dev/full", "bytes", {}); });
  EXPECT_NE(message.find("no space left on device"), std::string::npos) << message;
  // /dev/null is written, not replaced.
  writeFileAtomically("/dev/null", "bytes", {});
  struct stat st;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}
