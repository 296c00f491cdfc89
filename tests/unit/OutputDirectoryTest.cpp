//===- OutputDirectoryTest.cpp - all-or-nothing output directories --------===//
#include "mergec/Runtime/OutputDirectory.h"
#include "TestUtil.h"
#include "mergec/Runtime/Error.h"

#include <filesystem>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;

namespace {
std::string tempNameFor(const TempDir &dir, const std::string &name, long pid) {
  return dir.file("." + name + ".mergec-tmp-" + std::to_string(pid));
}

/// A pid that belonged to a process which has exited and been reaped.
pid_t deadPid() {
  pid_t pid = ::fork();
  if (pid == 0)
    ::_exit(0);
  int status;
  ::waitpid(pid, &status, 0);
  return pid;
}
} // namespace

TEST(OutputDirectoryTest, NothingAtTheFinalPathBeforeCommit) {
  TempDir dir;
  std::string out = dir.file("merged");
  OutputDirectory od(out, false);
  EXPECT_EQ(od.finalPath(), out);
  EXPECT_EQ(od.tempPath(), tempNameFor(dir, "merged", ::getpid()));
  struct stat st;
  ASSERT_EQ(::stat(od.tempPath().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  writeFile(od.tempPath() + "/model.safetensors", "data");
  EXPECT_FALSE(pathExists(out));
}

TEST(OutputDirectoryTest, TempRemovedWithoutCommit) {
  TempDir dir;
  std::string temp;
  {
    OutputDirectory od(dir.file("merged"), false);
    temp = od.tempPath();
    writeFile(temp + "/a.bin", "partial");
    ::mkdir((temp + "/sub").c_str(), 0755);
    writeFile(temp + "/sub/b.bin", "partial");
  }
  EXPECT_FALSE(pathExists(temp));
  EXPECT_FALSE(pathExists(dir.file("merged")));
}

TEST(OutputDirectoryTest, CommitRenamesIntoPlace) {
  TempDir dir;
  std::string out = dir.file("merged");
  std::string temp;
  {
    OutputDirectory od(out, false);
    temp = od.tempPath();
    writeFile(temp + "/model.safetensors", "weights");
    od.commit();
    EXPECT_NE(errorOf([&] { od.commit(); }).find("already committed"), std::string::npos);
  }
  EXPECT_FALSE(pathExists(temp));
  EXPECT_EQ(readFile(out + "/model.safetensors"), "weights");
}

TEST(OutputDirectoryTest, TrailingSlashAndRelativePaths) {
  TempDir dir;
  OutputDirectory od(dir.file("merged") + "//", false);
  EXPECT_EQ(od.finalPath(), dir.file("merged"));
  EXPECT_EQ(od.tempPath(), tempNameFor(dir, "merged", ::getpid()));

  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(::chdir(dir.path().c_str()), 0);
  {
    OutputDirectory bare("bare", false);
    EXPECT_EQ(bare.tempPath(), ".bare.mergec-tmp-" + std::to_string(::getpid()));
    bare.commit();
  }
  EXPECT_TRUE(pathExists(dir.file("bare")));
  ASSERT_EQ(::chdir(cwd), 0);
}

TEST(OutputDirectoryTest, ExistingPathRefusedWithoutForce) {
  TempDir dir;
  std::string out = dir.file("merged");
  ::mkdir(out.c_str(), 0755);
  writeFile(out + "/old.txt", "old");
  std::string message = errorOf([&] { OutputDirectory od(out, false); });
  EXPECT_NE(message.find(out + ": output already exists"), std::string::npos) << message;
  EXPECT_FALSE(pathExists(tempNameFor(dir, "merged", ::getpid())));
  EXPECT_EQ(readFile(out + "/old.txt"), "old");
}

TEST(OutputDirectoryTest, ExistingPathReplacedWithForce) {
  TempDir dir;
  std::string out = dir.file("merged");
  ::mkdir(out.c_str(), 0755);
  writeFile(out + "/old.txt", "old");
  {
    OutputDirectory od(out, true);
    writeFile(od.tempPath() + "/new.txt", "new");
    EXPECT_TRUE(pathExists(out + "/old.txt")); // untouched until commit
    od.commit();
  }
  EXPECT_FALSE(pathExists(out + "/old.txt"));
  EXPECT_EQ(readFile(out + "/new.txt"), "new");
  // Nothing is left beside the output: no temporary, no moved-aside old copy.
  int entries = 0;
  for (auto &e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "merged");
  }
  EXPECT_EQ(entries, 1);

  // A plain file in the way is replaced too.
  std::string fileOut = dir.file("as-file");
  writeFile(fileOut, "x");
  {
    OutputDirectory od(fileOut, true);
    od.commit();
  }
  struct stat st;
  ASSERT_EQ(::stat(fileOut.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST(OutputDirectoryTest, ForceWithoutExistingOutput) {
  TempDir dir;
  OutputDirectory od(dir.file("fresh"), true);
  od.commit();
  EXPECT_TRUE(pathExists(dir.file("fresh")));
}

TEST(OutputDirectoryTest, StaleTempsOfDeadProcessesAreRemoved) {
  TempDir dir;
  pid_t dead = deadPid();
  std::string stale = tempNameFor(dir, "merged", dead);
  ::mkdir(stale.c_str(), 0755);
  writeFile(stale + "/model.safetensors", "half");
  // A temp of a live process (our parent) and of another output must survive.
  std::string live = tempNameFor(dir, "merged", ::getppid());
  ::mkdir(live.c_str(), 0755);
  std::string other = tempNameFor(dir, "other", dead);
  ::mkdir(other.c_str(), 0755);
  std::string notOurs = dir.file(".merged.mergec-tmp-12x");
  ::mkdir(notOurs.c_str(), 0755);
  {
    OutputDirectory od(dir.file("merged"), false);
    EXPECT_FALSE(pathExists(stale));
    EXPECT_TRUE(pathExists(live));
    EXPECT_TRUE(pathExists(other));
    EXPECT_TRUE(pathExists(notOurs));
  }
}

TEST(OutputDirectoryTest, LeftoverWithOurOwnPidIsStale) {
  // An earlier process with the same pid (common in containers) left its temporary behind.
  TempDir dir;
  std::string leftover = tempNameFor(dir, "merged", ::getpid());
  ::mkdir(leftover.c_str(), 0755);
  writeFile(leftover + "/junk", "junk");
  OutputDirectory od(dir.file("merged"), false);
  EXPECT_EQ(od.tempPath(), leftover);
  EXPECT_FALSE(pathExists(leftover + "/junk"));
  // A second writer of the same output in this process is refused, and does not disturb
  // the first.
  std::string message = errorOf([&] { OutputDirectory again(dir.file("merged"), false); });
  EXPECT_NE(message.find("already being written by this process"), std::string::npos) << message;
  EXPECT_TRUE(pathExists(od.tempPath()));
}

TEST(OutputDirectoryTest, ParentMustExistAndBeWritable) {
  TempDir dir;
  std::string missingParent = dir.file("no/such/parent/out");
  std::string message = errorOf([&] { OutputDirectory od(missingParent, false); });
  EXPECT_NE(message.find(missingParent + ": cannot create the output: parent directory '" +
                         dir.file("no/such/parent") + "' does not exist"),
            std::string::npos)
      << message;

  writeFile(dir.file("plain"), "x");
  message = errorOf([&] { OutputDirectory od(dir.file("plain/out"), false); });
  EXPECT_NE(message.find("is not a directory"), std::string::npos) << message;

  message = errorOf([&] { OutputDirectory od(dir.file(".."), false); });
  EXPECT_NE(message.find("not a usable output directory name"), std::string::npos) << message;
}

TEST(OutputDirectoryTest, ParentMustBeWritable) {
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  std::string locked = dir.file("locked");
  ASSERT_EQ(::mkdir(locked.c_str(), 0555), 0);
  // Root may write anywhere, so the check runs in a child that drops to an unprivileged uid.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 && ::setuid(65534) != 0)
      ::_exit(3);
    try {
      OutputDirectory od(locked + "/out", false);
    } catch (const RuntimeError &e) {
      std::string expected = locked + "/out: cannot create the output: parent directory '" +
                             locked + "' is not writable";
      ::_exit(std::string(e.what()) == expected ? 0 : 1);
    }
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 2: no error, 3: setuid failed";
}

TEST(OutputDirectoryTest, CopyFileIfExists) {
  TempDir from, to;
  writeFile(from.file("config.json"), "{\"hidden_size\": 8}");
  EXPECT_TRUE(copyFileIfExists(from.path(), to.path(), "config.json"));
  EXPECT_EQ(readFile(to.file("config.json")), "{\"hidden_size\": 8}");
  EXPECT_FALSE(copyFileIfExists(from.path(), to.path(), "tokenizer.json"));
  EXPECT_FALSE(pathExists(to.file("tokenizer.json")));
  // Hugging Face caches hold symlinks into a blob store: the content is copied.
  writeFile(from.file("blob"), "tok");
  ASSERT_EQ(::symlink(from.file("blob").c_str(), from.file("tokenizer.json").c_str()), 0);
  EXPECT_TRUE(copyFileIfExists(from.path(), to.path(), "tokenizer.json"));
  EXPECT_EQ(readFile(to.file("tokenizer.json")), "tok");
  // A large file survives the copy intact.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i % 251);
  writeFile(from.file("big.bin"), big);
  EXPECT_TRUE(copyFileIfExists(from.path(), to.path(), "big.bin"));
  EXPECT_EQ(readFile(to.file("big.bin")), big);
  // A directory under the name is not a file to copy.
  ::mkdir(from.file("subdir").c_str(), 0755);
  EXPECT_FALSE(copyFileIfExists(from.path(), to.path(), "subdir"));
}
