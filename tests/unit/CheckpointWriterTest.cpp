//===- CheckpointWriterTest.cpp - writer -> reader round trips and sharding -===//
#include "mergec/Runtime/CheckpointWriter.h"
#include "Support.h" // runtime/lib internals: writeAll
#include "TestUtil.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Safetensors.h"

#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;

namespace {

/// `n` bytes of a recognizable pattern seeded by `seed`.
std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 131 + seed * 17 + (i >> 8)) & 0xFF);
  return s;
}

template <typename T> std::string bytesOf(const std::vector<T> &values) {
  return std::string(reinterpret_cast<const char *>(values.data()), values.size() * sizeof(T));
}

std::string tensorBytes(const TensorInfo &t) {
  return std::string(reinterpret_cast<const char *>(t.data), t.nbytes);
}

/// A U8 tensor spec of `n` bytes.
OutputTensorSpec u8(const std::string &name, int64_t n) { return {name, DType::U8, {n}}; }

/// Writes every spec with its pattern() bytes and finishes.
std::vector<std::string> writeAllTensors(CheckpointWriter &writer) {
  std::vector<std::string> data;
  for (size_t i = 0; i < writer.tensors().size(); ++i) {
    data.push_back(pattern(writer.tensors()[i].nbytes(), static_cast<unsigned>(i)));
    writer.write(i, data.back().data(), data.back().size());
  }
  writer.finish();
  return data;
}

uint64_t headerLength(const std::string &file) {
  std::string bytes = readFile(file);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i)
    len = (len << 8) | static_cast<unsigned char>(bytes[i]);
  return len;
}

/// Two output directories hold the same shards `names` and the same index, byte for byte.
void expectSameCheckpoint(const std::vector<std::string> &names, const TempDir &a,
                          const TempDir &b) {
  for (const std::string &name : names)
    EXPECT_EQ(readFile(a.file(name)), readFile(b.file(name))) << name;
  EXPECT_EQ(readFile(a.file("model.safetensors.index.json")),
            readFile(b.file("model.safetensors.index.json")));
}

} // namespace

TEST(CheckpointWriterTest, NbytesIsShapeTimesElementSize) {
  EXPECT_EQ((OutputTensorSpec{"a", DType::BF16, {3, 5}}.nbytes()), 30u);
  EXPECT_EQ((OutputTensorSpec{"a", DType::I64, {}}.nbytes()), 8u);
  EXPECT_EQ((OutputTensorSpec{"a", DType::F32, {4, 0}}.nbytes()), 0u);
}

TEST(CheckpointWriterTest, RoundTripsEveryDTypeExactly) {
  TempDir dir;
  std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
  // bf16 and f16 are raw bit patterns: 1.0, -2.0, +inf, NaN, smallest subnormal, -0.
  std::vector<uint16_t> bf16 = {0x3F80, 0xC000, 0x7F80, 0x7FC1, 0x0001, 0x8000};
  std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7C00, 0x7E01};
  std::vector<int64_t> i64 = {0, -1, INT64_MAX, INT64_MIN, 42};
  std::vector<OutputTensorSpec> specs = {{"model.embed.weight", DType::F32, {2, 3}},
                                         {"layers.0.bf", DType::BF16, {3, 2}},
                                         {"layers.0.half", DType::F16, {4}},
                                         {"counts", DType::I64, {5}}};
  std::vector<std::string> data = {bytesOf(f32), bytesOf(bf16), bytesOf(f16), bytesOf(i64)};
  CheckpointWriter writer(dir.path(), specs, 1u << 30, {{"merged_by", "mergec"}});
  EXPECT_EQ(writer.shardFileNames(), (std::vector<std::string>{"model.safetensors"}));
  for (size_t i = 0; i < specs.size(); ++i)
    writer.write(i, data[i].data(), data[i].size());
  writer.finish();

  EXPECT_FALSE(pathExists(dir.file("model.safetensors.index.json")));
  std::string file = dir.file("model.safetensors");
  EXPECT_EQ(headerLength(file) % 8, 0u);
  auto f = SafetensorsFile::open(file);
  EXPECT_EQ(f->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"merged_by", "mergec"}}));
  ASSERT_EQ(f->tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo &t = f->tensors()[i]; // offset order == write order
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.dtype, specs[i].dtype);
    EXPECT_EQ(t.shape, specs[i].shape);
    EXPECT_EQ(tensorBytes(t), data[i]) << t.name;
  }
  EXPECT_EQ(f->tensors()[0].offset, 8 + headerLength(file));
  EXPECT_EQ(f->fileSize(), 8 + headerLength(file) + 24 + 12 + 8 + 40);
}

TEST(CheckpointWriterTest, CallerFormatMetadataIsKept) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), {u8("a", 3)}, 100, {{"format", "np"}});
  writeAllTensors(writer);
  EXPECT_EQ(SafetensorsFile::open(dir.file("model.safetensors"))->metadata().at("format"), "np");
}

TEST(CheckpointWriterTest, FiftyThousandTensorsInLinearTime) {
  // The header was an ordered_json object, which finds every new key by a linear search:
  // 50,000 tensors took 3 s of a merge that copies 200 KB, a million would take hours.
  constexpr int kTensors = 50'000;
  TempDir dir;
  std::vector<OutputTensorSpec> specs;
  for (int i = 0; i < kTensors; ++i)
    specs.push_back(u8("model.layers." + std::to_string(i) + ".weight", 1));
  auto start = std::chrono::steady_clock::now();
  CheckpointWriter writer(dir.path(), specs, 1u << 30, {{"merged_by", "mergec"}});
  for (int i = 0; i < kTensors; ++i) {
    char byte = static_cast<char>(i);
    writer.write(i, &byte, 1);
  }
  writer.finish();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto f = SafetensorsFile::open(dir.file("model.safetensors"));
  ASSERT_EQ(f->tensors().size(), static_cast<size_t>(kTensors));
  // In file order, __metadata__ first, each entry's keys as before.
  std::string header = readFile(dir.file("model.safetensors")).substr(8, 200);
  EXPECT_EQ(header.rfind(R"({"__metadata__":{"merged_by":"mergec","format":"pt"},)"
                         R"("model.layers.0.weight":{"dtype":"U8","shape":[1],)"
                         R"("data_offsets":[0,1]},"model.layers.1.weight":)",
                         0),
            0u)
      << header;
  EXPECT_EQ(tensorBytes(*f->find("model.layers.12345.weight")), std::string(1, char(12345 & 0xFF)));
  EXPECT_LT(seconds, 5.0); // generous for a loaded or sanitizer build: it takes ~0.1 s
}

TEST(CheckpointWriterTest, ShardsPackInOrderUpToTheShardSize) {
  TempDir dir;
  // 100 + 100 + 50 = 250 fits exactly (not past 250); the next 100 starts shard 2.
  std::vector<OutputTensorSpec> specs = {u8("t0", 100), u8("t1", 100), u8("t2", 50), u8("t3", 100),
                                         u8("t4", 100)};
  CheckpointWriter writer(dir.path(), specs, 250);
  std::vector<std::string> expected = {"model-00001-of-00002.safetensors",
                                       "model-00002-of-00002.safetensors"};
  EXPECT_EQ(writer.shardFileNames(), expected);
  auto data = writeAllTensors(writer);

  auto s1 = SafetensorsFile::open(dir.file(expected[0]));
  auto s2 = SafetensorsFile::open(dir.file(expected[1]));
  ASSERT_EQ(s1->tensors().size(), 3u);
  ASSERT_EQ(s2->tensors().size(), 2u);
  EXPECT_EQ(s1->tensors()[2].name, "t2");
  EXPECT_EQ(s2->tensors()[0].name, "t3");
  EXPECT_EQ(s1->metadata().at("format"), "pt");
  EXPECT_EQ(s2->metadata().at("format"), "pt");
  EXPECT_FALSE(pathExists(dir.file("model.safetensors")));

  auto index = nlohmann::json::parse(readFile(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 450);
  nlohmann::json weightMap = {{"t0", expected[0]},
                              {"t1", expected[0]},
                              {"t2", expected[0]},
                              {"t3", expected[1]},
                              {"t4", expected[1]}};
  EXPECT_EQ(index["weight_map"], weightMap);

  // The reader sees the same model through the index.
  auto ckpt = Checkpoint::open(dir.path());
  ASSERT_EQ(ckpt->tensors().size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(ckpt->tensors()[i]->name, specs[i].name);
    EXPECT_EQ(tensorBytes(*ckpt->tensors()[i]), data[i]);
  }
}

TEST(CheckpointWriterTest, TensorLargerThanTheShardSizeGetsItsOwnShard) {
  TempDir dir;
  std::vector<OutputTensorSpec> specs = {u8("small", 10), u8("huge", 1000), u8("tail", 10),
                                         u8("tail2", 10)};
  CheckpointWriter writer(dir.path(), specs, 64);
  ASSERT_EQ(writer.shardFileNames(),
            (std::vector<std::string>{"model-00001-of-00003.safetensors",
                                      "model-00002-of-00003.safetensors",
                                      "model-00003-of-00003.safetensors"}));
  auto data = writeAllTensors(writer);
  auto huge = SafetensorsFile::open(dir.file("model-00002-of-00003.safetensors"));
  ASSERT_EQ(huge->tensors().size(), 1u);
  EXPECT_EQ(tensorBytes(huge->tensors()[0]), data[1]);
  auto last = SafetensorsFile::open(dir.file("model-00003-of-00003.safetensors"));
  EXPECT_EQ(last->tensors().size(), 2u);
  auto index = nlohmann::json::parse(readFile(dir.file("model.safetensors.index.json")));
  EXPECT_EQ(index["metadata"]["total_size"], 1030);
  EXPECT_EQ(index["weight_map"]["huge"], "model-00002-of-00003.safetensors");
}

TEST(CheckpointWriterTest, LargeTensorSpanningManyWriteBlocks) {
  TempDir dir;
  // 20 MiB: more than two 8 MiB write blocks, with a partial last one.
  const int64_t n = (20 << 20) + 5;
  CheckpointWriter writer(dir.path(), {u8("big", n)}, 1ull << 40);
  auto data = writeAllTensors(writer);
  auto f = SafetensorsFile::open(dir.file("model.safetensors"));
  EXPECT_EQ(tensorBytes(f->tensors()[0]), data[0]);
}

TEST(CheckpointWriterTest, PiecesMakeTheFilesOfWholeWrites) {
  // A tensor streamed in windows (the executor's map phase) is the bytes of one written whole:
  // 70 MiB in uneven pieces crosses the 32 MiB write-back ranges twice, with tensors around it
  // and shard boundaries around it.
  std::vector<OutputTensorSpec> specs{u8("a", 1000), u8("big", (70 << 20) + 3), u8("c", 7),
                                      u8("d", 5000)};
  TempDir whole, pieces;
  CheckpointWriter reference(whole.path(), specs, (70 << 20) + 1000);
  auto data = writeAllTensors(reference);
  CheckpointWriter writer(pieces.path(), specs, (70 << 20) + 1000);
  ASSERT_EQ(writer.shardCount(), 3u);
  writer.writePiece(0, data[0].data(), data[0].size());
  const std::string &big = data[1];
  size_t at = 0;
  for (size_t piece : {size_t(1), size_t(8) << 20, size_t(40) << 20, size_t(3), size_t(0)}) {
    writer.writePiece(1, big.data() + at, piece);
    at += piece;
  }
  writer.writePiece(1, big.data() + at, big.size() - at);
  writer.writePiece(2, data[2].data(), 3);
  writer.writePiece(2, data[2].data() + 3, 4);
  writer.write(3, data[3].data(), data[3].size());
  writer.finish();
  expectSameCheckpoint(writer.shardFileNames(), pieces, whole);
}

TEST(CheckpointWriterTest, PieceMisuseIsReported) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), {u8("a", 4), u8("b", 4)}, 100);
  std::string four = "abcd";
  writer.writePiece(0, four.data(), 3);
  // The rest of a tensor comes before the next, and no more than the tensor holds.
  EXPECT_NE(errorOf([&] { writer.writePiece(1, four.data(), 4); })
                .find("tensor 'b' written out of order (index 1, expected 0)"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { writer.writePiece(0, four.data(), 2); })
                .find("tensor 'a': got 5 bytes, expected 4"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { writer.write(0, four.data(), 4); })
                .find("tensor 'a' written whole after 3 of its bytes came in pieces"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { writer.finish(); })
                .find("output incomplete: 0 of 2 tensors written (and 3 bytes of tensor 'a')"),
            std::string::npos);
}

TEST(CheckpointWriterTest, EmptyModelAndZeroSizeTensors) {
  TempDir dir;
  CheckpointWriter empty(dir.path(), {}, 100);
  empty.finish();
  EXPECT_TRUE(SafetensorsFile::open(dir.file("model.safetensors"))->tensors().empty());

  TempDir dir2;
  CheckpointWriter writer(dir2.path(), {u8("a", 4), {"z", DType::F32, {0, 3}}, u8("b", 4)}, 100);
  writeAllTensors(writer);
  auto f = SafetensorsFile::open(dir2.file("model.safetensors"));
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->find("z")->nbytes, 0u);
  EXPECT_EQ(f->find("z")->shape, (std::vector<int64_t>{0, 3}));
}

TEST(CheckpointWriterTest, MisuseIsReported) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), {u8("a", 4), u8("b", 4)}, 100);
  std::string four = "abcd";
  EXPECT_NE(
      errorOf([&] { writer.write(1, four.data(), 4); }).find("tensor 'b' written out of order"),
      std::string::npos);
  EXPECT_NE(
      errorOf([&] { writer.write(0, four.data(), 3); }).find("tensor 'a': got 3 bytes, expected 4"),
      std::string::npos);
  EXPECT_NE(errorOf([&] { writer.write(7, four.data(), 4); }).find("out of range"),
            std::string::npos);
  writer.write(0, four.data(), 4);
  EXPECT_NE(errorOf([&] { writer.finish(); }).find("1 of 2 tensors written"), std::string::npos);

  EXPECT_NE(errorOf([&] {
              CheckpointWriter(dir.path(), {u8("a", 1), u8("a", 1)}, 100);
            }).find("cannot write tensor 'a' twice"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              CheckpointWriter(dir.path(), {{"n", DType::F32, {2, -3}}}, 100);
            }).find("tensor 'n': shape dimension -3 is negative"),
            std::string::npos);
  EXPECT_NE(
      errorOf([&] { CheckpointWriter(dir.path(), {u8("__metadata__", 1)}, 100); }).find("reserved"),
      std::string::npos);
  EXPECT_NE(errorOf([&] { CheckpointWriter(dir.path(), {u8("a", 1)}, 0); }).find("shard size"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              CheckpointWriter(dir.path(), {u8("bad\xFF", 1)}, 100);
            }).find(dir.path() + ": cannot build a safetensors header"),
            std::string::npos);
}

TEST(CheckpointWriterTest, MissingDirectoryNamesTheFile) {
  TempDir dir;
  std::string missing = dir.file("absent");
  CheckpointWriter writer(missing, {u8("a", 1)}, 100);
  std::string message = errorOf([&] { writer.write(0, "x", 1); });
  EXPECT_NE(message.find(missing + "/model.safetensors: cannot create"), std::string::npos)
      << message;
}

TEST(CheckpointWriterTest, NoSpaceLeftNamesFileAndTensor) {
  if (::access("/dev/full", W_OK) != 0)
    GTEST_SKIP() << "/dev/full is not available";
  TempDir dir;
  // Every write to /dev/full fails with ENOSPC; the first one is the header of the shard
  // that holds tensor 'w'.
  std::string file = dir.file("model.safetensors");
  ASSERT_EQ(::symlink("/dev/full", file.c_str()), 0);
  CheckpointWriter writer(dir.path(), {u8("w", 16)}, 100);
  std::string data(16, 'x');
  EXPECT_EQ(errorOf([&] { writer.write(0, data.data(), data.size()); }),
            "no space left on device writing " + file + " (header, before tensor 'w')");
}

TEST(CheckpointWriterTest, WriteAllReportsNoSpaceWithTheTensor) {
  if (::access("/dev/full", W_OK) != 0)
    GTEST_SKIP() << "/dev/full is not available";
  int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string data(100, 'x');
  std::string message = errorOf([&] {
    mergec::rt::detail::writeAll(fd, data.data(), data.size(), "/out/x.safetensors",
                                 "tensor 'model.norm.weight'");
  });
  ::close(fd);
  EXPECT_EQ(message, "no space left on device writing /out/x.safetensors (tensor "
                     "'model.norm.weight')");
}

namespace {
/// Seven tensors of 100 bytes, shard size 300: shards of 300, 300 and 100 bytes (and headers).
std::vector<OutputTensorSpec> threeShards() {
  return {u8("a", 100), u8("b", 100), u8("c", 100), u8("d", 100),
          u8("e", 100), u8("f", 100), u8("g", 100)};
}
} // namespace

TEST(CheckpointWriterTest, SharesOfSeveralWritersMakeTheSameFiles) {
  // Each "rank" writes only its shards into one directory: the files are those one writer makes.
  TempDir one, shared;
  CheckpointWriter single(one.path(), threeShards(), 300);
  std::vector<std::string> data = writeAllTensors(single);
  CheckpointWriter probe(shared.path(), threeShards(), 300);
  ASSERT_EQ(probe.shardCount(), 3u);
  std::vector<size_t> owner = probe.assignShards(2);
  // Largest first, each to the least loaded rank: shard 0 (300) and 1 (300) to ranks 0 and 1,
  // shard 2 (100) to rank 0 (a tie: the lower rank).
  EXPECT_EQ(owner, (std::vector<size_t>{0, 1, 0}));
  for (size_t rank = 0; rank < 2; ++rank) {
    CheckpointWriter writer(shared.path(), threeShards(), 300);
    std::vector<bool> owned;
    for (size_t s : owner)
      owned.push_back(s == rank);
    writer.restrictTo(owned);
    for (size_t i = 0; i < writer.tensors().size(); ++i)
      if (owned[writer.shardOf(i)])
        writer.write(i, data[i].data(), data[i].size());
    writer.finish(/*index=*/rank == 0);
  }
  expectSameCheckpoint(single.shardFileNames(), one, shared);
}

TEST(CheckpointWriterTest, ARestrictedWriterRefusesOthersTensorsAndChecksItsOwn) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), threeShards(), 300);
  writer.restrictTo({false, true, false});
  std::string bytes = pattern(100, 1);
  EXPECT_NE(errorOf([&] { writer.write(0, bytes.data(), 100); }).find("out of order"),
            std::string::npos);
  writer.write(3, bytes.data(), 100);
  EXPECT_NE(errorOf([&] { writer.finish(); }).find("output incomplete"), std::string::npos);
  // A writer that owns no shard writes nothing and finishes.
  TempDir none;
  CheckpointWriter idle(none.path(), threeShards(), 300);
  idle.restrictTo({false, false, false});
  idle.finish(/*index=*/false);
  EXPECT_TRUE(std::filesystem::is_empty(none.path()));
}
