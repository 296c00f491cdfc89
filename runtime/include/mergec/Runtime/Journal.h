//===- Journal.h - the record of an unfinished merge, for --resume -*- C++ -*-===//
// A merge writes `mergec-journal` into its temporary output directory (OutputDirectory.h): a
// header line with everything the output depends on, then one line per tensor written, with a
// checksum of its bytes. A run with --resume that finds an earlier run's temporary directory
// compares the headers (any difference refuses, with the reason), re-reads every journalled
// tensor from the shard files and continues after the last one whose bytes are intact.
//
// Format (text, one record a line, '\n' terminated; a line without its '\n' is ignored):
//   mergec-journal 1 {"version":...,"recipe_sha256":...,...}      the header (one JSON object)
//   INDEX HASH [nan=N inf=N] [scope=G,G,...] "NAME"                one per tensor, in order
// HASH is checksum64 of the tensor's bytes as 16 hex digits; NAME is JSON-quoted; nan/inf are
// the NaN and inf counts the tensor introduced (for the warning of a resumed run); scope is the
// model-scope top-k state after the tensor (ModelScope::mergeState) for rules that have one.
#pragma once
#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace mergec::rt {

class CheckpointWriter;

inline constexpr const char *kJournalName = "mergec-journal";

/// A 64-bit hash of `n` bytes (XXH64, seed 0): about 10 GB/s on one core. It detects lost, torn,
/// zero-filled or stale writes (a random change passes with probability 2^-64); it is not a
/// defence against someone forging shard contents, which needs write access to the directory
/// anyway.
uint64_t checksum64(const void *data, uint64_t n);

/// checksum64 of bytes that come in pieces (a tensor written window by window): update() with
/// each piece in order, then digest() equals checksum64 of the pieces joined, wherever they
/// were split.
class Checksum64 {
public:
  Checksum64();
  void update(const void *data, uint64_t n);
  uint64_t digest() const;

private:
  void consume(const uint8_t *stripe);
  uint64_t v1_, v2_, v3_, v4_;
  uint64_t total_ = 0;
  uint8_t stripe_[32] = {}; ///< the bytes of an unfinished 32-byte stripe
  uint64_t pending_ = 0;    ///< how many of them there are
};

struct JournalEntry {
  size_t index = 0;
  std::string name;
  uint64_t checksum = 0;
  uint64_t nan = 0, inf = 0;
  std::vector<int64_t> scope;
};

/// What a journal file holds: its header (null when the file is missing or its first line is
/// not a journal header), the complete entries in order up to the first malformed or
/// unterminated line, and the byte offset just past each entry's line.
struct JournalContents {
  nlohmann::json header;
  std::vector<JournalEntry> entries;
  std::vector<uint64_t> ends;
  uint64_t headerEnd = 0;
  /// Why the journal ends early ("" when every line parsed): a malformed line's number.
  std::string stoppedAt;
};

JournalContents readJournal(const std::string &path);
/// Parses journal text (readJournal's work, for tests).
JournalContents parseJournal(const std::string &text);

/// The line for one entry (with its '\n').
std::string journalLine(const JournalEntry &entry);

/// Why a resume with header `now` may not continue a run whose header was `then`, as
/// "the recipe changed since the interrupted run (sha256 A then, B now)"; "" when they agree.
std::string journalMismatch(const nlohmann::json &then, const nlohmann::json &now);

/// Where an interrupted output continues: every tensor before `index` was journalled and its
/// bytes in `dir` match the journal (and the headers of their shards match the plan). `reason`
/// says why verification stopped before the journal's end ("" when the journal simply ends
/// there); `bytesRead` counts the shard bytes read to verify.
struct ResumePoint {
  size_t index = 0;
  std::string reason;
  uint64_t bytesRead = 0;
};

/// Re-reads the journalled tensors from the shard files in `dir`, laid out as `layout` plans
/// them: each tensor's name and index must be the plan's, its shard's header bytes the planned
/// header, its bytes' checksum64 the journal's; a shard whose tensors all verified must have
/// exactly its planned size. The first tensor that fails (or the first shard tensor, when its
/// header fails) is where the merge restarts.
ResumePoint verifyJournal(const CheckpointWriter &layout, const std::string &dir,
                          const JournalContents &journal);

/// Appends entries to a journal. Lines are written with write(2) as they come (the page cache
/// keeps them across a crash of the process); sync() makes them durable (fdatasync), which the
/// executor calls after the shard data they describe is synced.
class JournalWriter {
public:
  /// Creates `path` (replacing any file there) holding only `header`, synced.
  JournalWriter(const std::string &path, const nlohmann::json &header);
  /// Continues an existing journal: truncates it to `keepBytes` (its header and the entries
  /// that were verified) and appends after them.
  JournalWriter(const std::string &path, uint64_t keepBytes);
  ~JournalWriter();
  JournalWriter(const JournalWriter &) = delete;
  JournalWriter &operator=(const JournalWriter &) = delete;

  void append(const JournalEntry &entry);
  void sync();
  /// Closes the file (synced) so it can be removed before the output is committed.
  void close();

private:
  std::string path_;
  int fd_ = -1;
};

} // namespace mergec::rt
