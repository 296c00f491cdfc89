//===- Journal.cpp - the record of an unfinished merge, for --resume ------===//
#include "mergec/Runtime/Journal.h"
#include "Support.h"
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/Error.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mergec::rt {

using detail::fail;

namespace {
constexpr uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full,
                   P3 = 0x165667B19E3779F9ull, P4 = 0x85EBCA77C2B2AE63ull,
                   P5 = 0x27D4EB2F165667C5ull;
constexpr const char *kMagic = "mergec-journal 1 ";

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const uint8_t *p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v; // little-endian hosts only, as the safetensors code
}
inline uint32_t read32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t input) {
  acc += input * P2;
  return rotl(acc, 31) * P1;
}
inline uint64_t mergeRound(uint64_t acc, uint64_t v) {
  acc ^= round(0, v);
  return acc * P1 + P4;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool parseU64(const std::string &s, uint64_t &out, int base = 10) {
  if (s.empty())
    return false;
  char *end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, base);
  if (errno || *end || s[0] == '-' || s[0] == '+' || std::isspace(static_cast<unsigned char>(s[0])))
    return false;
  out = v;
  return true;
}

bool parseEntry(const std::string &line, JournalEntry &e) {
  size_t quote = line.find('"');
  if (quote == std::string::npos || quote == 0 || line[quote - 1] != ' ')
    return false;
  std::vector<std::string> fields;
  size_t pos = 0;
  while (pos < quote - 1) {
    size_t sp = line.find(' ', pos);
    fields.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (fields.size() < 2 || fields[1].size() != 16)
    return false;
  uint64_t index;
  if (!parseU64(fields[0], index) || !parseU64(fields[1], e.checksum, 16))
    return false;
  e.index = index;
  for (size_t k = 2; k < fields.size(); ++k) {
    const std::string &f = fields[k];
    if (f.rfind("nan=", 0) == 0) {
      if (!parseU64(f.substr(4), e.nan))
        return false;
    } else if (f.rfind("inf=", 0) == 0) {
      if (!parseU64(f.substr(4), e.inf))
        return false;
    } else if (f.rfind("scope=", 0) == 0) {
      std::string list = f.substr(6);
      size_t p = 0;
      while (p <= list.size()) {
        size_t comma = list.find(',', p);
        if (comma == std::string::npos)
          comma = list.size();
        uint64_t v;
        if (!parseU64(list.substr(p, comma - p), v))
          return false;
        e.scope.push_back(static_cast<int64_t>(v));
        p = comma + 1;
      }
    } else {
      return false;
    }
  }
  auto name = nlohmann::json::parse(line.substr(quote), nullptr, /*allow_exceptions=*/false);
  if (!name.is_string())
    return false;
  e.name = name.get<std::string>();
  return true;
}

std::string describeInput(const nlohmann::json &f) {
  int64_t ns = f.value("mtime_ns", int64_t(0));
  time_t seconds = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm = {};
  char when[64] = "?";
  if (::gmtime_r(&seconds, &tm))
    std::snprintf(when, sizeof when, "%04d-%02d-%02d %02d:%02d:%02d.%09lld UTC", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(ns % 1'000'000'000));
  std::string text = std::to_string(f.value("bytes", uint64_t(0))) + " bytes, modified " + when;
  // A LoRA adapter's entry also hashes its config and tensors (Executor.cpp's journalHeader).
  if (f.contains("lora_checksum"))
    text += ", adapter checksum " + f.value("lora_checksum", std::string("?"));
  return text;
}

std::string paramsText(const nlohmann::json &params) {
  std::string text;
  if (!params.is_object())
    return "?";
  for (auto it = params.begin(); it != params.end(); ++it)
    text += (text.empty() ? "" : ", ") + it.key() + "=" + it.value().dump();
  return text.empty() ? "none" : text;
}
} // namespace

Checksum64::Checksum64()
    : v1_(P1 + P2), v2_(P2), v3_(0), v4_(0 - P1) {}

void Checksum64::update(const void *data, uint64_t n) {
  // Lengths, not p + 32 <= end: an empty tensor's data may be null, and null + 32 is undefined.
  const auto *p = static_cast<const uint8_t *>(data);
  total_ += n;
  if (pending_ + n < 32) {
    if (n)
      std::memcpy(stripe_ + pending_, p, n);
    pending_ += n;
    return;
  }
  if (pending_) {
    // Complete the stripe the previous piece left unfinished.
    size_t take = 32 - pending_;
    std::memcpy(stripe_ + pending_, p, take);
    consume(stripe_);
    p += take;
    n -= take;
    pending_ = 0;
  }
  for (; n >= 32; p += 32, n -= 32)
    consume(p);
  if (n)
    std::memcpy(stripe_, p, n);
  pending_ = n;
}

void Checksum64::consume(const uint8_t *stripe) {
  v1_ = round(v1_, read64(stripe));
  v2_ = round(v2_, read64(stripe + 8));
  v3_ = round(v3_, read64(stripe + 16));
  v4_ = round(v4_, read64(stripe + 24));
}

uint64_t Checksum64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v1_, 1) + rotl(v2_, 7) + rotl(v3_, 12) + rotl(v4_, 18);
    h = mergeRound(h, v1_);
    h = mergeRound(h, v2_);
    h = mergeRound(h, v3_);
    h = mergeRound(h, v4_);
  } else {
    h = P5;
  }
  h += total_;
  const uint8_t *p = stripe_, *end = stripe_ + pending_;
  while (end - p >= 8) {
    h ^= round(0, read64(p));
    h = rotl(h, 27) * P1 + P4;
    p += 8;
  }
  if (end - p >= 4) {
    h ^= static_cast<uint64_t>(read32(p)) * P1;
    h = rotl(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(*p) * P5;
    h = rotl(h, 11) * P1;
    ++p;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

uint64_t checksum64(const void *data, uint64_t n) {
  Checksum64 sum;
  sum.update(data, n);
  return sum.digest();
}

std::string journalLine(const JournalEntry &e) {
  std::string line = std::to_string(e.index) + " " + hex16(e.checksum);
  if (e.nan || e.inf)
    line += " nan=" + std::to_string(e.nan) + " inf=" + std::to_string(e.inf);
  if (!e.scope.empty()) {
    line += " scope=";
    for (size_t k = 0; k < e.scope.size(); ++k)
      line += (k ? "," : "") + std::to_string(e.scope[k]);
  }
  return line + " " + nlohmann::json(e.name).dump() + "\n";
}

JournalContents parseJournal(const std::string &text) {
  JournalContents c;
  size_t eol = text.find('\n');
  size_t magic = std::strlen(kMagic);
  if (eol == std::string::npos || text.compare(0, magic, kMagic) != 0)
    return c;
  auto header = nlohmann::json::parse(text.substr(magic, eol - magic), nullptr, false);
  if (!header.is_object())
    return c;
  c.header = std::move(header);
  c.headerEnd = eol + 1;
  size_t pos = eol + 1, lineNo = 2;
  while (pos < text.size()) {
    size_t next = text.find('\n', pos);
    if (next == std::string::npos) {
      c.stoppedAt = "line " + std::to_string(lineNo) + " is incomplete";
      break;
    }
    JournalEntry e;
    if (!parseEntry(text.substr(pos, next - pos), e)) {
      c.stoppedAt = "line " + std::to_string(lineNo) + " is malformed";
      break;
    }
    c.entries.push_back(std::move(e));
    c.ends.push_back(next + 1);
    pos = next + 1;
    ++lineNo;
  }
  return c;
}

JournalContents readJournal(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return {};
  struct stat st;
  std::string text;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    text.resize(static_cast<size_t>(st.st_size));
    ssize_t got = ::pread(fd, text.data(), text.size(), 0);
    text.resize(got > 0 ? static_cast<size_t>(got) : 0);
  }
  ::close(fd);
  return parseJournal(text);
}

std::string journalMismatch(const nlohmann::json &then, const nlohmann::json &now) {
  auto get = [](const nlohmann::json &j, const char *key) {
    return j.is_object() && j.contains(key) ? j.at(key) : nlohmann::json();
  };
  auto text = [](const nlohmann::json &v) {
    return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("none") : v.dump();
  };
  const std::string since = " changed since the interrupted run (";
  if (get(then, "version") != get(now, "version"))
    return "mergec's version" + since + text(get(then, "version")) + " then, " +
           text(get(now, "version")) + " now)";
  if (get(then, "recipe_sha256") != get(now, "recipe_sha256"))
    return "the recipe" + since + "sha256 " + text(get(then, "recipe_sha256")) + " then, " +
           text(get(now, "recipe_sha256")) + " now)";
  if (get(then, "params") != get(now, "params"))
    return "the params" + since + paramsText(get(then, "params")) + " then, " +
           paramsText(get(now, "params")) + " now)";
  if (get(then, "output_dtype") != get(now, "output_dtype"))
    return "--dtype" + since + text(get(then, "output_dtype")) + " then, " +
           text(get(now, "output_dtype")) + " now)";
  if (get(then, "shard_size") != get(now, "shard_size"))
    return "--shard-size" + since + text(get(then, "shard_size")) + " bytes then, " +
           text(get(now, "shard_size")) + " now)";
  if (get(then, "device") != get(now, "device"))
    return "--device" + since + text(get(then, "device")) + " then, " + text(get(now, "device")) +
           " now)";
  nlohmann::json a = get(then, "inputs"), b = get(now, "inputs");
  if (a != b) {
    if (!a.is_array() || !b.is_array())
      return "the input files" + since + "unreadable then)";
    for (const auto &f : b) {
      const nlohmann::json *old = nullptr;
      for (const auto &g : a)
        if (g.value("path", "") == f.value("path", ""))
          old = &g;
      if (!old)
        return "the input files" + since + f.value("path", "?") + " was not an input then)";
      if (*old != f)
        return "input file " + f.value("path", "?") + since + describeInput(*old) + " then, " +
               describeInput(f) + " now)";
    }
    for (const auto &g : a) {
      bool still = false;
      for (const auto &f : b)
        still = still || g.value("path", "") == f.value("path", "");
      if (!still)
        return "the input files" + since + g.value("path", "?") + " is not an input now)";
    }
    return "the input files" + since + "their order)";
  }
  if (get(then, "num_layers") != get(now, "num_layers"))
    return "the output model's layer count" + since + text(get(then, "num_layers")) + " then, " +
           text(get(now, "num_layers")) + " now)";
  if (get(then, "plan") != get(now, "plan"))
    return "the planned output (tensor names, dtypes and shapes)" + since + text(get(then, "plan")) +
           " then, " + text(get(now, "plan")) + " now)";
  if (then != now)
    return "the run's settings" + since + then.dump() + " then, " + now.dump() + " now)";
  return "";
}

namespace {
/// A shard file mapped read-only for verification.
struct MappedShard {
  int fd = -1;
  const uint8_t *data = nullptr;
  uint64_t size = 0;
  bool ok = false;
  std::string error;
  explicit MappedShard(const std::string &path) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      error = "it cannot be read";
      return;
    }
    size = static_cast<uint64_t>(st.st_size);
    if (size) {
      void *p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        error = "it cannot be mapped: " + detail::errnoText(errno);
        return;
      }
      data = static_cast<const uint8_t *>(p);
      ::madvise(p, size, MADV_SEQUENTIAL);
    }
    ok = true;
  }
  ~MappedShard() {
    if (data)
      ::munmap(const_cast<uint8_t *>(data), size);
    if (fd >= 0)
      ::close(fd);
  }
};
} // namespace

ResumePoint verifyJournal(const CheckpointWriter &layout, const std::string &dir,
                          const JournalContents &journal) {
  ResumePoint point;
  const auto &tensors = layout.tensors();
  std::unique_ptr<MappedShard> shard;
  size_t mapped = SIZE_MAX;
  for (size_t i = 0; i < journal.entries.size(); ++i) {
    const JournalEntry &e = journal.entries[i];
    point.index = i;
    if (i >= tensors.size()) {
      point.reason = "the journal has more entries than the plan has tensors";
      return point;
    }
    if (e.index != i || e.name != tensors[i].name) {
      point.reason = "journal entry " + std::to_string(i + 1) + " is tensor " +
                     std::to_string(e.index) + " '" + e.name + "', the plan's is '" +
                     tensors[i].name + "'";
      return point;
    }
    size_t s = layout.shardOf(i);
    const std::string &file = layout.shardFileName(s);
    if (s != mapped) {
      shard = std::make_unique<MappedShard>(detail::joinPath(dir, file));
      mapped = s;
      if (!shard->ok) {
        point.reason = file + ": " + shard->error;
        return point;
      }
      const std::string &header = layout.shardHeader(s);
      point.bytesRead += std::min<uint64_t>(header.size(), shard->size);
      if (shard->size < header.size() ||
          std::memcmp(shard->data, header.data(), header.size()) != 0) {
        point.reason = file + ": its header is not the planned one";
        return point;
      }
    }
    uint64_t offset = layout.fileOffset(i), n = tensors[i].nbytes();
    if (shard->size < offset + n) {
      point.reason = file + " ends before tensor '" + e.name + "'";
      return point;
    }
    point.bytesRead += n;
    if (checksum64(shard->data + offset, n) != e.checksum) {
      point.reason = "tensor '" + e.name + "' in " + file + ": its bytes do not match the journal";
      return point;
    }
    if (layout.lastInShard(i) && shard->size != layout.shardFileBytes(s)) {
      point.reason = file + " is " + std::to_string(shard->size) + " bytes, planned " +
                     std::to_string(layout.shardFileBytes(s));
      return point;
    }
  }
  point.index = journal.entries.size();
  return point;
}

JournalWriter::JournalWriter(const std::string &path, const nlohmann::json &header) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0)
    fail(path, "cannot create the journal: " + detail::errnoText(errno));
  std::string line = kMagic + header.dump() + "\n";
  detail::writeAll(fd_, line.data(), line.size(), path, "journal header");
  sync();
}

JournalWriter::JournalWriter(const std::string &path, uint64_t keepBytes) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd_ < 0)
    fail(path, "cannot open the journal: " + detail::errnoText(errno));
  if (::ftruncate(fd_, static_cast<off_t>(keepBytes)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(keepBytes), SEEK_SET) < 0)
    fail(path, "cannot truncate the journal: " + detail::errnoText(errno));
  sync();
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0)
    ::close(fd_);
}

void JournalWriter::append(const JournalEntry &entry) {
  std::string line = journalLine(entry);
  detail::writeAll(fd_, line.data(), line.size(), path_, "journal entry");
}

void JournalWriter::sync() {
  if (fd_ >= 0 && ::fdatasync(fd_) != 0)
    fail(path_, "fdatasync failed: " + detail::errnoText(errno));
}

void JournalWriter::close() {
  if (fd_ < 0)
    return;
  sync();
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0)
    fail(path_, "close failed: " + detail::errnoText(errno));
}

} // namespace mergec::rt
