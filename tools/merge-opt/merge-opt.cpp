//===- merge-opt.cpp - the merge dialect and passes, for lit tests --------===//
#include "mergec/MergeInitAll.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mergec::registerAllDialects(registry);
  mergec::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "merge dialect optimizer driver\n", registry));
}
