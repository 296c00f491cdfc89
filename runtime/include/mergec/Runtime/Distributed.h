//===- Distributed.h - a merge shared by several processes (MPI) -*- C++ -*-===//
// The runtime knows only this interface: `mergec run` implements it with MPI when it was built
// with MERGEC_MPI and runs under mpirun (tools/mergec/Mpi.cpp); merge executables never do, so
// neither the runtime nor they link libmpi. docs/cli.md, "Several processes and machines (MPI)".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mergec::rt {

/// The processes ("ranks") of one merge. Every collective must be called by every rank in the
/// same order. A failure becomes everyone's at the next check(): each collective group starts
/// with one, and a rank that fails calls fail() (once; it matches the others' next check()).
class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// Throws RuntimeError on every rank when some rank called fail() instead.
  void check();
  /// This rank failed: tells the others at their next check(). Once; never throws; nothing
  /// after it may use the communicator. A no-op when check() already reported a failure.
  void fail() noexcept;
  /// Whether this rank learned of a failure (from check() or fail()).
  bool failed() const { return failed_; }

  /// Element-wise sum over the ranks, on every rank (exact: integers).
  virtual void sum(int64_t *data, size_t n) = 0;
  /// Every rank's `n` doubles, rank 0's first, on every rank.
  virtual std::vector<double> allgather(const double *data, size_t n) = 0;
  /// Rank 0's string, on every rank.
  virtual std::string broadcast(const std::string &text) = 0;

protected:
  /// The largest `flag` over the ranks, on every rank.
  virtual int64_t maxFlag(int64_t flag) = 0;

private:
  bool failed_ = false;
};

/// The world size an MPI launcher gave this process, from its environment
/// (OMPI_COMM_WORLD_SIZE, PMI_SIZE); 0 when launched by one whose size it does not say
/// (PMIX_RANK, PMI_RANK alone); 1 when not launched by one.
int mpiWorldSizeFromEnvironment();

/// "rank r/N: " under a communicator of several ranks, else "".
std::string rankPrefix(const Communicator *comm);

} // namespace mergec::rt
