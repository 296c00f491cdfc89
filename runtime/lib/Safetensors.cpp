//===- Safetensors.cpp - mmap'd safetensors reader ------------------------===//
// The header is validated completely before a TensorInfo is handed out, so later code can
// trust every offset: nothing here (or downstream) reads outside the mapping.
#include "mergec/Runtime/Safetensors.h"
#include "Support.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mergec::rt {

using detail::fail;
using nlohmann::json;

namespace {
/// The reference implementation's limit: larger headers are refused rather than parsed.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string jsonTypeName(const json &j) { return j.type_name(); }

std::string tensorContext(const std::string &name) { return "tensor '" + name + "': "; }

std::string offsetsText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

/// A JSON integer that must fit in [0, INT64_MAX]; `what` names it in messages.
uint64_t nonNegativeInt(const json &j, const std::string &file, const std::string &context,
                        const std::string &what) {
  if (!j.is_number_integer())
    fail(file, context + what + " must be an integer, not " + jsonTypeName(j) + " " +
                   detail::jsonExcerpt(j));
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX))
      fail(file, context + what + " " + std::to_string(v) + " is too large");
    return v;
  }
  int64_t v = j.get<int64_t>();
  if (v < 0)
    fail(file, context + what + " " + std::to_string(v) + " is negative");
  return static_cast<uint64_t>(v);
}

std::map<std::string, std::string> parseMetadata(const json &j, const std::string &file) {
  if (!j.is_object())
    fail(file, "__metadata__ must be an object of strings, not " + jsonTypeName(j));
  std::map<std::string, std::string> out;
  for (const auto &[key, value] : j.items()) {
    if (!value.is_string())
      fail(file,
           "__metadata__ must map strings to strings, but '" + key + "' is " + jsonTypeName(value));
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

const json &requireField(const json &entry, const char *field, const std::string &file,
                         const std::string &context) {
  auto it = entry.find(field);
  if (it == entry.end())
    fail(file, context + "missing '" + field + "'");
  return *it;
}

/// Parses one tensor entry (everything but its location in the file).
TensorInfo parseTensorEntry(const std::string &name, const json &entry, const std::string &file,
                            uint64_t dataSize) {
  std::string ctx = tensorContext(name);
  if (!entry.is_object())
    fail(file, ctx + "entry must be an object, not " + jsonTypeName(entry));
  TensorInfo t;
  t.name = name;

  const json &dtype = requireField(entry, "dtype", file, ctx);
  if (!dtype.is_string())
    fail(file, ctx + "dtype must be a string, not " + jsonTypeName(dtype));
  auto parsed = parseDType(dtype.get<std::string>());
  if (!parsed)
    fail(file, ctx + "unknown dtype '" + dtype.get<std::string>() + "'");
  t.dtype = *parsed;

  const json &shape = requireField(entry, "shape", file, ctx);
  if (!shape.is_array())
    fail(file, ctx + "shape must be an array, not " + jsonTypeName(shape));
  // Element count times element size, checked for overflow at every step.
  uint64_t nbytes = dtypeSize(t.dtype);
  bool overflow = false;
  for (const json &dim : shape) {
    uint64_t d = nonNegativeInt(dim, file, ctx, "shape dimension");
    t.shape.push_back(static_cast<int64_t>(d));
    overflow |= __builtin_mul_overflow(nbytes, d, &nbytes);
  }
  if (overflow)
    fail(file, ctx + "shape " + t.shapeString() + " is too large");

  const json &offsets = requireField(entry, "data_offsets", file, ctx);
  if (!offsets.is_array() || offsets.size() != 2)
    fail(file, ctx + "data_offsets must be an array of two integers, not " +
                   detail::jsonExcerpt(offsets));
  uint64_t begin = nonNegativeInt(offsets[0], file, ctx, "data_offsets begin");
  uint64_t end = nonNegativeInt(offsets[1], file, ctx, "data_offsets end");
  if (begin > end)
    fail(file, ctx + "data_offsets " + offsetsText(begin, end) + " are reversed");
  if (end > dataSize)
    fail(file, ctx + "data_offsets " + offsetsText(begin, end) + " end past the data region (" +
                   std::to_string(dataSize) + " bytes)");
  if (end - begin != nbytes)
    fail(file, ctx + "data_offsets " + offsetsText(begin, end) + " hold " +
                   std::to_string(end - begin) + " bytes but shape " + t.shapeString() + " of " +
                   dtypeName(t.dtype) + " needs " + std::to_string(nbytes));
  t.offset = begin; // relative to the data region until the caller rebases it
  t.nbytes = nbytes;
  return t;
}

/// Tensors must tile the data region exactly, in offset order: no overlap, gap or tail.
void checkCoverage(const std::vector<TensorInfo> &sorted, const std::string &file,
                   uint64_t dataSize) {
  uint64_t cursor = 0;
  const TensorInfo *prev = nullptr;
  for (const TensorInfo &t : sorted) {
    uint64_t begin = t.offset, end = t.offset + t.nbytes;
    if (begin < cursor)
      fail(file, tensorContext(t.name) + "data_offsets " + offsetsText(begin, end) +
                     " overlap tensor '" + prev->name + "' " +
                     offsetsText(prev->offset, prev->offset + prev->nbytes));
    if (begin > cursor)
      fail(file, tensorContext(t.name) + "data_offsets " + offsetsText(begin, end) +
                     " leave a gap: bytes [" + std::to_string(cursor) + ", " +
                     std::to_string(begin) + ") of the data region belong to no tensor");
    cursor = end;
    prev = &t;
  }
  if (cursor != dataSize)
    fail(file, "data region has " + std::to_string(dataSize - cursor) +
                   " trailing bytes after the last tensor (tensors cover " +
                   std::to_string(cursor) + " of " + std::to_string(dataSize) + ")");
}
} // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string TensorInfo::shapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string &path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  struct stat st;
  f->fd_ = detail::openRegularFile(path, st);
  f->size_ = static_cast<uint64_t>(st.st_size);
  f->mtimeSeconds_ = st.st_mtim.tv_sec;
  f->mtimeNanoseconds_ = st.st_mtim.tv_nsec;
  if (f->size_ < 8)
    fail(path, "file is truncated (" + std::to_string(f->size_) +
                   " bytes, need at least 8 for the header length)");
  void *map = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, f->fd_, 0);
  if (map == MAP_FAILED)
    fail(path, "cannot mmap: " + detail::errnoText(errno));
  f->map_ = static_cast<const uint8_t *>(map);
  f->guard_ = std::make_unique<MappedInputGuard>(map, f->size_, path);

  // Little-endian u64, assembled byte by byte so the host's byte order does not matter.
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = (headerLen << 8) | f->map_[i];
  if (headerLen > f->size_ - 8)
    fail(path, "header length " + std::to_string(headerLen) + " exceeds file size " +
                   std::to_string(f->size_));
  if (headerLen > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(headerLen) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  std::string_view headerText(reinterpret_cast<const char *>(f->map_ + 8), headerLen);
  json header = detail::parseStrictJson(headerText, path, "header");
  if (!header.is_object())
    fail(path, std::string("header must be a JSON object, not ") + header.type_name());
  // The format requires '{' first; nlohmann would also skip leading whitespace or a BOM.
  if (headerText.front() != '{')
    fail(path, "header must begin with '{'");

  uint64_t dataStart = 8 + headerLen, dataSize = f->size_ - dataStart;
  for (const auto &[key, value] : header.items()) {
    if (key == "__metadata__")
      f->metadata_ = parseMetadata(value, path);
    else
      f->tensors_.push_back(parseTensorEntry(key, value, path, dataSize));
  }
  // Zero-byte tensors share an offset with their neighbour; ordering by end then keeps the
  // empty one first, so coverage stays a simple running cursor.
  std::sort(f->tensors_.begin(), f->tensors_.end(), [](const TensorInfo &a, const TensorInfo &b) {
    if (a.offset != b.offset)
      return a.offset < b.offset;
    if (a.nbytes != b.nbytes)
      return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  checkCoverage(f->tensors_, path, dataSize);

  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    TensorInfo &t = f->tensors_[i];
    t.offset += dataStart;
    t.data = f->map_ + t.offset;
    t.file = f.get();
    f->byName_.emplace(t.name, i);
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  guard_.reset(); // before the range can be mapped again for another file
  if (map_)
    ::munmap(const_cast<uint8_t *>(map_), size_);
  if (fd_ >= 0)
    ::close(fd_);
}

void SafetensorsFile::checkUnchanged() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0)
    fail(path_, "cannot stat: " + detail::errnoText(errno));
  if (static_cast<uint64_t>(st.st_size) != size_)
    fail(path_, "changed while mergec was reading it (now " + std::to_string(st.st_size) +
                    " bytes, " + std::to_string(size_) +
                    " when opened: truncated, or rewritten by a download?)");
  if (st.st_mtim.tv_sec != mtimeSeconds_ || st.st_mtim.tv_nsec != mtimeNanoseconds_)
    fail(path_, "changed while mergec was reading it (modified after it was opened: rewritten "
                "by a download?)");
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : &tensors_[it->second];
}

namespace {
uint64_t pageSize() {
  static const uint64_t size = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}
} // namespace

void SafetensorsFile::prefetch(const TensorInfo &t) const {
  if (t.nbytes == 0 || t.file != this)
    return;
  // Round outward: every page holding a byte of the tensor is wanted.
  uint64_t page = pageSize();
  uint64_t begin = t.offset / page * page;
  uint64_t end = std::min(size_, t.offset + t.nbytes);
  ::madvise(const_cast<uint8_t *>(map_) + begin, end - begin, MADV_WILLNEED);
}

void SafetensorsFile::release(const TensorInfo &t) const { release(t, 0, t.nbytes); }

void SafetensorsFile::release(const TensorInfo &t, uint64_t from, uint64_t to) const {
  to = std::min(to, t.nbytes);
  if (from >= to || t.file != this)
    return;
  // Round inward: the edge pages may hold a neighbour, or the rest of this tensor, that is
  // still being read.
  uint64_t page = pageSize();
  uint64_t begin = (t.offset + from + page - 1) / page * page;
  uint64_t end = (t.offset + to) / page * page;
  if (t.offset + to == size_) // nothing follows the last tensor: take its tail page too
    end = (size_ + page - 1) / page * page;
  if (end > begin)
    ::madvise(const_cast<uint8_t *>(map_) + begin, end - begin, MADV_DONTNEED);
}

} // namespace mergec::rt
