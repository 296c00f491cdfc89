//===- Events.h - what a merge tells its user, as text or JSON Lines -*- C++ -*-===//
// Everything `mergec run` and merge executables say on stderr goes through one EventStream:
// errors, warnings, notes, status lines, progress, the plan and the end of the run. By default
// it writes the human text it always has; with --json (RunOptions::json) stderr carries only
// JSON Lines instead, one compact object per event, each with "event" and "t" (seconds since
// the process started, monotonic). docs/cli.md lists the events and their fields.
#pragma once
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace mergec::rt {

struct MergePlan;
struct RuleSpec;
struct RunOptions;
struct RunStats;

/// Where a diagnostic points in a recipe (line and column from 1; 0: the file as a whole).
struct SourcePosition {
  std::string file;
  int line = 0, column = 0;
};

class EventStream {
public:
  /// Receives each complete output line (with its '\n'); the default writes to stderr.
  using Sink = std::function<void(const std::string &)>;
  explicit EventStream(Sink sink = {});

  /// Where lines go from now on (a library caller collecting them); empty: stderr.
  void setSink(Sink sink);
  /// `program` prefixes human messages ("mergec: warning: ..."); `json` selects JSON Lines.
  void configure(std::string program, bool json);
  bool json() const { return json_; }
  const std::string &program() const { return program_; }
  /// Seconds since this stream was made (the process's start, for events()).
  double seconds() const;

  /// An error: "PROGRAM: error: MESSAGE", or {"event":"error","message",...} with "file" and
  /// "tensor" when not empty.
  void error(const std::string &message, const std::string &file = "",
             const std::string &tensor = "");
  /// A warning or a note: "PROGRAM: warning: MESSAGE", or {"event":"warning","level":
  /// "warning"|"note","message"}.
  void warning(const std::string &message);
  void note(const std::string &message);
  /// A compiler diagnostic ("error", "warning" or "note") at `where`: JSON only (the human
  /// form, with the source line and a caret, is DiagnosticEngine's). An error event, or a
  /// warning event with "level"; "file", "line" and "column" from `where`.
  void diagnostic(const char *severity, const SourcePosition &where, const std::string &message);
  /// A status line (--verbose detail, model-scope passes, resuming): the line itself, or
  /// {"event":"info","message":LINE}.
  void info(const std::string &line);
  /// Any other event: `fields` (an object) with "event" and "t" put first. JSON mode only:
  /// nothing is written otherwise.
  void emit(const std::string &event,
            const nlohmann::ordered_json &fields = nlohmann::ordered_json::object());

  /// One JSON object as one line: compact, "event" and "t" first, then `fields` in order;
  /// invalid UTF-8 (a path's bytes) becomes U+FFFD rather than an exception.
  static std::string line(const std::string &event, double t, const nlohmann::ordered_json &fields);

private:
  void write(const std::string &text);
  Sink sink_;
  std::string program_ = "mergec";
  bool json_ = false;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
};

/// The process's event stream (stderr). Front ends configure it once they know --json.
EventStream &events();

/// Whether argv holds --json (before the options are parsed, so that a usage error is an event
/// too).
bool jsonRequested(int argc, char **argv);

/// The "plan" event, once the plan is made and its memory checked (JSON mode only).
void reportPlan(const MergePlan &plan, const std::vector<RuleSpec> &rules,
                const RunOptions &options, uint64_t memoryEstimate);
/// The end of a run: the NaN/inf warning when there is one, then (JSON mode) the "done" event.
void reportDone(const RunStats &stats, const RunOptions &options);

} // namespace mergec::rt
