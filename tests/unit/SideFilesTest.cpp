//===- SideFilesTest.cpp - copying the base model's tokenizer and config --===//
#include "mergec/Runtime/SideFiles.h"
#include "TestUtil.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;

namespace {
mode_t modeOf(const std::string &path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}
} // namespace

TEST(SideFilesTest, RegularFilesAreCopiedWithTheirPermissions) {
  TempDir from, to;
  std::string warning;
  writeFile(from.file("config.json"), "{\"hidden_size\": 8}");
  ASSERT_EQ(::chmod(from.file("config.json").c_str(), 0640), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "config.json", warning), SideFileResult::Copied);
  EXPECT_EQ(readFile(to.file("config.json")), "{\"hidden_size\": 8}");
  EXPECT_EQ(modeOf(to.file("config.json")), 0640u);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "tokenizer.json", warning),
            SideFileResult::Absent);
  EXPECT_FALSE(pathExists(to.file("tokenizer.json")));
  // A large file survives the copy intact, and a read-only one stays read-only.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>(i % 251);
  writeFile(from.file("tokenizer.model"), big);
  ASSERT_EQ(::chmod(from.file("tokenizer.model").c_str(), 0444), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "tokenizer.model", warning),
            SideFileResult::Copied);
  EXPECT_EQ(readFile(to.file("tokenizer.model")), big);
  EXPECT_EQ(modeOf(to.file("tokenizer.model")), 0444u);
  // A link to a file inside the model directory is fine.
  ::mkdir(from.file("sub").c_str(), 0755);
  writeFile(from.file("sub/vocab.json"), "{}");
  ASSERT_EQ(::symlink("sub/vocab.json", from.file("vocab.json").c_str()), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "vocab.json", warning), SideFileResult::Copied);
  EXPECT_EQ(readFile(to.file("vocab.json")), "{}");
}

TEST(SideFilesTest, HuggingFaceCacheBlobsAreFollowed) {
  // models--org--name/snapshots/<rev>/tokenizer.json -> ../../blobs/<hash>
  TempDir cache, to;
  std::string repo = cache.file("models--org--name");
  for (std::string d : {repo, repo + "/blobs", repo + "/snapshots", repo + "/snapshots/abc"})
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  writeFile(repo + "/blobs/0123abcd", "tok");
  ASSERT_EQ(::symlink("../../blobs/0123abcd", (repo + "/snapshots/abc/tokenizer.json").c_str()),
            0);
  std::string warning;
  EXPECT_EQ(copySideFile(repo + "/snapshots/abc", to.path(), "tokenizer.json", warning),
            SideFileResult::Copied)
      << warning;
  EXPECT_EQ(readFile(to.file("tokenizer.json")), "tok");
}

TEST(SideFilesTest, AnythingElseIsSkippedWithAWarning) {
  TempDir from, outside, to;
  writeFile(outside.file("secret"), "private key");
  ASSERT_EQ(::chmod(outside.file("secret").c_str(), 0600), 0);
  std::string warning;
  // A link leading out of the model directory is not followed: its target would end up in
  // the output, world-readable.
  ASSERT_EQ(::symlink(outside.file("secret").c_str(), from.file("config.json").c_str()), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "config.json", warning), SideFileResult::Skipped);
  EXPECT_EQ(warning, from.file("config.json") + ": not copied into the output: it links to " +
                         outside.file("secret") + ", outside the model directory");
  EXPECT_FALSE(pathExists(to.file("config.json")));
  // A "blobs" directory that is not the snapshot's own does not count.
  ASSERT_EQ(::mkdir(outside.file("blobs").c_str(), 0755), 0);
  writeFile(outside.file("blobs/x"), "x");
  ASSERT_EQ(::symlink(outside.file("blobs/x").c_str(), from.file("merges.txt").c_str()), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "merges.txt", warning), SideFileResult::Skipped);
  // A dangling link, a directory, a FIFO (which would block an open forever) and a socket.
  ASSERT_EQ(::symlink(from.file("missing").c_str(), from.file("tokenizer.json").c_str()), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "tokenizer.json", warning),
            SideFileResult::Skipped);
  EXPECT_NE(warning.find("a link that leads nowhere"), std::string::npos) << warning;
  ::mkdir(from.file("vocab.json").c_str(), 0755);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "vocab.json", warning), SideFileResult::Skipped);
  EXPECT_NE(warning.find("not a regular file"), std::string::npos) << warning;
  ASSERT_EQ(::mkfifo(from.file("tokenizer.model").c_str(), 0644), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "tokenizer.model", warning),
            SideFileResult::Skipped);
  EXPECT_NE(warning.find("not a regular file"), std::string::npos) << warning;
  int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sockPath = from.file("added_tokens.json");
  ASSERT_LT(sockPath.size(), sizeof(addr.sun_path));
  std::copy(sockPath.begin(), sockPath.end(), addr.sun_path);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(copySideFile(from.path(), to.path(), "added_tokens.json", warning),
            SideFileResult::Skipped);
  ::close(sock);
  EXPECT_FALSE(pathExists(to.file("tokenizer.model")));
}
