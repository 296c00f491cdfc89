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
/// The smallest manifest mergec accepts as its own (the fields writeManifest always writes).
const char *kManifest = R"({"mergec_version": "0.1.0", "recipe": {"path": "r.merge"}, "tensors": 1})";

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
  {
    OutputDirectory first(out, false);
    writeFile(first.tempPath() + "/old.txt", "old");
    writeFile(first.tempPath() + "/" + kManifestName, kManifest);
    first.commit();
  }
  {
    OutputDirectory od(out, true);
    writeFile(od.tempPath() + "/new.txt", "new");
    EXPECT_TRUE(pathExists(out + "/old.txt")); // untouched until commit
    od.commit();
  }
  EXPECT_FALSE(pathExists(out + "/old.txt"));
  EXPECT_EQ(readFile(out + "/new.txt"), "new");
  // Nothing is left beside the output: no temporary, no moved-aside old copy, no lock file.
  int entries = 0;
  for (auto &e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "merged");
  }
  EXPECT_EQ(entries, 1);

  // An empty directory holds nothing to lose.
  std::string empty = dir.file("empty");
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  {
    OutputDirectory od(empty, true);
    od.commit();
  }
  EXPECT_TRUE(pathExists(empty));
}

TEST(OutputDirectoryTest, ForceRefusesWhatMergecDidNotWrite) {
  TempDir dir;
  // A user's directory, a plain file, a directory with a manifest that is not mergec's, and a
  // link to a mergec output: each is refused with the reason, and left exactly as it was.
  std::string userDir = dir.file("models");
  ASSERT_EQ(::mkdir(userDir.c_str(), 0755), 0);
  writeFile(userDir + "/model.safetensors", "weights");
  std::string message = errorOf([&] { OutputDirectory od(userDir, true); });
  EXPECT_EQ(message, userDir + ": --force replaces only a directory that mergec wrote (one "
                               "holding its mergec-manifest.json), and it has no "
                               "mergec-manifest.json; remove it yourself or choose another -o");
  EXPECT_EQ(readFile(userDir + "/model.safetensors"), "weights");

  std::string file = dir.file("notes.txt");
  writeFile(file, "x");
  message = errorOf([&] { OutputDirectory od(file, true); });
  EXPECT_NE(message.find("it is not a directory"), std::string::npos) << message;
  EXPECT_EQ(readFile(file), "x");

  std::string fake = dir.file("fake");
  ASSERT_EQ(::mkdir(fake.c_str(), 0755), 0);
  writeFile(fake + "/" + kManifestName, "{\"name\": \"something else\"}");
  message = errorOf([&] { OutputDirectory od(fake, true); });
  EXPECT_NE(message.find("is not one mergec wrote"), std::string::npos) << message;

  std::string real = dir.file("real");
  ASSERT_EQ(::mkdir(real.c_str(), 0755), 0);
  writeFile(real + "/" + kManifestName, kManifest);
  ASSERT_EQ(::symlink(real.c_str(), dir.file("link").c_str()), 0);
  message = errorOf([&] { OutputDirectory od(dir.file("link"), true); });
  EXPECT_NE(message.find("it is a symbolic link"), std::string::npos) << message;
  EXPECT_TRUE(pathExists(real + "/" + kManifestName));

  // Without --force nothing existing is replaced, mergec's own output included.
  message = errorOf([&] { OutputDirectory od(real, false); });
  EXPECT_NE(message.find("output already exists"), std::string::npos) << message;
  // No temporary or lock file is left by a refusal.
  for (auto &e : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".mergec-"), std::string::npos) << e.path();
}

TEST(OutputDirectoryTest, OutputNeverOverlapsAnInput) {
  TempDir dir;
  std::string models = dir.file("models"), base = models + "/base";
  ASSERT_EQ(::mkdir(models.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(base.c_str(), 0755), 0);
  writeFile(base + "/model.safetensors", "weights");
  writeFile(base + "/" + kManifestName, kManifest); // even a merged model used as an input
  writeFile(dir.file("recipe.merge"), "merge base");
  std::vector<ProtectedInput> inputs = {{"model 'base'", base},
                                        {"the recipe", dir.file("recipe.merge")}};
  ASSERT_EQ(::symlink(base.c_str(), dir.file("link-to-base").c_str()), 0);
  struct Case {
    std::string out, expected;
  };
  std::vector<Case> cases = {
      {base, "the output is model 'base'"},
      {base + "/", "the output is model 'base'"},
      {models + "/../models/base", "the output is model 'base'"},
      {dir.file("link-to-base"), "the output is model 'base'"},
      {models, "the output contains model 'base'"},
      {dir.path(), "the output contains model 'base'"},
      {base + "/merged", "the output lies inside model 'base'"},
      {dir.file("link-to-base") + "/sub", "the output lies inside model 'base'"},
      {dir.file("recipe.merge"), "the output is the recipe"},
  };
  for (const Case &c : cases) {
    for (bool force : {false, true}) {
      std::string message = errorOf([&] { OutputDirectory od(c.out, force, inputs); });
      EXPECT_NE(message.find(c.expected), std::string::npos) << c.out << ": " << message;
      EXPECT_NE(message.find("mergec never writes over or removes its inputs"), std::string::npos);
    }
  }
  EXPECT_EQ(readFile(base + "/model.safetensors"), "weights");
  EXPECT_FALSE(pathExists(base + "/merged"));
  // A sibling is fine.
  OutputDirectory ok(models + "/merged", false, inputs);
  ok.commit();
  EXPECT_TRUE(pathExists(models + "/merged"));
}

TEST(OutputDirectoryTest, InputsFoundLaterAreProtectedToo) {
  // A shard linked from a model directory into a previous merge: replacing that merge would
  // delete the shard, so protect() refuses it once the plan has opened the checkpoint.
  TempDir dir;
  std::string previous = dir.file("previous");
  ASSERT_EQ(::mkdir(previous.c_str(), 0755), 0);
  writeFile(previous + "/" + kManifestName, kManifest);
  writeFile(previous + "/shard.safetensors", "w");
  OutputDirectory od(previous, true, {});
  std::string message = errorOf([&] {
    od.protect({{"a file of model 'math'", previous + "/shard.safetensors"}});
  });
  EXPECT_NE(message.find("the output contains a file of model 'math'"), std::string::npos)
      << message;
}

TEST(OutputDirectoryTest, ForceWithoutExistingOutput) {
  TempDir dir;
  OutputDirectory od(dir.file("fresh"), true);
  od.commit();
  EXPECT_TRUE(pathExists(dir.file("fresh")));
}

TEST(OutputDirectoryTest, StaleTempsAreRemoved) {
  // The output's lock is held while the sweep runs, so no live run can own a temporary for
  // this output: leftovers of dead processes go, and so does one whose pid now belongs to
  // an unrelated live process (our parent here).
  TempDir dir;
  pid_t dead = deadPid();
  std::string stale = tempNameFor(dir, "merged", dead);
  ::mkdir(stale.c_str(), 0755);
  writeFile(stale + "/model.safetensors", "half");
  std::string reused = tempNameFor(dir, "merged", ::getppid());
  ::mkdir(reused.c_str(), 0755);
  std::string other = tempNameFor(dir, "other", dead);
  ::mkdir(other.c_str(), 0755);
  std::string notOurs = dir.file(".merged-tmp-12");
  ::mkdir(notOurs.c_str(), 0755);
  {
    OutputDirectory od(dir.file("merged"), false);
    EXPECT_FALSE(pathExists(stale));
    EXPECT_FALSE(pathExists(reused));
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
  // A second writer of the same output is refused at once by the lock, and does not disturb
  // the first.
  std::string message = errorOf([&] { OutputDirectory again(dir.file("merged"), false); });
  EXPECT_EQ(message, dir.file("merged") + ": another mergec run (pid " +
                         std::to_string(::getpid()) +
                         ") is writing this output; wait for it to finish or choose another -o");
  EXPECT_TRUE(pathExists(od.tempPath()));
}

TEST(OutputDirectoryTest, SecondProcessRefusedWhileTheFirstWrites) {
  TempDir dir;
  std::string out = dir.file("merged");
  OutputDirectory od(out, false);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      OutputDirectory again(out, true);
    } catch (const RuntimeError &e) {
      ::_exit(std::string(e.what()).find("another mergec run") != std::string::npos ? 0 : 1);
    }
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 2: no error";
  EXPECT_TRUE(pathExists(od.tempPath()));
  od.commit();
  // Once the first has finished, the lock is gone with it.
  OutputDirectory after(dir.file("next"), false);
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

