//===- Diagnostics.h - located recipe errors --------------------*- C++ -*-===//
// Formats `file:line:col: error: message`, then the source line and a caret, the way
// compilers users already know do.
#pragma once
#include "mergec/AST/AST.h"
#include <iosfwd>
#include <string>
#include <vector>

namespace mergec {

class DiagnosticEngine {
public:
  DiagnosticEngine(std::string fileName, std::string source, std::ostream &out);

  void error(ast::SourceLoc loc, const std::string &message);
  void warning(ast::SourceLoc loc, const std::string &message);
  void note(ast::SourceLoc loc, const std::string &message);
  unsigned errorCount() const { return errors_; }
  const std::string &fileName() const { return fileName_; }
  const std::string &source() const { return source_; }

private:
  void emit(const char *severity, ast::SourceLoc loc, const std::string &message);
  std::string fileName_, source_;
  std::vector<std::string> lines_;
  std::ostream &out_;
  unsigned errors_ = 0;
};

} // namespace mergec
