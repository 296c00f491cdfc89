//===- SafetensorsTest.cpp - reader, header validation and checkpoints ----===//
#include "mergec/Runtime/Safetensors.h"
#include "TestUtil.h"
#include "mergec/Runtime/Error.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <initializer_list>
#include <mutex>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;
using namespace std::string_literals;

namespace {

class SafetensorsTest : public ::testing::Test {
protected:
  std::string path() const { return dir.file("model.safetensors"); }

  /// Writes `image` and expects opening it to fail with a message naming the file and
  /// containing every string in `parts`.
  void expectRejected(const std::string &image, std::initializer_list<std::string> parts) {
    writeFile(path(), image);
    std::string message = errorOf([&] { SafetensorsFile::open(path()); });
    EXPECT_NE(message.find(path() + ": "), std::string::npos) << message;
    for (const std::string &part : parts)
      EXPECT_NE(message.find(part), std::string::npos)
          << "missing '" << part << "' in: " << message;
  }

  void expectHeaderRejected(const std::string &header, const std::string &data,
                            std::initializer_list<std::string> parts) {
    expectRejected(safetensorsImage(header, data), parts);
  }

  TempDir dir;
};

} // namespace

//===----------------------------------------------------------------------===//
// Well-formed files
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, ReadsTensorsInOffsetOrderWithMetadata) {
  // JSON order (a before b) differs from file order (b first) on purpose.
  std::string header = R"({"__metadata__":{"format":"pt","note":"hi"},)"
                       R"("a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                       R"("b":{"dtype":"I16","shape":[1,2],"data_offsets":[0,4]}})";
  std::string data = "BBBBaaaaAAAA";
  writeFile(path(), safetensorsImage(header, data));
  auto f = SafetensorsFile::open(path());
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[0].name, "b");
  EXPECT_EQ(f->tensors()[1].name, "a");
  uint64_t dataStart = 8 + header.size();
  const TensorInfo *a = f->find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(a->numel(), 2);
  EXPECT_EQ(a->nbytes, 8u);
  EXPECT_EQ(a->offset, dataStart + 4);
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(a->data), a->nbytes), "aaaaAAAA");
  EXPECT_EQ(a->file, f.get());
  const TensorInfo *b = f->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::I16);
  EXPECT_EQ(b->shapeString(), "[1, 2]");
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(b->data), 4), "BBBB");
  EXPECT_EQ(f->find("c"), nullptr);
  EXPECT_EQ(f->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "hi"}}));
  EXPECT_EQ(f->fileSize(), dataStart + data.size());
  EXPECT_EQ(f->path(), path());
}

TEST_F(SafetensorsTest, AcceptsScalarsEmptyTensorsPaddingAndNoTensors) {
  std::string header = R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                       R"("e":{"dtype":"BF16","shape":[0,5],"data_offsets":[8,8]},)"
                       R"("t":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})";
  header.append((8 - header.size() % 8) % 8 + 8, ' '); // trailing spaces are legal padding
  writeFile(path(), safetensorsImage(header, std::string(10, 'x')));
  auto f = SafetensorsFile::open(path());
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->tensors()[0].name, "s");
  EXPECT_EQ(f->tensors()[0].numel(), 1);
  EXPECT_EQ(f->tensors()[0].shapeString(), "[]");
  EXPECT_EQ(f->tensors()[1].name, "e");
  EXPECT_EQ(f->tensors()[1].nbytes, 0u);
  EXPECT_EQ(f->tensors()[2].name, "t");

  writeFile(path(), safetensorsImage(R"({"__metadata__":{}})", ""));
  auto empty = SafetensorsFile::open(path());
  EXPECT_TRUE(empty->tensors().empty());
  EXPECT_TRUE(empty->metadata().empty());
}

TEST_F(SafetensorsTest, PrefetchAndReleaseKeepDataReadable) {
  // Two tensors spanning several pages so release() has whole pages to drop.
  const size_t n = 3 * 4096;
  std::string data(2 * n, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 7 + 3);
  std::string header =
      R"({"x":{"dtype":"U8","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
      std::to_string(n) + R"(]},)" + R"("y":{"dtype":"U8","shape":[)" + std::to_string(n) +
      R"(],"data_offsets":[)" + std::to_string(n) + "," + std::to_string(2 * n) + "]}}";
  writeFile(path(), safetensorsImage(header, data));
  auto f = SafetensorsFile::open(path());
  for (const TensorInfo &t : f->tensors()) {
    f->prefetch(t);
    f->release(t);
  }
  const TensorInfo *y = f->find("y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(std::memcmp(y->data, data.data() + n, n), 0);
  EXPECT_EQ(std::memcmp(f->find("x")->data, data.data(), n), 0);
}

TEST(DTypeTest, NamesSizesAndComputeTypes) {
  EXPECT_EQ(parseDType("BF16"), DType::BF16);
  EXPECT_EQ(parseDType("F8_E4M3"), DType::F8_E4M3);
  EXPECT_EQ(parseDType("bf16"), std::nullopt);
  EXPECT_EQ(parseDType("F33"), std::nullopt);
  EXPECT_STREQ(dtypeName(DType::BOOL), "BOOL");
  EXPECT_EQ(dtypeSize(DType::F64), 8u);
  EXPECT_EQ(dtypeSize(DType::BF16), 2u);
  EXPECT_EQ(dtypeSize(DType::I32), 4u);
  EXPECT_EQ(dtypeSize(DType::F8_E5M2), 1u);
  EXPECT_TRUE(isComputeDType(DType::F16));
  EXPECT_FALSE(isComputeDType(DType::F64));
  EXPECT_FALSE(isComputeDType(DType::I8));
  for (const char *name : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32",
                           "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"})
    EXPECT_STREQ(dtypeName(*parseDType(name)), name);
}

//===----------------------------------------------------------------------===//
// Malformed files: one test per rule in Safetensors.h
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, MissingFile) {
  std::string message = errorOf([&] { SafetensorsFile::open(path()); });
  EXPECT_NE(message.find(path() + ": cannot open"), std::string::npos) << message;
}

TEST_F(SafetensorsTest, ShorterThanEightBytes) {
  expectRejected("", {"file is truncated (0 bytes, need at least 8"});
  expectRejected("\x05\0\0\0\0"s, {"file is truncated (5 bytes, need at least 8"});
  expectRejected(std::string(7, '\0'), {"file is truncated (7 bytes"});
}

TEST_F(SafetensorsTest, HeaderLongerThanFile) {
  std::string image = le64(999999) + "{}" + std::string(110, ' ');
  ASSERT_EQ(image.size(), 120u);
  expectRejected(image, {"header length 999999 exceeds file size 120"});
  // A length so large that 8 + length overflows must not wrap around.
  expectRejected(le64(UINT64_MAX - 3) + "{}", {"exceeds file size 10"});
}

TEST_F(SafetensorsTest, HeaderOverOneHundredMegabytes) {
  // A sparse file: big enough to hold the header length, costing no disk.
  uint64_t len = 100'000'001;
  writeFile(path(), le64(len));
  ASSERT_EQ(::truncate(path().c_str(), static_cast<off_t>(8 + len + 16)), 0);
  std::string message = errorOf([&] { SafetensorsFile::open(path()); });
  EXPECT_NE(message.find(path() + ": header length 100000001 exceeds the limit"), std::string::npos)
      << message;
}

TEST_F(SafetensorsTest, InvalidUtf8) {
  // A lone continuation byte, an overlong '/', a UTF-16 surrogate, a truncated sequence and
  // a code point past U+10FFFF, each inside a tensor name where JSON would accept any byte.
  for (std::string bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xE2\x82", "\xF4\x90\x80\x80"}) {
    std::string header =
        "{\"x" + bad + "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    expectHeaderRejected(header, "", {"header is not valid UTF-8 (bad byte at offset 3)"});
  }
  // Valid multi-byte names are fine.
  writeFile(path(), safetensorsImage("{\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\":{\"dtype\":"
                                     "\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                                     "z"));
  EXPECT_NE(SafetensorsFile::open(path())->find("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), nullptr);
}

TEST_F(SafetensorsTest, NotJson) {
  expectHeaderRejected("{\"a\":", "", {"header is not valid JSON"});
  expectHeaderRejected("", "", {"header is not valid JSON"});
  // nlohmann stops at a NUL byte as if the input ended there.
  expectHeaderRejected("{}\0\0\0\0\0\0"s, "", {"header contains a NUL byte at offset 2"});
  expectHeaderRejected("{}\0{\"junk\""s, "", {"header contains a NUL byte at offset 2"});
  expectHeaderRejected("{} {}", "", {"header is not valid JSON"});
}

TEST_F(SafetensorsTest, NotAnObject) {
  expectHeaderRejected("[]", "", {"header must be a JSON object, not array"});
  expectHeaderRejected("42", "", {"header must be a JSON object, not number"});
  expectHeaderRejected("\"x\"", "", {"header must be a JSON object, not string"});
  expectHeaderRejected(" {}", "", {"header must begin with '{'"});
  expectHeaderRejected("\xEF\xBB\xBF{}", "", {"header must begin with '{'"}); // UTF-8 BOM
}

TEST_F(SafetensorsTest, DuplicateKeys) {
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                       "ab", {"header has the key 'w' twice"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "a",
                       {"header has the key 'dtype' twice"});
}

TEST_F(SafetensorsTest, NestingDeeperThanSixtyFourLevels) {
  // A million '[' used to build a million-level DOM, and printing it in an error message
  // recursed once per level (a stack overflow); the parse now stops at level 65.
  std::string deep = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":)" + deep + R"(,"data_offsets":[0,1]}})", "a",
                       {"header is nested too deeply (more than 64 levels of objects and arrays)"});
  // 64 levels (header, entry, shape, 61 more) parse; the shape is then wrong, and its text in
  // the message is cut short.
  std::string nested = std::string(61, '[') + "1" + std::string(61, ']');
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[)" + nested + R"(],"data_offsets":[0,1]}})",
                       "a",
                       {"tensor 'w': shape dimension must be an integer, not array " +
                        std::string(61, '[') + "1" + std::string(18, ']') +
                        "... (123 characters)"});
}

TEST_F(SafetensorsTest, LongValuesAreCutShortInMessages) {
  std::string offsets = "[0";
  for (int i = 0; i < 100'000; ++i)
    offsets += ",1";
  offsets += "]";
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":)" + offsets + "}}", "a",
                       {"tensor 'w': data_offsets must be an array of two integers, not [0,1,1,",
                        "... (200003 characters)"});
}

TEST_F(SafetensorsTest, FiftyThousandTensorsOpenInLinearTime) {
  // MoE checkpoints have tens of thousands of tensors. nlohmann's parse with a callback
  // rescanned the whole header at the end of every entry: 50,000 took 17 s (a valid 100 MB
  // header, hours); building the DOM from SAX events takes 0.2 s.
  constexpr int kTensors = 50'000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i)
    header += (i ? ",\"" : "\"") + ("model.layers." + std::to_string(i) + ".weight") +
              R"(":{"dtype":"F32","shape":[1],"data_offsets":[)" + std::to_string(4 * i) + "," +
              std::to_string(4 * i + 4) + "]}";
  header += "}";
  std::string data(4 * kTensors, '\0');
  for (int i = 0; i < kTensors; ++i)
    std::memcpy(&data[4 * i], &i, 4);
  writeFile(path(), safetensorsImage(header, data));
  auto start = std::chrono::steady_clock::now();
  auto f = SafetensorsFile::open(path());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(f->tensors().size(), static_cast<size_t>(kTensors));
  for (int i : {0, 1, 12'345, kTensors - 1}) {
    const TensorInfo *t = f->find("model.layers." + std::to_string(i) + ".weight");
    ASSERT_NE(t, nullptr) << i;
    EXPECT_EQ(t->nbytes, 4u);
    int value;
    std::memcpy(&value, t->data, 4);
    EXPECT_EQ(value, i);
  }
  // Generous for a loaded CI machine or a sanitizer build; the quadratic parse took 17 s.
  EXPECT_LT(seconds, 5.0);
}

TEST_F(SafetensorsTest, MissingFields) {
  expectHeaderRejected(R"({"w.weight":{"shape":[1],"data_offsets":[0,1]}})", "a",
                       {"tensor 'w.weight': missing 'dtype'"});
  expectHeaderRejected(R"({"w.weight":{"dtype":"U8","data_offsets":[0,1]}})", "a",
                       {"tensor 'w.weight': missing 'shape'"});
  expectHeaderRejected(R"({"w.weight":{"dtype":"U8","shape":[1]}})", "a",
                       {"tensor 'w.weight': missing 'data_offsets'"});
}

TEST_F(SafetensorsTest, WrongJsonTypes) {
  expectHeaderRejected(R"({"w":[1,2]})", "", {"tensor 'w': entry must be an object, not array"});
  expectHeaderRejected(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]}})", "a",
                       {"tensor 'w': dtype must be a string, not number"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", "a",
                       {"tensor 'w': shape must be an array, not string"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "a",
                       {"tensor 'w': shape dimension must be an integer"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}})", "a",
                       {"tensor 'w': shape dimension must be an integer, not null"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "a",
                       {"tensor 'w': data_offsets must be an array of two integers, not [0]"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":{"a":1}}})", "a",
                       {"tensor 'w': data_offsets must be an array of two integers"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":["0",1]}})", "a",
                       {"tensor 'w': data_offsets begin must be an integer, not string"});
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,-1]}})", "a",
                       {"tensor 'w': data_offsets end -1 is negative"});
}

TEST_F(SafetensorsTest, UnknownDType) {
  expectHeaderRejected(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", "abcd",
                       {"tensor 'w': unknown dtype 'F33'"});
  expectHeaderRejected(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", "abcd",
                       {"tensor 'w': unknown dtype 'f32'"});
}

TEST_F(SafetensorsTest, NegativeDimension) {
  expectHeaderRejected(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}})", "",
                       {"tensor 'w': shape dimension -1 is negative"});
}

TEST_F(SafetensorsTest, ShapeWhoseByteSizeOverflows) {
  expectHeaderRejected(
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "",
      {"tensor 'w': shape [4294967296, 4294967296] is too large"});
}

TEST_F(SafetensorsTest, ReversedOffsets) {
  expectHeaderRejected(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})",
                       std::string(8, 'x'), {"tensor 'w': data_offsets [8, 4] are reversed"});
}

TEST_F(SafetensorsTest, OffsetsPastTheDataRegion) {
  std::string header = R"({"x.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  writeFile(path(), safetensorsImage(header, std::string(8, 'x')));
  std::string message = errorOf([&] { SafetensorsFile::open(path()); });
  EXPECT_EQ(message, path() + ": tensor 'x.weight': data_offsets [0, 12] end past the data "
                              "region (8 bytes)");
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  expectHeaderRejected(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                       std::string(12, 'x'),
                       {"tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"});
  // Two tensors on the very same bytes.
  expectHeaderRejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                       std::string(4, 'x'), {"overlap tensor 'a' [0, 4]"});
}

TEST_F(SafetensorsTest, GapBetweenTensors) {
  expectHeaderRejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})",
                       std::string(10, 'x'),
                       {"tensor 'b': data_offsets [6, 10] leave a gap: bytes [4, 6)"});
  // A gap before the first tensor.
  expectHeaderRejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                       std::string(6, 'x'), {"tensor 'a'", "leave a gap: bytes [0, 2)"});
}

TEST_F(SafetensorsTest, TrailingBytes) {
  expectHeaderRejected(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                       std::string(7, 'x'), {"data region has 3 trailing bytes"});
  expectHeaderRejected("{}", "x", {"data region has 1 trailing bytes"});
}

TEST_F(SafetensorsTest, ByteLengthDiffersFromShape) {
  expectHeaderRejected(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                       std::string(12, 'x'),
                       {"tensor 'w': data_offsets [0, 12] hold 12 bytes but shape [2, 2] of "
                        "F32 needs 16"});
}

TEST_F(SafetensorsTest, MetadataMustMapStringsToStrings) {
  expectHeaderRejected(R"({"__metadata__":{"format":"pt","step":3}})", "",
                       {"__metadata__ must map strings to strings, but 'step' is number"});
  expectHeaderRejected(R"({"__metadata__":["pt"]})", "",
                       {"__metadata__ must be an object of strings, not array"});
}

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

namespace {
/// A one-tensor U8 file image holding `bytes`.
std::string oneTensorImage(const std::string &name, const std::string &bytes) {
  return safetensorsImage("{\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" +
                              std::to_string(bytes.size()) + "],\"data_offsets\":[0," +
                              std::to_string(bytes.size()) + "]}}",
                          bytes);
}

std::string twoTensorImage(const std::string &a, const std::string &b) {
  return safetensorsImage("{\"" + a +
                              "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                              "\"" +
                              b + "\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
                          "abc");
}
} // namespace

TEST(CheckpointTest, DirectoryWithSingleFile) {
  TempDir dir;
  writeFile(dir.file("model.safetensors"), twoTensorImage("w1", "w2"));
  auto ckpt = Checkpoint::open(dir.path());
  EXPECT_EQ(ckpt->path(), dir.path());
  EXPECT_EQ(ckpt->directory(), dir.path());
  ASSERT_EQ(ckpt->tensors().size(), 2u);
  EXPECT_EQ(ckpt->tensors()[0]->name, "w1");
  EXPECT_EQ(ckpt->tensors()[1]->name, "w2");
  EXPECT_EQ(ckpt->find("w2")->nbytes, 2u);
  EXPECT_EQ(ckpt->find("nope"), nullptr);
  ASSERT_EQ(ckpt->files().size(), 1u);
  EXPECT_EQ(ckpt->totalBytes(), readFile(dir.file("model.safetensors")).size());
}

TEST(CheckpointTest, PathToASingleFile) {
  TempDir dir;
  writeFile(dir.file("weights.safetensors"), oneTensorImage("t", "xyz"));
  auto ckpt = Checkpoint::open(dir.file("weights.safetensors"));
  EXPECT_EQ(ckpt->directory(), dir.path());
  ASSERT_EQ(ckpt->tensors().size(), 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(ckpt->find("t")->data), 3), "xyz");
}

TEST(CheckpointTest, ShardedWithIndex) {
  TempDir dir;
  // Shards listed out of name order in the index; tensors come back in shard-name order.
  writeFile(dir.file("model-00002-of-00002.safetensors"), twoTensorImage("c", "d"));
  writeFile(dir.file("model-00001-of-00002.safetensors"), twoTensorImage("b", "a"));
  writeFile(dir.file("model.safetensors.index.json"),
            R"({"metadata":{"total_size":6},"weight_map":{)"
            R"("d":"model-00002-of-00002.safetensors","c":"model-00002-of-00002.safetensors",)"
            R"("a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})");
  auto ckpt = Checkpoint::open(dir.path());
  ASSERT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->files()[0]->path(), dir.file("model-00001-of-00002.safetensors"));
  std::vector<std::string> names;
  for (const TensorInfo *t : ckpt->tensors())
    names.push_back(t->name);
  EXPECT_EQ(names, (std::vector<std::string>{"b", "a", "c", "d"}));
  EXPECT_EQ(ckpt->find("d")->file, ckpt->files()[1].get());
  EXPECT_EQ(ckpt->totalBytes(), ckpt->files()[0]->fileSize() + ckpt->files()[1]->fileSize());
}

TEST(CheckpointTest, IndexNamesAMissingShard) {
  TempDir dir;
  writeFile(dir.file("model-00001-of-00002.safetensors"), oneTensorImage("a", "x"));
  writeFile(dir.file("model.safetensors.index.json"),
            R"({"weight_map":{"a":"model-00001-of-00002.safetensors",)"
            R"("b":"model-00002-of-00002.safetensors"}})");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find(dir.file("model.safetensors.index.json") +
                         ": shard "
                         "'model-00002-of-00002.safetensors' (named in weight_map) does not "
                         "exist"),
            std::string::npos)
      << message;
}

TEST(CheckpointTest, IndexNamesATensorTheShardLacks) {
  TempDir dir;
  writeFile(dir.file("s1.safetensors"), oneTensorImage("a", "x"));
  writeFile(dir.file("model.safetensors.index.json"),
            R"({"weight_map":{"a":"s1.safetensors","ghost":"s1.safetensors"}})");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find(dir.file("model.safetensors.index.json") +
                         ": weight_map: tensor 'ghost' is mapped to shard 's1.safetensors', "
                         "which does not contain it"),
            std::string::npos)
      << message;
}

TEST(CheckpointTest, TensorMappedToTheWrongShard) {
  TempDir dir;
  writeFile(dir.file("s1.safetensors"), oneTensorImage("a", "x"));
  writeFile(dir.file("s2.safetensors"), oneTensorImage("b", "y"));
  writeFile(dir.file("model.safetensors.index.json"),
            R"({"weight_map":{"a":"s2.safetensors","b":"s2.safetensors","c":"s1.safetensors"}})");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find("tensor 'a' is mapped to shard 's2.safetensors'"), std::string::npos)
      << message;
}

TEST(CheckpointTest, TensorInTwoShards) {
  TempDir dir;
  writeFile(dir.file("s1.safetensors"), oneTensorImage("dup", "x"));
  writeFile(dir.file("s2.safetensors"), oneTensorImage("dup", "y"));
  writeFile(dir.file("model.safetensors.index.json"),
            R"({"weight_map":{"dup":"s1.safetensors","other":"s2.safetensors"}})");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find("tensor 'dup' appears in two shards: " + dir.file("s1.safetensors") +
                         " and " + dir.file("s2.safetensors")),
            std::string::npos)
      << message;
}

TEST(CheckpointTest, MalformedIndex) {
  TempDir dir;
  std::string index = dir.file("model.safetensors.index.json");
  auto expectIndexError = [&](const std::string &json, const std::string &reason) {
    writeFile(index, json);
    std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
    EXPECT_EQ(message.rfind(index + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  };
  expectIndexError("{\"weight_map\":", "index is not valid JSON");
  expectIndexError("[]", "index must be a JSON object, not array");
  expectIndexError("{}", "index has no 'weight_map'");
  expectIndexError(R"({"weight_map":[]})", "'weight_map' must be an object, not array");
  expectIndexError(R"({"weight_map":{"a":1}})", "weight_map: tensor 'a' must map to a file name");
  expectIndexError(R"({"weight_map":{}})", "weight_map names no tensors");
  expectIndexError(R"({"weight_map":{"a":"../x.safetensors"}})",
                   "not a file inside the checkpoint directory");
  expectIndexError(R"({"weight_map":{"a":"/etc/passwd"}})",
                   "not a file inside the checkpoint directory");
  expectIndexError("{\"weight_map\":{\"a\":\"s\xFF\"}}", "index is not valid UTF-8");
  expectIndexError(R"({"weight_map":{"a":"s1","a":"s2"}})", "index has the key 'a' twice");
  expectIndexError(R"({"weight_map":{"a":"s1"},"metadata":)" + std::string(100'000, '[') +
                       std::string(100'000, ']') + "}",
                   "index is nested too deeply (more than 64 levels of objects and arrays)");
}

namespace {
/// Makes FIFOs and, should a reader block in open(2) on one (the bug these tests are about),
/// opens their write end after 3 s so the reader gets through and the test fails instead of
/// hanging.
class Fifos {
public:
  ~Fifos() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    if (watchdog_.joinable())
      watchdog_.join();
  }
  void make(const std::string &path) {
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
    paths_.push_back(path);
    if (!watchdog_.joinable())
      watchdog_ = std::thread([this] {
        std::unique_lock<std::mutex> lock(mutex_);
        if (wake_.wait_for(lock, std::chrono::seconds(3), [&] { return done_; }))
          return;
        for (const std::string &p : paths_) {
          int fd = ::open(p.c_str(), O_WRONLY | O_NONBLOCK); // succeeds only with a reader
          if (fd >= 0)
            ::close(fd);
        }
      });
  }

private:
  std::vector<std::string> paths_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread watchdog_;
};
} // namespace

TEST(CheckpointTest, FifosDevicesAndSocketsAreRefusedWithoutBlocking) {
  // open(2) on a FIFO waits for a writer: mergec hung forever on one in a model directory.
  Fifos fifos;
  auto start = std::chrono::steady_clock::now();
  {
    TempDir dir;
    fifos.make(dir.file("model.safetensors"));
    EXPECT_EQ(errorOf([&] { Checkpoint::open(dir.path()); }),
              dir.file("model.safetensors") + ": not a regular file (a FIFO)");
    EXPECT_EQ(errorOf([&] { SafetensorsFile::open(dir.file("model.safetensors")); }),
              dir.file("model.safetensors") + ": not a regular file (a FIFO)");
  }
  {
    TempDir dir;
    fifos.make(dir.file("model.safetensors.index.json"));
    EXPECT_EQ(errorOf([&] { Checkpoint::open(dir.path()); }),
              dir.file("model.safetensors.index.json") + ": not a regular file (a FIFO)");
  }
  {
    TempDir dir;
    writeFile(dir.file("model-1.safetensors"), oneTensorImage("a", "x"));
    fifos.make(dir.file("model-2.safetensors"));
    writeFile(dir.file("model.safetensors.index.json"),
              R"({"weight_map":{"a":"model-1.safetensors","b":"model-2.safetensors"}})");
    EXPECT_EQ(errorOf([&] { Checkpoint::open(dir.path()); }),
              dir.file("model-2.safetensors") + ": not a regular file (a FIFO)");
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
  EXPECT_EQ(errorOf([&] { SafetensorsFile::open("/dev/null"); }),
            "/dev/null: not a regular file (a character device)");
  TempDir dir;
  std::string socketPath = dir.file("model.safetensors");
  int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socketPath.size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, socketPath.c_str());
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
  EXPECT_EQ(errorOf([&] { Checkpoint::open(dir.path()); }),
            socketPath + ": not a regular file (a socket)");
  ::close(sock);
}

TEST(CheckpointTest, MissingPathAndEmptyDirectory) {
  TempDir dir;
  std::string missing = dir.file("nothing-here");
  EXPECT_EQ(errorOf([&] { Checkpoint::open(missing); }), missing + ": no such file or directory");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find(dir.path() +
                         ": holds neither model.safetensors nor model.safetensors.index.json"),
            std::string::npos)
      << message;
}

TEST(CheckpointTest, ErrorsInsideAShardNameTheShard) {
  TempDir dir;
  writeFile(dir.file("model.safetensors"), "short");
  std::string message = errorOf([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(message.find(dir.file("model.safetensors") + ": file is truncated"), std::string::npos)
      << message;
}

//===----------------------------------------------------------------------===//
// Robustness: every corruption of a valid file either opens or throws RuntimeError, and
// never reads outside the file (run under ASan to make that check bite).
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, CorruptedFilesNeverCrash) {
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}})";
  std::string valid = safetensorsImage(header, std::string(22, '\x11'));
  uint32_t rng = 12345;
  auto next = [&] {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
  };
  int opened = 0, rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string image = valid;
    switch (round % 4) {
    case 0: // truncate anywhere
      image.resize(next() % image.size());
      break;
    case 1: // overwrite one byte with anything
      image[next() % image.size()] = static_cast<char>(next());
      break;
    case 2: // replace a header byte with a digit, quote, bracket or minus sign
      image[8 + next() % header.size()] = "0123456789\"[]{},:-"[next() % 18];
      break;
    case 3: // lie about the header length
      image.replace(0, 8, le64(next() % (image.size() + 16)));
      break;
    }
    writeFile(path(), image);
    try {
      auto f = SafetensorsFile::open(path());
      // Whatever opened must be in bounds: touch every byte of every tensor.
      unsigned sum = 0;
      for (const TensorInfo &t : f->tensors()) {
        ASSERT_LE(t.offset + t.nbytes, f->fileSize());
        for (uint64_t i = 0; i < t.nbytes; ++i)
          sum += t.data[i];
      }
      (void)sum;
      ++opened;
    } catch (const RuntimeError &e) {
      ASSERT_EQ(std::string(e.what()).rfind(path() + ": ", 0), 0u) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(opened, 0);
}
