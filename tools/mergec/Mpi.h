//===- Mpi.h - `mergec run` under mpirun ------------------------*- C++ -*-===//
#pragma once
#include "mergec/Runtime/Distributed.h"
#include <memory>

namespace mergec {

/// Under an MPI launcher (Distributed.h's mpiWorldSizeFromEnvironment): initializes MPI and
/// returns MPI_COMM_WORLD as a Communicator that finalizes MPI when destroyed. Not under one:
/// null, and MPI is never touched. A mergec built without MERGEC_MPI throws RuntimeError when
/// launched as several processes (each would otherwise merge the whole output on its own).
/// Call it on the thread that makes every MPI call.
std::unique_ptr<rt::Communicator> startMpi();

} // namespace mergec
