//===- RecipeFuzzer.cpp - libFuzzer target: recipe text through Sema ------===//
// Any bytes must give either a checked program or located diagnostics: never a crash, a hang
// or a sanitizer report. The AST dump runs too, since --emit=ast prints every parsed recipe.
#include "mergec/Frontend/Parser.h"
#include "mergec/Frontend/Sema.h"
#include <cstddef>
#include <cstdint>
#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::ostringstream sink;
  mergec::DiagnosticEngine diags("fuzz.merge", std::string(reinterpret_cast<const char *>(data), size),
                                 sink);
  auto recipe = mergec::parseRecipe(diags);
  if (!recipe)
    return 0;
  (void)mergec::ast::dump(*recipe);
  mergec::sema::Overrides overrides;
  (void)mergec::sema::analyze(*recipe, overrides, diags);
  return 0;
}
