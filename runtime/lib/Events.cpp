//===- Events.cpp - what a merge tells its user, as text or JSON Lines ----===//
#include "mergec/Runtime/Events.h"
#include "mergec/Runtime/CheckpointWriter.h"
#include "mergec/Runtime/Executor.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace mergec::rt {

using nlohmann::ordered_json;

EventStream::EventStream(Sink sink)
    : sink_(std::move(sink)), start_(std::chrono::steady_clock::now()) {}

void EventStream::setSink(Sink sink) {
  std::lock_guard<std::mutex> lock(mutex_);
  sink_ = std::move(sink);
}

void EventStream::configure(std::string program, bool json) {
  std::lock_guard<std::mutex> lock(mutex_);
  program_ = std::move(program);
  json_ = json;
}

double EventStream::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string EventStream::line(const std::string &event, double t, const ordered_json &fields) {
  ordered_json object = ordered_json::object();
  object["event"] = event;
  // Milliseconds are plenty, and keep the lines short.
  object["t"] = static_cast<double>(static_cast<int64_t>(t * 1000 + 0.5)) / 1000;
  for (auto it = fields.begin(); it != fields.end(); ++it)
    if (it.key() != "event" && it.key() != "t")
      object[it.key()] = it.value();
  return object.dump(-1, ' ', /*ensure_ascii=*/false, ordered_json::error_handler_t::replace) +
         "\n";
}

void EventStream::write(const std::string &text) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sink_) {
    sink_(text);
    return;
  }
  // One write per line, so lines from different threads never interleave.
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void EventStream::emit(const std::string &event, const ordered_json &fields) {
  if (json_)
    write(line(event, seconds(), fields));
}

void EventStream::error(const std::string &message, const std::string &file,
                        const std::string &tensor) {
  if (!json_) {
    write(program_ + ": error: " + message + "\n");
    return;
  }
  ordered_json fields = {{"message", message}};
  if (!file.empty())
    fields["file"] = file;
  if (!tensor.empty())
    fields["tensor"] = tensor;
  emit("error", fields);
}

void EventStream::warning(const std::string &message) {
  if (json_)
    emit("warning", {{"level", "warning"}, {"message", message}});
  else
    write(program_ + ": warning: " + message + "\n");
}

void EventStream::note(const std::string &message) {
  if (json_)
    emit("warning", {{"level", "note"}, {"message", message}});
  else
    write(program_ + ": note: " + message + "\n");
}

void EventStream::diagnostic(const char *severity, const SourcePosition &where,
                             const std::string &message) {
  bool isError = std::strcmp(severity, "error") == 0;
  ordered_json fields = ordered_json::object();
  if (!isError)
    fields["level"] = severity;
  fields["message"] = message;
  fields["file"] = where.file;
  if (where.line > 0) {
    fields["line"] = where.line;
    fields["column"] = where.column;
  }
  emit(isError ? "error" : "warning", fields);
}

void EventStream::info(const std::string &text) {
  if (json_)
    emit("info", {{"message", text}});
  else
    write(text + "\n");
}

EventStream &events() {
  static EventStream stream; // made at the first call: main() configures it first thing
  return stream;
}

bool jsonRequested(int argc, char **argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--json") == 0)
      return true;
  return false;
}

namespace {
std::string absolutePath(const std::string &path) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}
} // namespace

void reportPlan(const MergePlan &plan, const std::vector<RuleSpec> &rules,
                const RunOptions &options, uint64_t memoryEstimate) {
  EventStream &stream = events();
  if (!stream.json())
    return;
  size_t copied = 0;
  uint64_t outputBytes = 0;
  std::vector<OutputTensorSpec> specs;
  std::vector<size_t> perRule(rules.size(), 0);
  for (const MergePlan::Item &item : plan.items) {
    copied += item.copy;
    specs.push_back({item.base->name, item.outDType, item.base->shape});
    outputBytes += specs.back().nbytes();
    if (item.rule < perRule.size())
      ++perRule[item.rule];
  }
  ordered_json models = ordered_json::array();
  for (const ModelSpec &m : plan.models) {
    models.push_back({{"name", m.name}, {"path", m.path}});
    if (m.kind == ModelSpec::Kind::Lora) {
      models.back()["kind"] = "lora";
      models.back()["on"] = m.on;
    }
  }
  ordered_json ruleList = ordered_json::array();
  for (size_t r = 0; r < rules.size(); ++r)
    ruleList.push_back({{"patterns", rules[r].patterns}, {"tensors", perRule[r]}});
  stream.emit("plan", {{"tensors", plan.items.size()},
                       {"computed", plan.items.size() - copied},
                       {"copied", copied},
                       {"input_bytes", plan.inputBytes},
                       {"output_bytes", outputBytes},
                       {"shards", shardCount(specs, options.shardSize)},
                       {"output", absolutePath(options.output)},
                       {"device", deviceName(options.device)},
                       {"models", models},
                       {"rules", ruleList},
                       {"memory_estimate_bytes", memoryEstimate}});
}

void reportDone(const RunStats &stats, const RunOptions &options) {
  EventStream &stream = events();
  if (std::string warning = nonFiniteWarning(stats); !warning.empty())
    stream.warning(warning);
  if (!stream.json())
    return;
  ordered_json nonFinite = ordered_json::array();
  for (const auto &[tensor, counts] : stats.nonFinite)
    nonFinite.push_back({{"tensor", tensor}, {"nan", counts.nan}, {"inf", counts.inf}});
  stream.emit("done", {{"output", absolutePath(options.output)},
                       {"tensors", stats.tensors},
                       {"resumed_tensors", stats.resumedTensors},
                       {"seconds", stats.seconds},
                       {"bytes_read", stats.bytesRead},
                       {"bytes_written", stats.bytesWritten},
                       {"non_finite", nonFinite}});
}

} // namespace mergec::rt
