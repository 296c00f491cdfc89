//===- Mpi.cpp - `mergec run` under mpirun ---------------------------------===//
// The only file that includes mpi.h, compiled into mergec alone (MERGEC_MPI): the runtime and
// merge executables stay free of libmpi (docs/cli.md, "Several processes and machines (MPI)").
#include "Mpi.h"
#include "mergec/Runtime/Error.h"

#ifdef MERGEC_HAVE_MPI
#include <mpi.h>
#endif

namespace mergec {

#ifdef MERGEC_HAVE_MPI
namespace {

void checked(int status, const char *what) {
  if (status == MPI_SUCCESS)
    return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw rt::RuntimeError(std::string("MPI: ") + what + " failed: " + text);
}

class MpiCommunicator : public rt::Communicator {
public:
  MpiCommunicator() {
    int provided = 0;
    checked(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // Errors come back as codes (checked() throws) rather than aborting the job.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void sum(int64_t *data, size_t n) override {
    static_assert(sizeof(int64_t) == sizeof(long long));
    // In pieces: MPI counts are ints.
    constexpr size_t kPiece = size_t{1} << 28;
    for (size_t at = 0; at < n; at += kPiece)
      checked(MPI_Allreduce(MPI_IN_PLACE, data + at, static_cast<int>(std::min(kPiece, n - at)),
                            MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
  }

  std::vector<double> allgather(const double *data, size_t n) override {
    if (n > (size_t{1} << 30) / static_cast<size_t>(size_))
      throw rt::RuntimeError("MPI: too many model-scope totals to gather");
    std::vector<double> all(n * static_cast<size_t>(size_));
    checked(MPI_Allgather(data, static_cast<int>(n), MPI_DOUBLE, all.data(), static_cast<int>(n),
                          MPI_DOUBLE, MPI_COMM_WORLD),
            "MPI_Allgather");
    return all;
  }

  std::string broadcast(const std::string &text) override {
    long long length = static_cast<long long>(text.size());
    checked(MPI_Bcast(&length, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
    std::string out = rank_ == 0 ? text : std::string(static_cast<size_t>(length), '\0');
    checked(MPI_Bcast(out.data(), static_cast<int>(length), MPI_CHAR, 0, MPI_COMM_WORLD),
            "MPI_Bcast");
    return out;
  }

protected:
  int64_t maxFlag(int64_t flag) override {
    long long value = flag;
    checked(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD),
            "MPI_Allreduce");
    return value;
  }

private:
  int rank_ = 0, size_ = 1;
};

} // namespace
#endif

std::unique_ptr<rt::Communicator> startMpi() {
  int size = rt::mpiWorldSizeFromEnvironment();
  if (size == 1)
    return nullptr;
#ifdef MERGEC_HAVE_MPI
  return std::make_unique<MpiCommunicator>();
#else
  throw rt::RuntimeError("this mergec was built without MPI (MERGEC_MPI=OFF: Open MPI's "
                         "development files were not found), so it cannot share a merge among "
                         "the processes of mpirun; run a single process, or rebuild it with "
                         "libopenmpi-dev installed (docs/cli.md)");
#endif
}

} // namespace mergec
