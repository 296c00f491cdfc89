//===- Diagnostics.h - located recipe errors --------------------*- C++ -*-===//
// Formats `file:line:col: error: message`, then the source line and a caret, the way
// compilers users already know do. With --json (rt::events().json()) each diagnostic is an
// event instead (Runtime/Events.h), its position as fields.
#pragma once
#include "mergec/AST/AST.h"
#include <iosfwd>
#include <string>
#include <vector>

namespace mergec {

class DiagnosticEngine {
public:
  /// One diagnostic as reported, kept for library callers (the Python module's RecipeError).
  struct Record {
    std::string severity; ///< "error", "warning" or "note"
    std::string file;
    int line = 0, column = 0; ///< from 1; 0: the file as a whole
    std::string message;
  };

  /// Registers the recipe as file 0.
  DiagnosticEngine(std::string fileName, std::string source, std::ostream &out);
  /// Registers another source (a stdlib file); returns its index for SourceLoc::file.
  int addFile(std::string fileName, std::string source);

  void error(ast::SourceLoc loc, const std::string &message);
  void warning(ast::SourceLoc loc, const std::string &message);
  void note(ast::SourceLoc loc, const std::string &message);
  unsigned errorCount() const { return errors_; }
  const std::string &fileName(int file = 0) const { return files_[file].name; }
  int fileCount() const { return static_cast<int>(files_.size()); }
  const std::string &source(int file = 0) const { return files_[file].source; }
  /// Every diagnostic reported so far, in order.
  const std::vector<Record> &records() const { return records_; }

private:
  struct File {
    std::string name, source;
    std::vector<std::string> lines;
  };
  void emit(const char *severity, ast::SourceLoc loc, const std::string &message);
  std::vector<File> files_;
  std::ostream &out_;
  unsigned errors_ = 0;
  std::vector<Record> records_;
};

} // namespace mergec
