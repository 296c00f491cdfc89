//===- GlobTest.cpp - tensor-name glob patterns ---------------------------===//
#include "mergec/Runtime/Glob.h"

#include <chrono>
#include <gtest/gtest.h>

using mergec::rt::globCheck;
using mergec::rt::globMatch;

TEST(GlobTest, StarMatchesAcrossDots) {
  EXPECT_TRUE(globMatch("model.layers.*.mlp.*", "model.layers.0.mlp.up_proj.weight"));
  EXPECT_TRUE(globMatch("model.layers.*.mlp.*", "model.layers.31.mlp.down_proj.bias"));
  EXPECT_FALSE(globMatch("model.layers.*.mlp.*", "model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(globMatch("*", ""));
  EXPECT_TRUE(globMatch("*", "a.b.c"));
  EXPECT_TRUE(globMatch("*.weight", "model.layers.3.mlp.gate_proj.weight"));
  EXPECT_TRUE(globMatch("a*b", "ab"));
  EXPECT_TRUE(globMatch("a*b*c", "a.x.b.y.c"));
  EXPECT_FALSE(globMatch("a*b*c", "a.x.c.y.b"));
  EXPECT_TRUE(globMatch("****", "anything"));
  EXPECT_TRUE(globMatch("a**b", "a..b"));
}

TEST(GlobTest, WholeNameOnly) {
  EXPECT_FALSE(globMatch("model.norm", "model.norm.weight"));
  EXPECT_FALSE(globMatch("norm.weight", "model.norm.weight"));
  EXPECT_FALSE(globMatch("layers.*", "model.layers.0.weight"));
  EXPECT_TRUE(globMatch("model.norm.weight", "model.norm.weight"));
  EXPECT_FALSE(globMatch("", "x"));
  EXPECT_TRUE(globMatch("", ""));
}

TEST(GlobTest, QuestionMarkIsExactlyOneCharacter) {
  EXPECT_TRUE(globMatch("layers.?.w", "layers.7.w"));
  EXPECT_FALSE(globMatch("layers.?.w", "layers.12.w"));
  EXPECT_FALSE(globMatch("layers.?.w", "layers..w"));
  EXPECT_TRUE(globMatch("layers.??.w", "layers.12.w"));
  EXPECT_TRUE(globMatch("a?c", "a.c"));
}

TEST(GlobTest, CharacterClasses) {
  EXPECT_TRUE(globMatch("layers.[0-7].w", "layers.5.w"));
  EXPECT_FALSE(globMatch("layers.[0-7].w", "layers.8.w"));
  EXPECT_TRUE(globMatch("[abc]x", "bx"));
  EXPECT_FALSE(globMatch("[abc]x", "dx"));
  EXPECT_TRUE(globMatch("[a-cx-z]", "y"));
  EXPECT_FALSE(globMatch("[a-cx-z]", "m"));
  EXPECT_TRUE(globMatch("[]]", "]"));   // a leading ']' is literal
  EXPECT_TRUE(globMatch("[a-]", "-"));  // a trailing '-' is literal
  EXPECT_TRUE(globMatch("[\\]]", "]")); // escaped ']'
  EXPECT_TRUE(globMatch("layers.[0-9][0-9].w", "layers.10.w"));
}

TEST(GlobTest, NegatedClasses) {
  EXPECT_TRUE(globMatch("layers.[!0-9].w", "layers.x.w"));
  EXPECT_FALSE(globMatch("layers.[!0-9].w", "layers.3.w"));
  EXPECT_TRUE(globMatch("[^a]", "b"));
  EXPECT_FALSE(globMatch("[^a]", "a"));
  EXPECT_FALSE(globMatch("[!a]", "")); // a class still needs one character
  EXPECT_TRUE(globMatch("[!]]", "a"));
  EXPECT_FALSE(globMatch("[!]]", "]"));
}

TEST(GlobTest, Alternatives) {
  EXPECT_TRUE(globMatch("*.{q,k,v}_proj.weight", "model.layers.0.self_attn.k_proj.weight"));
  EXPECT_FALSE(globMatch("*.{q,k,v}_proj.weight", "model.layers.0.self_attn.o_proj.weight"));
  EXPECT_TRUE(globMatch("{embed,lm_head}*", "lm_head.weight"));
  EXPECT_TRUE(globMatch("x{,.bias}", "x"));
  EXPECT_TRUE(globMatch("x{,.bias}", "x.bias"));
  EXPECT_FALSE(globMatch("x{,.bias}", "x.weight"));
}

TEST(GlobTest, NestedAlternativesWithWildcards) {
  const char *p = "model.{layers.{1,2?}.*,norm}.weight";
  EXPECT_TRUE(globMatch(p, "model.layers.1.mlp.weight"));
  EXPECT_TRUE(globMatch(p, "model.layers.23.attn.weight"));
  EXPECT_TRUE(globMatch(p, "model.norm.weight"));
  EXPECT_FALSE(globMatch(p, "model.layers.3.mlp.weight"));
  EXPECT_FALSE(globMatch(p, "model.layers.2.mlp.weight"));
  EXPECT_TRUE(globMatch("{a,{b,{c,[d-f]}}}", "e"));
  EXPECT_FALSE(globMatch("{a,{b,{c,[d-f]}}}", "g"));
  EXPECT_TRUE(globMatch("{a,b}{c,d}{e,f}", "bcf"));
}

TEST(GlobTest, Escapes) {
  EXPECT_TRUE(globMatch("a\\*b", "a*b"));
  EXPECT_FALSE(globMatch("a\\*b", "axb"));
  EXPECT_TRUE(globMatch("\\?", "?"));
  EXPECT_FALSE(globMatch("\\?", "x"));
  EXPECT_TRUE(globMatch("\\[x]", "[x]"));
  EXPECT_TRUE(globMatch("{a\\,b,c}", "a,b"));
  EXPECT_FALSE(globMatch("{a\\,b,c}", "a"));
  EXPECT_TRUE(globMatch("\\{a\\}", "{a}"));
  EXPECT_TRUE(globMatch("a,b", "a,b")); // ',' is literal outside braces
}

TEST(GlobTest, PathologicalPatternsFinishFast) {
  std::string name(20000, 'a');
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(globMatch("a*a*a*a*b", name));
  EXPECT_FALSE(globMatch("*a*a*a*a*a*a*a*a*a*a*b", name));
  EXPECT_FALSE(globMatch("{a,a}*{a,a}*{a,a}*{a,a}*b", name));
  EXPECT_TRUE(globMatch("a*a*a*a*a", name));
  std::string stars(1000, '*');
  EXPECT_TRUE(globMatch(stars + "b", name + "b"));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count(), 5);
}

TEST(GlobTest, CheckReportsMalformedPatterns) {
  EXPECT_EQ(globCheck("model.layers.*.mlp.*"), std::nullopt);
  EXPECT_EQ(globCheck("{a,{b,c}}[!0-9]\\*?"), std::nullopt);
  EXPECT_EQ(globCheck(""), std::nullopt);
  EXPECT_EQ(globCheck("layers.[0-7"), "unterminated '['");
  EXPECT_EQ(globCheck("[]"), "unterminated '['");
  EXPECT_EQ(globCheck("[!"), "unterminated '['");
  EXPECT_EQ(globCheck("[a\\"), "unterminated '['");
  EXPECT_EQ(globCheck("{a,b"), "unbalanced '{'");
  EXPECT_EQ(globCheck("{a,{b,c}"), "unbalanced '{'");
  EXPECT_EQ(globCheck("a}"), "unbalanced '}'");
  EXPECT_EQ(globCheck("{a}}"), "unbalanced '}'");
  EXPECT_EQ(globCheck("abc\\"), "trailing '\\'");
  EXPECT_EQ(globCheck("[z-a]"), "invalid range 'z-a' in '[...]'");
  EXPECT_EQ(globCheck(std::string(100, '{') + std::string(100, '}')), "'{' nested too deeply");
  // A malformed pattern matches nothing.
  EXPECT_FALSE(globMatch("{a", "{a"));
  EXPECT_FALSE(globMatch("[a", "[a"));
}

TEST(GlobTest, CompiledPatternsTakeShortcutsWithoutChangingResults) {
  using mergec::rt::CompiledGlob;
  // No wildcard: a string comparison.
  CompiledGlob literal("model.norm.weight");
  EXPECT_TRUE(literal.match("model.norm.weight"));
  EXPECT_FALSE(literal.match("model.norm.weight2"));
  EXPECT_FALSE(literal.match("model.norm"));
  // The literal prefix rejects first; the longest literal part after it next.
  CompiledGlob layer12("model.*.12.*");
  EXPECT_TRUE(layer12.match("model.layers.12.mlp.up_proj.weight"));
  EXPECT_FALSE(layer12.match("model.layers.120.mlp.up_proj.weight"));
  EXPECT_FALSE(layer12.match("lm_head.12.x"));
  EXPECT_FALSE(layer12.match("model.12.x")); // ".12." must follow "model." and something
  EXPECT_TRUE(layer12.match("model..12."));
  // Escapes, classes and braces are not literal text: those patterns take no shortcut.
  EXPECT_TRUE(CompiledGlob("a\\*b").match("a*b"));
  EXPECT_FALSE(CompiledGlob("a\\*b").match("axb"));
  EXPECT_TRUE(CompiledGlob("*.{12,13}.*").match("model.13.w"));
  EXPECT_TRUE(CompiledGlob("*[.]12?").match("model.123"));
  EXPECT_FALSE(CompiledGlob("*[.]12?").match("model.12"));
  EXPECT_TRUE(CompiledGlob("*").match(""));
  EXPECT_TRUE(CompiledGlob("x?").match("xy"));
  EXPECT_FALSE(CompiledGlob("{a").match("{a")); // malformed: matches nothing
}

TEST(GlobTest, MatchCountsItsSteps) {
  // Planning adds these up to refuse patterns that would take minutes on a large model.
  using mergec::rt::CompiledGlob;
  std::string name = "model.layers.12.self_attn.q_proj.weight";
  uint64_t literal = 0, one = 0, many = 0;
  CompiledGlob("model.layers.12.self_attn.q_proj.weight").match(name, literal);
  CompiledGlob("*e*").match(name, one);
  EXPECT_EQ(literal, 0u);
  EXPECT_GE(one, name.size());
  // Every '*' keeps a state alive over the rest of the name.
  std::string e(40, 'e');
  one = 0;
  CompiledGlob("*e*").match(e, one);
  CompiledGlob("*e*e*e*e*e*e*e*e*").match(e, many);
  EXPECT_GT(many, 4 * one);
}
