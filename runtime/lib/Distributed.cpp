//===- Distributed.cpp - a merge shared by several processes (MPI) --------===//
#include "mergec/Runtime/Distributed.h"
#include "mergec/Runtime/Error.h"

#include <algorithm>
#include <cstdlib>

namespace mergec::rt {

void Communicator::check() {
  if (failed_)
    throw RuntimeError("internal: a collective after a failure");
  if (maxFlag(0) != 0) {
    failed_ = true;
    throw RuntimeError(rankPrefix(this) + "another rank failed (its error is above); the merge "
                       "stops and writes nothing");
  }
}

void Communicator::fail() noexcept {
  if (failed_)
    return;
  failed_ = true;
  try {
    maxFlag(1);
  } catch (...) {
  }
}

int mpiWorldSizeFromEnvironment() {
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char *text = std::getenv(name); text && *text)
      return std::max(1, std::atoi(text));
  for (const char *name : {"PMIX_RANK", "PMI_RANK"})
    if (const char *text = std::getenv(name); text && *text)
      return 0;
  return 1;
}

std::string rankPrefix(const Communicator *comm) {
  if (!comm || comm->size() < 2)
    return "";
  return "rank " + std::to_string(comm->rank()) + "/" + std::to_string(comm->size()) + ": ";
}

} // namespace mergec::rt
