//===- JournalTest.cpp - the --resume journal: format, headers, verification -===//
#include "mergec/Runtime/Journal.h"
#include "TestUtil.h"
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/OutputDirectory.h"

#include <algorithm>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mergec::rt;
using namespace mergec::test;
using nlohmann::json;

namespace {

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 131 + seed * 17 + (i >> 8)) & 0xFF);
  return s;
}

json header() {
  return {{"version", "0.9"},
          {"recipe_sha256", "aaa"},
          {"params", {{"lam", 0.5}}},
          {"output_dtype", "as base"},
          {"shard_size", 100},
          {"device", "cpu"},
          {"num_layers", 2},
          {"inputs", json::array({{{"path", "/m/a.safetensors"}, {"bytes", 10}, {"mtime_ns", 5}}})},
          {"plan", "3 tensors, 0123"}};
}

std::vector<OutputTensorSpec> specs() {
  // 40 + 40 bytes in shard 1, 60 in shard 2 (shard size 100).
  return {{"a", DType::U8, {40}}, {"b", DType::U8, {40}}, {"c", DType::U8, {60}}};
}

/// Writes every tensor of `writer` with pattern(i) and journals it, as the executor does.
JournalContents writeWithJournal(CheckpointWriter &writer, const std::string &dir) {
  JournalWriter journal(dir + "/" + kJournalName, header());
  for (size_t i = 0; i < writer.tensors().size(); ++i) {
    std::string bytes = pattern(writer.tensors()[i].nbytes(), static_cast<unsigned>(i));
    writer.write(i, bytes.data(), bytes.size());
    journal.append({i, writer.tensors()[i].name, checksum64(bytes.data(), bytes.size())});
  }
  writer.finish();
  journal.close();
  return readJournal(dir + "/" + kJournalName);
}

} // namespace

TEST(JournalTest, ChecksumIsXXH64) {
  EXPECT_EQ(checksum64("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(checksum64("abc", 3), 0x44BC2CF5AD770999ull);
  std::string long1 = pattern(1000, 1), long2 = long1;
  long2[517] ^= 1;
  EXPECT_NE(checksum64(long1.data(), long1.size()), checksum64(long2.data(), long2.size()));
}

TEST(JournalTest, StreamingChecksumEqualsOneShot) {
  // A tensor's windows hashed one after another give the checksum of the whole tensor, so a
  // journal written window by window verifies as one written whole (and old journals resume).
  std::string bytes = pattern(1000, 3);
  uint64_t whole = checksum64(bytes.data(), bytes.size());
  for (size_t piece : {1u, 3u, 31u, 32u, 33u, 64u, 100u, 999u, 1000u}) {
    Checksum64 sum;
    for (size_t at = 0; at < bytes.size(); at += piece)
      sum.update(bytes.data() + at, std::min(piece, bytes.size() - at));
    EXPECT_EQ(sum.digest(), whole) << "pieces of " << piece;
  }
  // Uneven pieces, an empty one among them, across the 32-byte stripes.
  Checksum64 uneven;
  size_t at = 0;
  for (size_t piece : {5u, 0u, 40u, 27u, 0u, 300u, 628u}) {
    uneven.update(bytes.data() + at, piece);
    at += piece;
  }
  ASSERT_EQ(at, bytes.size());
  EXPECT_EQ(uneven.digest(), whole);
  // Short inputs stay in the pending stripe: the known XXH64 values.
  Checksum64 abc;
  abc.update("a", 1);
  abc.update("bc", 2);
  EXPECT_EQ(abc.digest(), 0x44BC2CF5AD770999ull);
  EXPECT_EQ(Checksum64().digest(), 0xEF46DB3751D8E999ull);
}

TEST(JournalTest, LinesRoundTrip) {
  JournalEntry e{7, "model.layers.0.\"odd\" name\n", 0x0123456789abcdefull, 3, 4, {5, 6}};
  std::string line = journalLine(e);
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1); // the name's newline is escaped
  JournalContents c = parseJournal("mergec-journal 1 " + header().dump() + "\n" + line);
  ASSERT_EQ(c.entries.size(), 1u);
  EXPECT_EQ(c.entries[0].index, 7u);
  EXPECT_EQ(c.entries[0].name, e.name);
  EXPECT_EQ(c.entries[0].checksum, e.checksum);
  EXPECT_EQ(c.entries[0].nan, 3u);
  EXPECT_EQ(c.entries[0].inf, 4u);
  EXPECT_EQ(c.entries[0].scope, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(c.header, header());
  EXPECT_EQ(c.ends[0], c.headerEnd + line.size());
  EXPECT_EQ(c.stoppedAt, "");
}

TEST(JournalTest, TornAndMalformedLinesEndIt) {
  std::string head = "mergec-journal 1 " + header().dump() + "\n";
  std::string one = journalLine({0, "a", 1}), two = journalLine({1, "b", 2});
  // The last line without its newline (a write cut short) is ignored.
  JournalContents c = parseJournal(head + one + two.substr(0, two.size() - 1));
  EXPECT_EQ(c.entries.size(), 1u);
  EXPECT_EQ(c.stoppedAt, "line 3 is incomplete");
  // Zeros where a crash left the file longer than its data: the journal ends there.
  c = parseJournal(head + one + std::string(16, '\0') + "\n" + two);
  EXPECT_EQ(c.entries.size(), 1u);
  EXPECT_EQ(c.stoppedAt, "line 3 is malformed");
  c = parseJournal(head + "0 12345 \"a\"\n");
  EXPECT_EQ(c.entries.size(), 0u);
  // Not a journal at all: no header.
  EXPECT_TRUE(parseJournal("{}\n").header.is_null());
  EXPECT_TRUE(parseJournal("mergec-journal 1 {\"version\":").header.is_null());
  EXPECT_TRUE(readJournal("/nonexistent/mergec-journal").header.is_null());
}

TEST(JournalTest, HeaderMismatchReasons) {
  EXPECT_EQ(journalMismatch(header(), header()), "");
  auto with = [](const char *key, json value) {
    json h = header();
    h[key] = value;
    return h;
  };
  EXPECT_EQ(journalMismatch(header(), with("recipe_sha256", "bbb")),
            "the recipe changed since the interrupted run (sha256 aaa then, bbb now)");
  EXPECT_EQ(journalMismatch(header(), with("params", {{"lam", 0.7}})),
            "the params changed since the interrupted run (lam=0.5 then, lam=0.7 now)");
  EXPECT_EQ(journalMismatch(header(), with("version", "1.0")),
            "mergec's version changed since the interrupted run (0.9 then, 1.0 now)");
  EXPECT_EQ(journalMismatch(header(), with("output_dtype", "BF16")),
            "--dtype changed since the interrupted run (as base then, BF16 now)");
  EXPECT_EQ(journalMismatch(header(), with("shard_size", 200)),
            "--shard-size changed since the interrupted run (100 bytes then, 200 now)");
  EXPECT_EQ(journalMismatch(header(), with("device", "cuda")),
            "--device changed since the interrupted run (cpu then, cuda now)");
  EXPECT_EQ(journalMismatch(header(), with("num_layers", 3)),
            "the output model's layer count changed since the interrupted run (2 then, 3 now)");
  std::string why = journalMismatch(
      header(), with("inputs", json::array({{{"path", "/m/a.safetensors"}, {"bytes", 11},
                                             {"mtime_ns", 5}}})));
  EXPECT_EQ(why.rfind("input file /m/a.safetensors changed since the interrupted run (10 bytes, "
                      "modified 1970-01-01 00:00:00.000000005 UTC then, 11 bytes",
                      0),
            0u)
      << why;
  why = journalMismatch(header(), with("inputs", json::array({{{"path", "/m/b.safetensors"},
                                                              {"bytes", 10},
                                                              {"mtime_ns", 5}}})));
  EXPECT_EQ(why, "the input files changed since the interrupted run (/m/b.safetensors was not an "
                 "input then)");
  EXPECT_EQ(journalMismatch(header(), with("plan", "3 tensors, 4567")),
            "the planned output (tensor names, dtypes and shapes) changed since the interrupted "
            "run (3 tensors, 0123 then, 3 tensors, 4567 now)");
  // The recipe is named before anything that follows from it.
  json both = with("recipe_sha256", "bbb");
  both["plan"] = "other";
  EXPECT_EQ(journalMismatch(header(), both).rfind("the recipe changed", 0), 0u);
  EXPECT_NE(journalMismatch(json(), header()), "");
}

TEST(JournalTest, VerifiesEveryJournalledTensor) {
  TempDir dir;
  CheckpointWriter writer(dir.path(), specs(), 100);
  ASSERT_EQ(writer.shardCount(), 2u);
  JournalContents journal = writeWithJournal(writer, dir.path());
  ASSERT_EQ(journal.entries.size(), 3u);
  CheckpointWriter layout(dir.path(), specs(), 100);
  ResumePoint point = verifyJournal(layout, dir.path(), journal);
  EXPECT_EQ(point.index, 3u);
  EXPECT_EQ(point.reason, "");
  EXPECT_EQ(point.bytesRead, layout.shardFileBytes(0) + layout.shardFileBytes(1));

  // A byte of 'b' damaged: 'a' stays, 'b' and everything after is redone.
  std::string shard1 = dir.file(layout.shardFileName(0));
  std::string bytes = readFile(shard1);
  bytes[layout.fileOffset(1) + 5] ^= 0x40;
  writeFile(shard1, bytes);
  point = verifyJournal(layout, dir.path(), journal);
  EXPECT_EQ(point.index, 1u);
  EXPECT_EQ(point.reason, "tensor 'b' in model-00001-of-00002.safetensors: its bytes do not "
                          "match the journal");

  // The second shard cut short: 'c' is redone.
  bytes[layout.fileOffset(1) + 5] ^= 0x40;
  writeFile(shard1, bytes);
  std::string shard2 = dir.file(layout.shardFileName(1));
  ASSERT_EQ(::truncate(shard2.c_str(), static_cast<off_t>(layout.fileOffset(2) + 10)), 0);
  point = verifyJournal(layout, dir.path(), journal);
  EXPECT_EQ(point.index, 2u);
  EXPECT_EQ(point.reason, "model-00002-of-00002.safetensors ends before tensor 'c'");

  // A damaged header redoes its whole shard.
  std::string header1 = bytes;
  header1[12] ^= 1;
  writeFile(shard1, header1);
  point = verifyJournal(layout, dir.path(), journal);
  EXPECT_EQ(point.index, 0u);
  EXPECT_EQ(point.reason, "model-00001-of-00002.safetensors: its header is not the planned one");

  // A complete shard longer than planned: its last tensor is rewritten (and the file cut).
  writeFile(shard1, bytes + "xx");
  point = verifyJournal(layout, dir.path(), journal);
  EXPECT_EQ(point.index, 1u);

  // An entry naming another tensor than the plan's.
  writeFile(shard1, bytes);
  JournalContents renamed = journal;
  renamed.entries[1].name = "z";
  point = verifyJournal(layout, dir.path(), renamed);
  EXPECT_EQ(point.index, 1u);
  EXPECT_EQ(point.reason, "journal entry 2 is tensor 1 'z', the plan's is 'b'");
}

TEST(JournalTest, ResumeAtRewritesFromThePoint) {
  TempDir ref, dir;
  {
    CheckpointWriter writer(ref.path(), specs(), 100);
    writeWithJournal(writer, ref.path());
  }
  for (size_t from = 0; from <= 3; ++from) {
    {
      CheckpointWriter first(dir.path(), specs(), 100);
      writeWithJournal(first, dir.path());
    }
    // Garbage after the resume point, and a shard 2 that is too long.
    CheckpointWriter layout(dir.path(), specs(), 100);
    std::string s2 = dir.file(layout.shardFileName(1));
    writeFile(s2, readFile(s2) + std::string(30, 'x'));
    CheckpointWriter writer(dir.path(), specs(), 100);
    writer.resumeAt(from);
    for (size_t i = from; i < 3; ++i) {
      std::string bytes = pattern(writer.tensors()[i].nbytes(), static_cast<unsigned>(i));
      writer.write(i, bytes.data(), bytes.size());
    }
    writer.finish();
    for (const std::string &name : {layout.shardFileName(0), layout.shardFileName(1),
                                    std::string("model.safetensors.index.json")})
      EXPECT_EQ(readFile(dir.file(name)), readFile(ref.file(name))) << name << " from " << from;
  }
}

TEST(JournalTest, OutputDirectoryKeepsAResumableTemporary) {
  TempDir dir;
  std::string out = dir.file("merged");
  std::string stale = dir.file(".merged.mergec-tmp-999999");
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0);
  {
    JournalWriter journal(stale + "/" + kJournalName, header());
    journal.append({0, "a", 1});
    journal.append({1, "b", 2});
  }
  writeFile(stale + "/model.safetensors", "partial");
  {
    // Without --resume: removed, its progress counted for the note.
    std::string copy = dir.file(".merged.mergec-tmp-999998");
    ASSERT_EQ(::mkdir(copy.c_str(), 0755), 0);
    writeFile(copy + "/" + kJournalName, readFile(stale + "/" + kJournalName));
    OutputDirectory od(out, false);
    EXPECT_EQ(od.removedProgress(), 2u);
    EXPECT_EQ(od.resumable(), "");
    EXPECT_FALSE(pathExists(copy));
    EXPECT_FALSE(pathExists(stale));
  }
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0);
  {
    JournalWriter journal(stale + "/" + kJournalName, header());
  }
  {
    // With --resume, not adopted (a refused resume): the temporary stays as it was.
    OutputDirectory od(out, false, {}, /*resume=*/true);
    EXPECT_EQ(od.resumable(), stale);
  }
  EXPECT_TRUE(pathExists(stale + "/" + kJournalName));
  {
    OutputDirectory od(out, false, {}, /*resume=*/true);
    ASSERT_EQ(od.resumable(), stale);
    od.adopt();
    EXPECT_FALSE(pathExists(stale));
    EXPECT_TRUE(pathExists(od.tempPath() + "/" + kJournalName));
    writeFile(od.tempPath() + "/" + kManifestName,
              R"({"mergec_version":"x","recipe":{},"tensors":0})");
    od.commit();
  }
  EXPECT_TRUE(pathExists(out + "/" + kJournalName));
}
