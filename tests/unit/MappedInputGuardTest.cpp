//===- MappedInputGuardTest.cpp - inputs changed while they are read -------===//
#include "mergec/Runtime/MappedInputGuard.h"
#include "mergec/Runtime/Events.h"
#include "TestUtil.h"
#include "mergec/Runtime/Safetensors.h"

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;

namespace {

/// A file of one U8 tensor spanning `pages` pages of data, so that truncating it to its header
/// leaves whole pages of the mapping past the end.
std::string writeModel(const TempDir &dir, size_t pages) {
  size_t bytes = pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::string path = dir.file("model.safetensors");
  writeFile(path, safetensorsImage(R"({"w":{"dtype":"U8","shape":[)" + std::to_string(bytes) +
                                       R"(],"data_offsets":[0,)" + std::to_string(bytes) + "]}}",
                                   std::string(bytes, '\x5a')));
  return path;
}

/// Sums every byte of the tensor: touches every page of its mapping.
unsigned touch(const TensorInfo &t) {
  unsigned sum = 0;
  for (uint64_t i = 0; i < t.nbytes; ++i)
    sum += reinterpret_cast<const volatile uint8_t *>(t.data)[i];
  return sum;
}

void reportCleanup() {
  const char text[] = "fatal cleanup ran\n";
  ssize_t ignored = ::write(STDERR_FILENO, text, sizeof text - 1);
  (void)ignored;
}

} // namespace

TEST(MappedInputGuardTest, ChangedFilesAreFoundBeforeTheirPagesAreRead) {
  TempDir dir;
  std::string path = writeModel(dir, 1);
  {
    auto f = SafetensorsFile::open(path);
    EXPECT_NO_THROW(f->checkUnchanged());
    ASSERT_EQ(::truncate(path.c_str(), 100), 0);
    EXPECT_EQ(errorOf([&] { f->checkUnchanged(); }),
              path + ": changed while mergec was reading it (now 100 bytes, " +
                  std::to_string(f->fileSize()) +
                  " when opened: truncated, or rewritten by a download?)");
  }
  path = writeModel(dir, 1);
  auto f = SafetensorsFile::open(path);
  // Rewritten in place with the same size: only the modification time tells.
  struct timespec later[2] = {{0, UTIME_OMIT}, {0, 0}};
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  later[1].tv_sec = st.st_mtim.tv_sec + 5;
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), later, 0), 0);
  EXPECT_EQ(errorOf([&] { f->checkUnchanged(); }),
            path + ": changed while mergec was reading it (modified after it was opened: "
                   "rewritten by a download?)");
}

TEST(MappedInputGuardDeathTest, SigbusInAMappedInputNamesTheFileAndExitsOne) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  std::string path = writeModel(dir, 4);
  // Truncated under a reader on another thread, as a kernel on the pool reads: the process
  // reports the file, runs the cleanup hook and exits 1 instead of dying of SIGBUS.
  EXPECT_EXIT(
      {
        auto f = SafetensorsFile::open(path);
        setFatalCleanup(reportCleanup);
        if (::truncate(path.c_str(), 64) != 0)
          std::abort();
        std::thread([&] { touch(f->tensors()[0]); }).join();
      },
      ::testing::ExitedWithCode(1),
      "mergec: error: .*/model.safetensors: changed while mergec was reading it \\(the file "
      "is now shorter than when it was opened: truncated, or rewritten by a download\\?\\)\n"
      "fatal cleanup ran");
}

TEST(MappedInputGuardDeathTest, SigbusWithJsonIsAnErrorEvent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  std::string path = writeModel(dir, 4);
  EXPECT_EXIT(
      {
        events().configure("mergec", true);
        auto f = SafetensorsFile::open(path);
        setFatalCleanup(reportCleanup);
        if (::truncate(path.c_str(), 64) != 0)
          std::abort();
        std::thread([&] { touch(f->tensors()[0]); }).join();
      },
      ::testing::ExitedWithCode(1),
      "^\\{\"event\":\"error\",\"t\":[0-9]+\\.[0-9][0-9][0-9],\"message\":\".*/"
      "model.safetensors: changed while mergec was reading it \\(the file is now shorter than "
      "when it was opened: truncated, or rewritten by a download\\?\\)\",\"file\":\".*/"
      "model.safetensors\"\\}\n"
      "fatal cleanup ran");
}

TEST(MappedInputGuardDeathTest, OtherSigbusKeepsItsDefaultAction) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  std::string path = writeModel(dir, 1);
  // A mapping that was closed is no longer ours to explain, nor is a SIGBUS sent by kill.
  EXPECT_EXIT(
      {
        SafetensorsFile::open(path);
        ::raise(SIGBUS);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}
