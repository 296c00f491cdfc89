//===- EventsTest.cpp - the event stream: JSON Lines and their escaping ----===//
#include "mergec/Runtime/Events.h"
#include <gtest/gtest.h>

using namespace mergec::rt;
using nlohmann::json;

namespace {
/// A stream whose lines go to `lines`.
struct Captured {
  std::vector<std::string> lines;
  EventStream stream{[this](const std::string &line) { lines.push_back(line); }};
};
} // namespace

TEST(Events, OneCompactObjectPerLineEventAndTFirst) {
  std::string line = EventStream::line("progress", 1.23456, {{"tensors_done", 3}, {"tensors", 7}});
  EXPECT_EQ(line, "{\"event\":\"progress\",\"t\":1.235,\"tensors_done\":3,\"tensors\":7}\n");
  // Fields named event or t cannot replace them.
  EXPECT_EQ(EventStream::line("done", 0, {{"event", "x"}, {"t", 9}}),
            "{\"event\":\"done\",\"t\":0.0}\n");
}

TEST(Events, EscapesMessagesAndPaths) {
  std::string nasty = "a \"quoted\" \\path\\\nwith\ta newline, \x01 a control byte and \xc3\xa9";
  std::string line = EventStream::line("warning", 0, {{"message", nasty}});
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "a raw newline inside the object";
  EXPECT_NE(line.find("\\\"quoted\\\""), std::string::npos) << line;
  EXPECT_NE(line.find("\\\\path\\\\\\n"), std::string::npos) << line;
  EXPECT_NE(line.find("\\t"), std::string::npos) << line;
  EXPECT_NE(line.find("\\u0001"), std::string::npos) << line;
  EXPECT_NE(line.find("\xc3\xa9"), std::string::npos) << "UTF-8 is kept as is: " << line;
  EXPECT_EQ(json::parse(line).at("message"), nasty);
}

TEST(Events, InvalidUtf8BecomesReplacementCharacter) {
  // A path is bytes: one that is not UTF-8 must still give a line that parses.
  std::string path = "/models/caf\xe9/x\xff";
  std::string line;
  ASSERT_NO_THROW(line = EventStream::line("error", 0, {{"file", path}}));
  EXPECT_EQ(json::parse(line).at("file"), "/models/caf\xef\xbf\xbd/x\xef\xbf\xbd");
}

TEST(Events, HumanTextWithoutJson) {
  Captured c;
  c.stream.configure("merge-x", false);
  c.stream.warning("w");
  c.stream.note("n");
  c.stream.error("e", "some/file", "some.tensor");
  c.stream.info("status line");
  c.stream.emit("plan", {{"tensors", 1}}); // JSON-only events say nothing in text mode
  EXPECT_EQ(c.lines, (std::vector<std::string>{"merge-x: warning: w\n", "merge-x: note: n\n",
                                                "merge-x: error: e\n", "status line\n"}));
}

TEST(Events, JsonEvents) {
  Captured c;
  c.stream.configure("mergec", true);
  c.stream.warning("w \"1\"");
  c.stream.note("n");
  c.stream.error("e", "dir/\"f\"", "t");
  c.stream.error("plain");
  c.stream.diagnostic("error", {"r.merge", 3, 7}, "bad");
  c.stream.diagnostic("warning", {"r.merge", 0, 0}, "whole file");
  c.stream.info("status");
  ASSERT_EQ(c.lines.size(), 7u);
  std::vector<json> e;
  for (const std::string &line : c.lines) {
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    e.push_back(json::parse(line));
  }
  EXPECT_EQ(e[0], json({{"event", "warning"}, {"t", e[0]["t"]}, {"level", "warning"},
                        {"message", "w \"1\""}}));
  EXPECT_EQ(e[1]["level"], "note");
  EXPECT_EQ(e[1]["event"], "warning");
  EXPECT_EQ(e[2], json({{"event", "error"}, {"t", e[2]["t"]}, {"message", "e"},
                        {"file", "dir/\"f\""}, {"tensor", "t"}}));
  EXPECT_FALSE(e[3].contains("file"));
  EXPECT_FALSE(e[3].contains("tensor"));
  EXPECT_EQ(e[4], json({{"event", "error"}, {"t", e[4]["t"]}, {"message", "bad"},
                        {"file", "r.merge"}, {"line", 3}, {"column", 7}}));
  EXPECT_EQ(e[5]["level"], "warning");
  EXPECT_FALSE(e[5].contains("line"));
  EXPECT_EQ(e[6]["event"], "info");
  for (size_t i = 1; i < e.size(); ++i)
    EXPECT_GE(e[i]["t"].get<double>(), e[i - 1]["t"].get<double>());
}

TEST(Events, JsonRequested) {
  const char *with[] = {"mergec", "run", "r.merge", "--json", nullptr};
  const char *without[] = {"mergec", "run", "--json=1", "--jsonx", nullptr};
  EXPECT_TRUE(jsonRequested(4, const_cast<char **>(with)));
  EXPECT_FALSE(jsonRequested(4, const_cast<char **>(without)));
}
