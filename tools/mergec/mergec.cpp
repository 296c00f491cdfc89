//===- mergec.cpp - the mergec command line: run, compile, import, inspect --===//
#include "Driver.h"
#include "Inspect.h"
#include "Mpi.h"
#include "Options.h"

#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/Interrupts.h"

#include "llvm/Config/llvm-config.h"

#include <iostream>
#include <new>

using namespace mergec;

int main(int argc, char **argv) {
  // First, before any thread exists: an interrupt removes the unfinished output.
  rt::installInterruptCleanup();
  // --json anywhere: even a usage error is an event; the parsed options then decide.
  rt::events().configure("mergec", rt::jsonRequested(argc, argv));
  CommandLine cl;
  if (auto status = parseCommandLine(argc, argv, cl))
    return *status;
  rt::events().configure("mergec", cl.run.json);
  try {
    switch (cl.command) {
    case Command::Version:
      std::cout << "mergec " << MERGEC_VERSION << " (LLVM/MLIR " << LLVM_VERSION_STRING << ")\n";
      return 0;
    case Command::Compile:
      return onLargeStack([&] {
        Compilation c;
        return runCompile(cl, c);
      });
    case Command::Run:
      return onLargeStack([&] {
        Compilation c;
        return runMerge(cl, c, startMpi);
      });
    case Command::Import:
      return runImport(cl);
    case Command::Inspect:
      return onLargeStack([&] { return runInspect(cl); });
    }
  } catch (const rt::RuntimeError &e) {
    rt::events().error(e.what(), e.file(), e.tensor());
    return 1;
  } catch (const std::bad_alloc &) {
    rt::events().error("out of memory");
    return 1;
  }
  return 0;
}
