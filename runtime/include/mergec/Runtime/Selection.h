//===- Selection.h - exact order statistics over a select phase's keys -*- C++ -*-===//
// What selection and ranking phases do between their kernels: O(n) selection (a sampled band
// or 16-bit histogram passes, never a sort of the keys) for top-k boundaries and quantiles,
// and per-row ranks.
#pragma once
#include "mergec/Runtime/Error.h"
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mergec::rt {

class ThreadPool;

/// The keys of a selection, chunk by chunk: held in a buffer, or computed for each chunk anew
/// (the select phase's kernel run into the calling thread's scratch), so a pass over them needs
/// no tensor-sized key buffer. The selections below run the chunks of a pass in parallel on a
/// pool (serially without one); what they count are integers, merged by addition, so every
/// result is the same for any number of threads and any order of the chunks.
class KeyChunks {
public:
  /// fill(c, scratch): the keys of chunk c, [begin(c), end(c)): a pointer to them where they
  /// are held, or `scratch` (room for chunkSize() floats, the calling thread's) once written.
  using Fill = std::function<const float *(size_t chunk, float *scratch)>;
  KeyChunks(int64_t n, int64_t chunkSize, bool needsScratch, Fill fill);
  /// n keys in host memory. Chunks of 64K keys: enough work per chunk to hide the hand-out,
  /// and many chunks to share out.
  static KeyChunks buffer(const float *keys, int64_t n, int64_t chunkSize = int64_t{1} << 16);
  int64_t size() const { return n_; }
  int64_t chunkSize() const { return chunk_; }
  bool needsScratch() const { return needsScratch_; }
  size_t chunks() const { return static_cast<size_t>((n_ + chunk_ - 1) / chunk_); }
  int64_t begin(size_t c) const { return static_cast<int64_t>(c) * chunk_; }
  int64_t end(size_t c) const { return std::min(n_, begin(c) + chunk_); }
  const float *get(size_t c, float *scratch) const { return fill_(c, scratch); }

private:
  int64_t n_, chunk_;
  bool needsScratch_;
  Fill fill_;
};

/// "Rank below m" in the order |key| descending, ties by lowest flat index: an element is
/// below the boundary when its magnitude bits exceed `bits`, or equal them at a flat index
/// <= `index`. m = 0 gives bits = 2^32 - 1, index = -1 (nothing is below).
struct RankBoundary {
  double bits = 4294967295.0;
  double index = -1;
};

/// The band [s, s + k) of merge.topk_mask over n elements, `population` of them counted (all,
/// or the non-zero ones): k = int(density * population) as Python computes it, s = int(skip * n)
/// lowered to n - k when s + k > n. One definition for every device.
std::pair<int64_t, int64_t> topkBand(int64_t n, int64_t population, double density, double skip);

/// A float's bits mapped so that unsigned order is numeric order (NaN with the sign bit clear
/// above +inf), and back.
uint32_t orderedKey(float f);
float fromOrderedKey(uint32_t k);

/// The boundaries of merge.topk_mask's band [s, s + k): k = int(density * N), N = n or (with
/// `nonzero`) the non-zero keys; s = int(skip * n), lowered to n - k when s + k > n. First one
/// pass: a sample of chunks (kept, not computed again) puts a band of keys around each
/// boundary; the pass counts the keys above each band and keeps those inside with their
/// indices, and a selection among them gives the boundary where the exact counts show it
/// inside. Where the sample misled: a pass histogramming the magnitudes' high 16 bits, a second
/// the low 16 bits inside the boundary buckets, a third (if their keys were too many to keep)
/// counting each chunk's keys equal to a boundary; the tie's index from one chunk's scan.
/// The same boundaries either way.
void topkBoundaries(ThreadPool *pool, const KeyChunks &keys, double density, double skip,
                    bool nonzero, RankBoundary &hi, RankBoundary &lo);
/// The same over n keys in host memory, on this thread.
void topkBoundaries(const float *keys, int64_t n, double density, double skip, bool nonzero,
                    RankBoundary &hi, RankBoundary &lo);

/// For tests: whether topkBoundaries' band counting may use AVX2 where the CPU has it (the
/// default) or only its plain loop.
void allowSimdBandCounting(bool allow);

/// One of several top-k selections over keys of the same length and chunking (the sibling
/// select phases of a tensor, TIES's one a task vector): its parameters, and its boundaries
/// once topkBoundaries has run.
struct TopKJob {
  const KeyChunks *keys;
  double density, skip;
  bool nonzero;
  RankBoundary hi, lo;
};
/// topkBoundaries for every job, the jobs sharing each pass: a chunk's keys of every job are
/// computed and counted in turn (inputs they share come from cache), and each pass is handed
/// out and merged once. Each job's boundaries are those it would get alone.
void topkBoundaries(ThreadPool *pool, std::vector<TopKJob> &jobs);
/// The most band keys a tensor's sampled pass keeps, all jobs and cuts together, as (key,
/// index) pairs: kTensorBandBytes (the memory check counts it); bands the sample expects to
/// hold more leave their tensor to the counting passes. Llama-7B-shaped tensors' bands fit
/// (11008 x 4096, three TIES task vectors: ~3M keys); at 2^21 they did not, and a 1B merge
/// with TIES gained 5 % instead of 18 %.
constexpr int64_t kMaxTensorBandKeys = int64_t{1} << 22;
constexpr uint64_t kTensorBandBytes = uint64_t{kMaxTensorBandKeys} * 8;

/// merge.topk_mask at model scope: the band [s, s + k) of topkBoundaries over every tensor of
/// a rule taken as one vector (the tensors in plan order, ties by tensor then flat index). Two
/// counting passes over the model (a histogram of the magnitudes' high 16 bits, then of the low
/// 16 bits inside the boundary buckets) find each boundary's magnitude and how many of the
/// elements equal to it are inside; the merge then hands the tie quota out tensor by tensor,
/// counting each tensor's keys equal to a boundary (one more computation of its keys).
///
/// sampleFirst() (the host, one process) replaces those passes where a sample allows: a pass
/// computes a spread of the model's chunks (every stride-th in plan order, at most
/// kMaxSampleKeys keys) and puts a band of keys around each cut from the sample's order;
/// the next pass counts every tensor's keys above each band and keeps those inside with their
/// tensor and index; the exact counts then check the cut's key is inside, where a selection
/// over the band gives it, and each tensor's keys equal to it are already known (no count at
/// merge time). Where the sample misled, or the bands would be too full, the two counting
/// passes follow and give the same boundaries.
class ModelTopK {
public:
  ModelTopK(double density, double skip, bool nonzero);
  /// The sampled passes keep at most kMaxSampleKeys keys of the sample (8 MiB; past it, every
  /// other sampled chunk is dropped and the stride doubles) and kMaxBandKeys (key, index)
  /// pairs in their bands (32 MiB; a sample that expects more leaves the model to the
  /// counting passes); the bands' selection copies their keys (16 MiB) while they are held.
  static constexpr int64_t kMaxSampleKeys = int64_t{1} << 21;
  static constexpr int64_t kMaxBandKeys = int64_t{1} << 22;
  static constexpr uint64_t kBandBytes = uint64_t{kMaxBandKeys} * 8;
  static constexpr uint64_t kSelectionBytes = uint64_t{kMaxBandKeys} * 4;
  /// Before the first pass: take the sampled passes first (a device that streams its keys on
  /// the host, and no other process to combine counts with: they keep keys, not counts) over
  /// a model of `elements` keys, unless even a sample that does not mislead would leave bands
  /// too full there (a band is about N / sqrt(kMaxSampleKeys) keys wide: past ~500M keys).
  /// Returns whether it will.
  bool sampleFirst(int64_t elements);
  /// The tensor the next count() or boundaries() call is for: the sampled passes keep each
  /// tensor's keys equal to a boundary under its name.
  void setTensor(const std::string &name) { tensor_ = name; }
  /// A counting pass sees one more tensor's keys (its chunks in parallel on `pool`, if any).
  void count(ThreadPool *pool, const KeyChunks &keys);
  void count(const float *keys, int64_t n) { count(nullptr, KeyChunks::buffer(keys, n)); }
  /// Ends a counting pass; true once the boundaries are known (after the second, or after
  /// the sampled passes where they held).
  bool finishPass();
  bool known() const { return pass_ == 2; }
  /// What the pass under way does, for the progress log.
  const char *passName() const;
  /// Whether the sampled passes found the boundaries (for tests).
  bool sampled() const { return known() && banded_; }
  /// Starts handing out tie quotas from the first tensor again.
  void rewind();
  /// The boundaries for the next tensor in plan order.
  void boundaries(ThreadPool *pool, const KeyChunks &keys, RankBoundary &hi, RankBoundary &lo);
  void boundaries(const float *keys, int64_t n, RankBoundary &hi, RankBoundary &lo) {
    boundaries(nullptr, KeyChunks::buffer(keys, n), hi, lo);
  }

  /// The same passes for a device that counts where its keys are (a GPU: the keys never come
  /// to the host). Pass 0 wants a histogram of every key's magnitude bits 31..16 (65536 bins)
  /// and, when countsNonzero(), how many keys are not 0; pass 1, for each cut that cutHigh()
  /// names, a histogram of magnitude bits 15..0 over the keys whose bits 31..16 equal it.
  int pass() const { return pass_; }
  bool countsNonzero() const { return nonzero_; }
  void addHighHistogram(const uint64_t *hist, int64_t n, int64_t nonzeros);
  /// Cut 0 is the band's start (hi), cut 1 its end (lo); nullopt when the cut is empty.
  std::optional<uint32_t> cutHigh(int cut) const;
  void addLowHistogram(int cut, const uint64_t *hist);
  /// Merge time: the cut's boundary magnitude (nullopt: an empty cut), then its boundary for
  /// the next tensor from that tensor's count of keys equal to it and the flat index of the
  /// r-th of them (1-based), which is asked for only when the boundary falls in this tensor.
  std::optional<uint32_t> cutValue(int cut) const;
  RankBoundary applyCounted(int cut, int64_t equal,
                            const std::function<int64_t(int64_t)> &indexOf);

  /// The tie quotas handed out so far (the only state boundaries() changes), for --resume to
  /// journal and restore.
  std::pair<int64_t, int64_t> handedOut() const { return {hi_.given, lo_.given}; }
  void setHandedOut(int64_t hi, int64_t lo) {
    hi_.given = hi;
    lo_.given = lo;
  }
  /// The counts of the pass under way (sizes, histograms), one array at a time, for `add` to
  /// replace by their sums over several processes (Distributed.h): integers, so the sum is
  /// the same in any order and equals one process's counting of every tensor.
  template <typename AddFn> void combineCounts(AddFn add) {
    if (pass_ < 0)
      throw RuntimeError("internal: a sampled model-scope top-k across processes");
    if (pass_ == 0) {
      add(&total_, std::size_t{1});
      add(&nonzeros_, std::size_t{1});
      add(high_.data(), high_.size());
    } else if (pass_ == 1) {
      for (Cut *cut : {&hi_, &lo_})
        if (cut->rank > 0)
          add(cut->hist.data(), cut->hist.size());
    }
  }

private:
  struct Cut {
    int64_t rank = 0;    ///< elements below the boundary, over the model
    uint32_t high = 0;   ///< the boundary magnitude's high 16 bits (after the first pass)
    uint32_t value = 0;  ///< the boundary magnitude (after the second)
    int64_t above = 0;   ///< elements strictly above it
    int64_t given = 0;   ///< elements equal to it in the tensors handed out so far
    std::vector<int64_t> hist;
  };
  RankBoundary applyCounted(Cut &cut, int64_t equal, const std::function<int64_t(int64_t)> &indexOf);
  Cut &cutAt(int cut) { return cut == 0 ? hi_ : lo_; }
  const Cut &cutAt(int cut) const { return cut == 0 ? hi_ : lo_; }
  /// The sampled passes (pass_ kSamplePass, then kBandPass).
  static constexpr int kSamplePass = -2, kBandPass = -1;
  void sampleTensor(ThreadPool *pool, const KeyChunks &keys);
  void bandTensor(ThreadPool *pool, const KeyChunks &keys);
  bool finishSample();
  bool finishBand();
  void countFromStart(); ///< the sampled passes misled: the two counting passes instead
  /// A sample chunk: its number over the model (the chunks of the tensors in plan order) and
  /// its magnitude keys.
  struct SampleChunk {
    int64_t number;
    std::vector<uint32_t> keys;
  };
  /// A cut's band [lo, hi] of magnitude keys and its keys: (~key << 32 | flat index), each
  /// tensor's a run of them (tensor tensors_[t]'s from runs_[w][t], during the band pass).
  struct Band {
    uint32_t lo = 1, hi = 0; ///< lo > hi: no band (the cut is not wanted)
    int64_t above = 0, room = 0, filled = 0; ///< keys above it; room and keys kept in it
    std::vector<uint64_t> keys;
  };
  double density_, skip_;
  bool nonzero_;
  int pass_ = 0;
  int64_t total_ = 0, nonzeros_ = 0;
  std::vector<int64_t> high_;
  Cut hi_, lo_;
  std::string tensor_;
  std::vector<SampleChunk> sample_;
  int64_t sampleKeys_ = 0, sampleZeros_ = 0, chunksSeen_ = 0, stride_ = 1;
  bool sampleWhole_ = true; ///< the sample is every key (stride 1, nothing left out)
  Band bands_[2];
  std::vector<std::string> tensors_;
  std::vector<int64_t> runs_[2];
  bool overflow_ = false, banded_ = false;
  /// After the sampled passes: per cut the model wants, each tensor's flat indices of keys
  /// equal to the boundary, ascending (empty for a tensor with none).
  std::map<std::string, std::vector<int64_t>> equal_[2];
};

/// numpy.quantile's linear method over n sorted values: the virtual index q * (n - 1) falls
/// between ascending ranks `below` and `above` (0-based), `t` of the way; `lerp` is numpy's
/// interpolation between the values there. One definition for every device.
struct QuantilePosition {
  int64_t below, above;
  double t;
  double lerp(double a, double b) const {
    // numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) from t = 0.5 on.
    double diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
  }
};
QuantilePosition quantilePosition(int64_t n, double q);

/// numpy.quantile(keys, q) with the default linear method, in f64. NaN when n == 0. One pass
/// histograms the high 16 bits, a second (unless the buckets hold one value each) the low bits
/// inside the one or two buckets the neighbouring ranks fall in.
double quantile(ThreadPool *pool, const KeyChunks &keys, double q);
double quantile(const float *keys, int64_t n, double q);

/// The chunk size for row keys: whole rows of `cols`, about 64K keys (at least one row).
int64_t rowChunkSize(int64_t cols);

/// ranks[i] = the rank 1..cols of |keys[i]| ascending within its row of `cols` elements, ties
/// by lowest index; elements past the last whole row are not written. Chunks (of whole rows:
/// rowChunkSize) run in parallel on `pool`.
void rowRanks(ThreadPool &pool, const KeyChunks &keys, float *ranks, int64_t cols);
void rowRanks(ThreadPool &pool, const float *keys, float *ranks, int64_t n, int64_t cols);

/// out[r] = the sum (in f64, rounded once; `sum`) or the maximum (NaN if any is NaN) of the
/// keys in row r of `cols` elements: one value per whole row (the kernels read element i's at
/// i / cols). Chunks of whole rows run in parallel on `pool`. A row's
/// sum is the GPU's order (mergec_row_reduce): L lanes (the least power of two >= cols, 32 to
/// 256), lane t adding columns t, t + L, ... in order, combined by halving strides.
void rowReduce(ThreadPool &pool, const KeyChunks &keys, float *out, int64_t cols, bool sum);
void rowReduce(ThreadPool &pool, const float *keys, float *out, int64_t n, int64_t cols, bool sum);

/// One of several row phases over keys of the same length and row chunks (a tensor's sibling
/// row phases): rowRanks or rowReduce of `keys` into `out` (a rank per element, a sum or
/// maximum per row).
struct RowJob {
  enum class Op { Rank, Sum, Max };
  const KeyChunks *keys;
  float *out;
  Op op;
};
/// Every job, the jobs sharing one pass: a chunk of rows of every job is computed in turn, so
/// the inputs their keys share come from cache. The same results as each alone.
void rowPhases(ThreadPool &pool, std::vector<RowJob> &jobs, int64_t cols);

} // namespace mergec::rt
