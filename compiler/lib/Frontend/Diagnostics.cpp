//===- Diagnostics.cpp - located recipe errors ----------------------------===//
#include "mergec/Frontend/Diagnostics.h"
#include "mergec/Runtime/Events.h"
#include <algorithm>
#include <ostream>
#include <sstream>

namespace mergec {

DiagnosticEngine::DiagnosticEngine(std::string fileName, std::string source, std::ostream &out)
    : out_(out) {
  addFile(std::move(fileName), std::move(source));
}

int DiagnosticEngine::addFile(std::string fileName, std::string source) {
  File file{std::move(fileName), std::move(source), {}};
  std::istringstream in(file.source);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    file.lines.push_back(line);
  }
  files_.push_back(std::move(file));
  return static_cast<int>(files_.size()) - 1;
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
  const File &file = files_[loc.file];
  records_.push_back({severity, file.name, std::max(loc.line, 0), loc.line > 0 ? loc.col : 0,
                      message});
  if (rt::events().json()) {
    // --json: one event with the position as fields; no source line, no caret.
    rt::events().diagnostic(severity, {file.name, std::max(loc.line, 0), loc.col}, message);
    return;
  }
  if (loc.line <= 0) {
    out_ << file.name << ": " << severity << ": " << message << "\n";
    return;
  }
  out_ << file.name << ":" << loc.line << ":" << loc.col << ": " << severity << ": " << message
       << "\n";
  if (loc.line > static_cast<int>(file.lines.size()))
    return;
  const std::string &text = file.lines[loc.line - 1];
  out_ << text << "\n";
  // Keep tabs in the caret line so the caret sits under the column on any tab width.
  std::string caret;
  for (int i = 0; i + 1 < loc.col && i < static_cast<int>(text.size()); ++i)
    caret += text[i] == '\t' ? '\t' : ' ';
  out_ << caret << "^\n";
}

} // namespace mergec
