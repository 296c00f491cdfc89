//===- Diagnostics.cpp - located recipe errors ----------------------------===//
#include "mergec/Frontend/Diagnostics.h"
#include <ostream>
#include <sstream>

namespace mergec {

DiagnosticEngine::DiagnosticEngine(std::string fileName, std::string source, std::ostream &out)
    : fileName_(std::move(fileName)), source_(std::move(source)), out_(out) {
  std::istringstream in(source_);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    lines_.push_back(line);
  }
}

void DiagnosticEngine::error(ast::SourceLoc loc, const std::string &message) {
  ++errors_;
  emit("error", loc, message);
}

void DiagnosticEngine::warning(ast::SourceLoc loc, const std::string &message) {
  emit("warning", loc, message);
}

void DiagnosticEngine::note(ast::SourceLoc loc, const std::string &message) {
  emit("note", loc, message);
}

void DiagnosticEngine::emit(const char *severity, ast::SourceLoc loc, const std::string &message) {
  if (loc.line <= 0) {
    out_ << fileName_ << ": " << severity << ": " << message << "\n";
    return;
  }
  out_ << fileName_ << ":" << loc.line << ":" << loc.col << ": " << severity << ": " << message
       << "\n";
  if (loc.line > static_cast<int>(lines_.size()))
    return;
  const std::string &text = lines_[loc.line - 1];
  out_ << text << "\n";
  // Keep tabs in the caret line so the caret sits under the column on any tab width.
  std::string caret;
  for (int i = 0; i + 1 < loc.col && i < static_cast<int>(text.size()); ++i)
    caret += text[i] == '\t' ? '\t' : ' ';
  out_ << caret << "^\n";
}

} // namespace mergec
