//===- MergekitConfig.cpp - mergekit YAML configurations as recipes -------===//
// Reads a mergekit configuration with yaml-cpp and writes the equivalent recipe text. The
// semantics copied from mergekit (mergekit/config.py, plan.py, merge_methods/*.py):
//  - a per-model parameter is looked up in the model's `parameters`, then the slice's, then the
//    top-level `parameters`, then the method's default; a parameter of the whole merge (normalize,
//    t, ...) only in the slice's and the top-level `parameters`;
//  - a list of numbers is a gradient over the layers: at t = layer / (num_layers - 1) (t = 0 for
//    tensors outside the layers), scaled = t (n - 1), i0 = int(scaled), the value is
//    (1 - frac) v[i0] + frac v[min(i0 + 1, n - 1)]; mergec's ramp() is exactly that;
//  - a list of {filter, value} is tried in order: the first whose filter is a substring of the
//    tensor's name (or has no filter, or filter "*") gives the value; none: the next level.
// Every tensor's settings depend on which filters its name contains (and, for settings that
// must be known while compiling, on its layer), so the recipe gets one rule per combination, in
// the order that makes the first matching rule the right one (see `enumerateRules`).
#include "mergec/Import/MergekitConfig.h"
#include "mergec/Frontend/Parser.h"
#include "mergec/Frontend/Sema.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/ModelConfig.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace mergec::import {

bool isMergekitConfigPath(const std::string &path) {
  std::string ext = fs::path(path).extension().string();
  return ext == ".yml" || ext == ".yaml";
}

namespace {

struct Loc {
  int line = 0, col = 0;
};

/// An error at a place in the YAML; caught once, at the top.
struct ImportError {
  Loc loc;
  std::string message;
};

[[noreturn]] void fail(Loc loc, std::string message) { throw ImportError{loc, std::move(message)}; }

Loc locOf(const YAML::Node &n) {
  YAML::Mark m = n.Mark();
  if (m.line < 0)
    return {};
  return {m.line + 1, m.column + 1};
}

/// The shortest text that reads back as the same double (the grammar's NUMBER after an
/// optional '-').
std::string formatNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

bool isQuoted(const YAML::Node &n) { return n.Tag() == "!"; }

std::optional<bool> asBool(const YAML::Node &n) {
  if (!n.IsScalar() || isQuoted(n))
    return std::nullopt;
  static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (yes.count(n.Scalar()))
    return true;
  if (no.count(n.Scalar()))
    return false;
  return std::nullopt;
}

std::optional<double> asNumber(const YAML::Node &n) {
  if (!n.IsScalar() || isQuoted(n))
    return std::nullopt;
  const std::string &s = n.Scalar();
  if (s.empty())
    return std::nullopt;
  // strtod also takes hex, inf and nan: YAML's numbers are decimal (.inf/.nan are refused).
  for (char c : s)
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' ||
          c == '+' || c == '-'))
      return std::nullopt;
  char *end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

std::string describeNode(const YAML::Node &n) {
  if (n.IsMap())
    return "a mapping";
  if (n.IsSequence())
    return "a list";
  if (n.IsNull())
    return "nothing";
  return "'" + n.Scalar() + "'";
}

std::string asString(const YAML::Node &n, const std::string &what) {
  if (!n.IsScalar())
    fail(locOf(n), what + " must be a string, got " + describeNode(n));
  return n.Scalar();
}

/// A mapping's entries in order; a repeated key is an error (PyYAML keeps the last silently).
std::vector<std::pair<YAML::Node, YAML::Node>> entries(const YAML::Node &map, const std::string &what) {
  // `parameters:` with nothing after it is YAML's null, which mergekit (pydantic) reads as no
  // parameters: mergekit's own examples/ties.yml has one.
  if (map.IsNull())
    return {};
  if (!map.IsMap())
    fail(locOf(map), what + " must be a mapping, got " + describeNode(map));
  std::vector<std::pair<YAML::Node, YAML::Node>> out;
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    YAML::Node key = it->first;
    if (!key.IsScalar())
      fail(locOf(key), what + ": keys must be names");
    if (!seen.insert(key.Scalar()).second)
      fail(locOf(key), what + ": '" + key.Scalar() + "' given twice");
    out.push_back({key, it->second});
  }
  return out;
}

// --- parameter settings -----------------------------------------------------------------------

/// A parameter's value as the YAML gives it: a number, a flag, a string, a gradient (a list
/// of numbers) or a filter/value list.
struct Setting {
  enum class Kind { Number, Bool, String, Gradient, Conditional } kind = Kind::Number;
  double number = 0;
  bool flag = false;
  std::string text;
  std::vector<double> gradient;
  struct Branch {
    std::optional<std::string> filter; ///< nullopt: every tensor (no filter, or "*")
    std::shared_ptr<Setting> value;
    Loc loc;
  };
  std::vector<Branch> branches;
  Loc loc;
  std::string where; ///< "models[1].parameters.weight", for messages and comments
  std::string yaml;  ///< the value as written (flow style), for comments
};

std::string flowText(const YAML::Node &n) {
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << n;
  return e.c_str();
}

std::shared_ptr<Setting> parseSetting(const YAML::Node &n, const std::string &where, bool nested = false) {
  auto s = std::make_shared<Setting>();
  s->loc = locOf(n);
  s->where = where;
  s->yaml = flowText(n);
  if (n.IsScalar()) {
    if (auto b = asBool(n)) {
      s->kind = Setting::Kind::Bool;
      s->flag = *b;
    } else if (auto v = asNumber(n)) {
      s->kind = Setting::Kind::Number;
      s->number = *v;
    } else {
      s->kind = Setting::Kind::String;
      s->text = n.Scalar();
    }
    return s;
  }
  if (n.IsSequence()) {
    if (n.size() == 0)
      fail(s->loc, where + ": an empty list");
    bool numbers = true, maps = true;
    for (const auto &e : n) {
      numbers = numbers && asNumber(e).has_value();
      maps = maps && e.IsMap();
    }
    if (numbers) {
      s->kind = Setting::Kind::Gradient;
      for (const auto &e : n)
        s->gradient.push_back(*asNumber(e));
      return s;
    }
    if (maps && !nested) {
      s->kind = Setting::Kind::Conditional;
      for (size_t i = 0; i < n.size(); ++i) {
        Setting::Branch b;
        b.loc = locOf(n[i]);
        YAML::Node value;
        bool hasValue = false; // a default Node counts as defined
        for (auto &[k, v] : entries(n[i], where + "[" + std::to_string(i) + "]")) {
          if (k.Scalar() == "filter") {
            std::string f = asString(v, where + "[" + std::to_string(i) + "].filter");
            if (f != "*")
              b.filter = f;
          } else if (k.Scalar() == "value") {
            value = v;
            hasValue = true;
          } else {
            fail(locOf(k), "unknown key '" + k.Scalar() + "' in " + where + "[" +
                               std::to_string(i) + "] (a filter/value list takes filter and value)");
          }
        }
        if (!hasValue)
          fail(b.loc, where + "[" + std::to_string(i) + "] has no value");
        b.value = parseSetting(value, where + "[" + std::to_string(i) + "].value", true);
        s->branches.push_back(std::move(b));
      }
      return s;
    }
    for (const auto &e : n)
      if (!asNumber(e))
        fail(locOf(e), where + ": " +
                           std::string(nested ? "a value must be a number or a list of numbers"
                                              : "a list must hold numbers (a gradient) or "
                                                "{filter, value} entries") +
                           ", got " + describeNode(e));
  }
  fail(s->loc, where + ": expected a number, a flag, a list of numbers or a filter/value list, got " +
                   describeNode(n));
}

/// A resolved value for one rule: a number, a flag, a string, or a ramp over the layers.
struct Value {
  enum class Kind { Number, Bool, String, Ramp } kind = Kind::Number;
  double number = 0;
  bool flag = false;
  std::string text;
  std::vector<double> ramp;
  const Setting *from = nullptr; ///< where it came from (null: the method's default)

  std::string expr() const {
    switch (kind) {
    case Kind::Number:
      return formatNumber(number);
    case Kind::Bool:
      return flag ? "true" : "false";
    case Kind::String:
      return "\"" + text + "\"";
    case Kind::Ramp: {
      std::string s = "ramp(";
      for (size_t i = 0; i < ramp.size(); ++i)
        s += (i ? ", " : "") + formatNumber(ramp[i]);
      return s + ")";
    }
    }
    return "";
  }
  bool operator==(const Value &o) const { return expr() == o.expr(); }
};

Value numberValue(double v) {
  Value x;
  x.number = v;
  return x;
}
Value boolValue(bool b) {
  Value x;
  x.kind = Value::Kind::Bool;
  x.flag = b;
  return x;
}

/// mergekit's evaluate_setting for a list of numbers at t.
double interpolate(const std::vector<double> &v, double t) {
  double scaled = t * static_cast<double>(v.size() - 1);
  size_t i0 = static_cast<size_t>(scaled);
  size_t i1 = std::min(v.size() - 1, i0 + 1);
  double frac = scaled - static_cast<double>(i0);
  return (1 - frac) * v[i0] + frac * v[i1];
}

// --- glob patterns ----------------------------------------------------------------------------

std::string globEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (std::string("*?[]{},\\").find(c) != std::string::npos)
      out += '\\';
    out += c;
  }
  return out;
}

std::string recipeString(const std::string &s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else
      out += c;
  }
  return out + "\"";
}

/// One glob, matching exactly the names that contain every string of `parts` (substring
/// matches, as mergekit's filters): every order the occurrences can come in, each pair of
/// neighbours apart or overlapping where a suffix of one is a prefix of the next, as
/// alternatives of one `{...}` (one pattern, so no alternative that happens to match nothing
/// is warned about). Empty parts: nullopt (every name).
std::optional<std::string> conjunctionGlob(std::vector<std::string> parts) {
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  std::vector<std::string> kept; // drop a part another contains: it is implied
  for (size_t i = 0; i < parts.size(); ++i) {
    bool inside = false;
    for (size_t j = 0; j < parts.size() && !inside; ++j)
      inside = i != j && parts[j].size() > parts[i].size() && parts[j].find(parts[i]) != std::string::npos;
    if (!inside)
      kept.push_back(parts[i]);
  }
  if (kept.empty())
    return std::nullopt;
  if (kept.size() == 1)
    return "*" + globEscape(kept[0]) + "*";
  std::vector<std::string> alternatives;
  std::set<std::string> seen;
  // `segments`: literal runs separated by '*'; the last ends with the previous part.
  std::function<void(const std::vector<size_t> &, size_t, std::vector<std::string>)> chain =
      [&](const std::vector<size_t> &order, size_t i, std::vector<std::string> segments) {
        if (i == order.size()) {
          std::string alt;
          for (size_t k = 0; k < segments.size(); ++k)
            alt += (k ? "*" : "") + globEscape(segments[k]);
          if (seen.insert(alt).second)
            alternatives.push_back(alt);
          return;
        }
        const std::string &next = kept[order[i]];
        if (i == 0) {
          chain(order, 1, {next});
          return;
        }
        const std::string &prev = kept[order[i - 1]];
        auto apart = segments;
        apart.push_back(next);
        chain(order, i + 1, apart);
        for (size_t k = 1; k < std::min(prev.size(), next.size()); ++k)
          if (prev.compare(prev.size() - k, k, next, 0, k) == 0) {
            auto joined = segments;
            joined.back() += next.substr(k);
            chain(order, i + 1, joined);
          }
      };
  std::vector<size_t> order(kept.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  do
    chain(order, 0, {});
  while (std::next_permutation(order.begin(), order.end()));
  std::string glob = "*{";
  for (size_t i = 0; i < alternatives.size(); ++i)
    glob += (i ? "," : "") + alternatives[i];
  return glob + "}*";
}

// --- methods ----------------------------------------------------------------------------------

enum class PKind { Number, Flag };

struct ParamDef {
  std::string name;
  PKind kind = PKind::Number;
  std::optional<Value> defaultValue; ///< nullopt: required (mergekit raises without one)
  bool compileTime = false;          ///< the stdlib method needs it known while compiling
  std::string effect;                ///< non-empty: accepted but changes nothing (why)
};

struct Method {
  std::string name;
  std::vector<ParamDef> global;   ///< mergekit's parameters(): for the whole merge
  std::vector<ParamDef> perModel; ///< mergekit's tensor_parameters(): per model
  bool needsBase = false;
  bool random = false;
};

ParamDef num(std::string name, std::optional<double> def, bool compileTime = false) {
  ParamDef p;
  p.name = std::move(name);
  if (def)
    p.defaultValue = numberValue(*def);
  p.compileTime = compileTime;
  return p;
}
ParamDef flag(std::string name, bool def, std::string effect = "") {
  ParamDef p;
  p.name = std::move(name);
  p.kind = PKind::Flag;
  p.defaultValue = boolValue(def);
  p.effect = std::move(effect);
  return p;
}

const char *kInt8Mask = "the storage type of mergekit's sign mask: no effect on the values";

std::vector<Method> methods() {
  std::vector<Method> m;
  m.push_back({"linear", {flag("normalize", true)}, {num("weight", std::nullopt)}});
  auto gta = [&](std::string name, bool normalize, bool rescale, bool sparsify, bool compileDensity,
                 std::optional<ParamDef> extra, bool random) {
    Method x{name,
             {flag("int8_mask", false, kInt8Mask), flag("normalize", normalize),
              flag("rescale", rescale,
                   sparsify ? "" : "rescale applies to sparsified task vectors: task_arithmetic has none"),
              num("lambda", 1.0)},
             {num("weight", std::nullopt), num("density", 1.0, compileDensity)}};
    if (!sparsify)
      x.perModel[1].effect = "task_arithmetic does not sparsify: density changes nothing";
    if (extra)
      x.perModel.push_back(*extra);
    x.needsBase = true;
    x.random = random;
    m.push_back(x);
  };
  gta("task_arithmetic", false, false, false, false, std::nullopt, false);
  gta("ties", true, false, true, true, std::nullopt, false);
  gta("dare_ties", false, true, true, false, std::nullopt, true);
  gta("dare_linear", false, true, true, false, std::nullopt, true);
  gta("breadcrumbs", false, false, true, true, num("gamma", 0.01, true), false);
  gta("breadcrumbs_ties", false, false, true, true, num("gamma", 0.01, true), false);
  gta("della", true, true, true, false, num("epsilon", 0.15), true);
  gta("della_linear", false, true, true, false, num("epsilon", 0.15), true);
  Method sce{"sce", {flag("int8_mask", false, kInt8Mask), num("select_topk", 1.0, true)}, {}};
  sce.needsBase = true;
  m.push_back(sce);
  Method slerp{"slerp", {num("t", std::nullopt)}, {}};
  slerp.needsBase = true;
  m.push_back(slerp);
  m.push_back({"nuslerp",
               {flag("nuslerp_row_wise", false), flag("nuslerp_flatten", true)},
               {num("weight", std::nullopt)}});
  m.push_back({"multislerp", {flag("normalize_weights", true), num("eps", 1e-8)},
               {num("weight", std::nullopt)}});
  Method stock{"model_stock", {flag("filter_wise", false)}, {}};
  stock.needsBase = true;
  m.push_back(stock);
  m.push_back({"karcher", {num("max_iter", 10, true), num("tol", 1e-5, true)}, {}});
  Method near{"nearswap", {num("t", std::nullopt)}, {}};
  near.needsBase = true;
  m.push_back(near);
  // mergekit's easy_define methods: their keyword arguments are settings of the whole merge.
  Method ram{"ram", {num("epsilon", 1e-5)}, {}};
  ram.needsBase = true;
  m.push_back(ram);
  Method ramplus{"ramplus_tl", {num("r", 0.1), num("alpha", 0.2), num("epsilon", 1e-5)}, {}};
  ramplus.needsBase = true;
  m.push_back(ramplus);
  Method fusion{"arcee_fusion", {}, {}};
  fusion.needsBase = true;
  m.push_back(fusion);
  ParamDef scale = num("scale", std::nullopt);
  scale.defaultValue = Value{Value::Kind::String}; // none: no scaling
  m.push_back({"passthrough", {}, {scale}});
  return m;
}

const ParamDef *findParam(const std::vector<ParamDef> &list, const std::string &name) {
  for (const auto &p : list)
    if (p.name == name)
      return &p;
  return nullptr;
}

// --- the translation --------------------------------------------------------------------------

struct ModelEntry {
  std::string ref;   ///< as the YAML writes it
  std::string name;  ///< the recipe's name
  std::string path;  ///< absolute
  std::string how;   ///< "--model" or "a directory"
  Loc loc;
  std::string where; ///< "models[1]"
  std::map<std::string, std::shared_ptr<Setting>> params;
  bool listed = true; ///< false: base_model, added by mergekit as it is not among the models
  /// `model+lora` (mergekit's LoRA reference): `path` is the model's and `name` the recipe's
  /// `lora` on it; `loraPath` the adapter directory (absolute).
  std::string loraPath, onRef;
  /// The task vector mergekit takes of this entry, (model + adapter) - base: tv(name) is the
  /// adapter's delta alone, so a lora on another model than the base is written out.
  std::string tv() const {
    return loraPath.empty() || onIsBase ? "tv(" + name + ")" : "(" + name + " - base)";
  }
  bool onIsBase = false;
};

/// Which branch each dimension takes for one rule: a layer (or none), and per filter/value
/// list the entry (branches.size(): none matched).
struct RuleContext {
  std::optional<int> layer;
  bool layerExpanded = false;
  int numLayers = 0;
  std::map<const Setting *, size_t> branch;
};

/// One source of a layer stacking slice: models_[model]'s layers [begin, end).
struct StackSource {
  size_t model;
  int begin, end;
  Loc loc; ///< of its layer_range
};

class Translator {
public:
  Translator(std::string path, const ImportOptions &options) : path_(std::move(path)), options_(options) {}

  ImportResult run(const YAML::Node &root);

private:
  std::string path_;
  const ImportOptions &options_;
  std::vector<std::string> notes_;
  std::set<std::string> noteSet_;
  std::set<std::string> usedMappings_;
  std::set<std::string> takenNames_;
  const Method *method_ = nullptr;
  std::vector<ModelEntry> models_; ///< inputs in mergekit's order (base appended when not listed)
  int baseIndex_ = -1;
  std::map<std::string, std::shared_ptr<Setting>> top_, slice_;
  std::vector<const Setting *> conditionals_;
  std::vector<const Setting *> gradients_;
  std::optional<int64_t> seed_;
  Loc methodLoc_;

  void note(const std::string &text) {
    if (noteSet_.insert(text).second)
      notes_.push_back(text);
  }

  ModelEntry resolveModel(const YAML::Node &n, const std::string &where, bool isBase);
  std::string recipeName(const std::string &ref, bool isBase);
  std::vector<const Setting *> chain(const std::string &param, const ModelEntry *model) const;
  std::optional<Value> resolve(const Setting &s, const RuleContext &ctx, const ParamDef &def) const;
  Value value(const ParamDef &def, const ModelEntry *model, const RuleContext &ctx) const;
  void collectConditionals(const Setting *s);
  bool hasGradient(const Setting *s) const;
  std::string expression(const RuleContext &ctx);
  void checkParams(const std::map<std::string, std::shared_ptr<Setting>> &params,
                   const std::map<std::string, Loc> &keyLocs, bool perModel, const std::string &where);
  int numLayers(Loc loc, const std::string &why);
  std::pair<int, int> layerRange(const YAML::Node &range, const std::string &where);
  void stackSlices(const YAML::Node &slices, const std::vector<StackSource> &firstSlice,
                   bool passthrough);
  /// Layer stacking: each slice's sources, the output model's (base) first where it is one;
  /// empty when the configuration keeps the models' layers.
  std::vector<std::vector<StackSource>> stack_;
  int stackLayers_ = 0; ///< the output's layer count with stack_
};

std::string Translator::recipeName(const std::string &ref, bool isBase) {
  if (isBase) {
    takenNames_.insert("base");
    return "base";
  }
  std::string last = fs::path(ref).filename().string();
  if (last.empty())
    last = fs::path(ref).parent_path().filename().string();
  std::string name;
  for (char c : last)
    name += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : '_';
  while (!name.empty() && name[0] == '_')
    name.erase(0, 1);
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    name = "m_" + name;
  // What a recipe cannot name a model (keywords, built-ins), what would shadow a stdlib method
  // the recipe calls, and the base model's own name.
  if (isKeyword(name) || sema::isBuiltinName(name) || options_.libraryNames.count(name) ||
      name == "base")
    name += "_model";
  std::string unique = name;
  for (int i = 2; takenNames_.count(unique); ++i)
    unique = name + "_" + std::to_string(i);
  takenNames_.insert(unique);
  return unique;
}

ModelEntry Translator::resolveModel(const YAML::Node &n, const std::string &where, bool isBase) {
  ModelEntry e;
  e.loc = locOf(n);
  e.where = where;
  e.ref = asString(n, where);
  if (e.ref.empty())
    fail(e.loc, where + ": an empty model name");
  // A reference: --model REF=PATH, else a directory relative to the configuration.
  auto locate = [&](const std::string &ref, const char *what, std::string &how) {
    for (auto &[mappedRef, path] : options_.models)
      if (mappedRef == ref) {
        usedMappings_.insert(ref);
        how = "--model";
        return fs::absolute(path).lexically_normal().string();
      }
    fs::path p = ref;
    if (p.is_relative())
      p = fs::path(path_).parent_path() / p;
    p = fs::absolute(p).lexically_normal();
    std::error_code ec;
    if (!fs::is_directory(p, ec))
      fail(e.loc, where + ": " + what + " '" + ref + "' is neither a directory (relative to the "
                          "configuration's directory) nor mapped: give --model " + ref + "=PATH");
    std::string path = p.string();
    if (!path.empty() && path.back() == '/')
      path.pop_back();
    how = "a directory";
    return path;
  };
  size_t plus = e.ref.find('+');
  bool mappedWhole = std::any_of(options_.models.begin(), options_.models.end(),
                                 [&](const auto &m) { return m.first == e.ref; });
  if (plus != std::string::npos && !mappedWhole) {
    // mergekit's `model+lora`: a PEFT adapter applied to the model; a `lora` on it here.
    if (isBase)
      fail(e.loc, where + ": '" + e.ref + "': the base model is a LoRA reference; the output "
                          "takes its tensors from a model, so merge with the model as base_model");
    e.onRef = e.ref.substr(0, plus);
    std::string how;
    e.path = locate(e.onRef, "model", how);
    e.loraPath = locate(e.ref.substr(plus + 1), "LoRA adapter", e.how);
    e.how = "a LoRA adapter on " + e.onRef + " (" + how + ")";
  } else {
    e.path = locate(e.ref, "model", e.how);
  }
  e.name = recipeName(e.ref, isBase);
  return e;
}

int Translator::numLayers(Loc loc, const std::string &why) {
  const ModelEntry &m = models_[baseIndex_ >= 0 ? baseIndex_ : 0];
  fs::path config = fs::path(m.path) / "config.json";
  std::ifstream in(config);
  if (!in)
    fail(loc, why + ", which needs the number of layers: cannot read " + config.string());
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> warnings;
  int layers = 0;
  try {
    layers = rt::layersFromConfig(text.str(), config.string(), m.name, -1, false, warnings);
  } catch (const rt::RuntimeError &e) {
    fail(loc, why + ": " + e.what());
  }
  if (layers <= 0)
    fail(loc, why + ", which needs the number of layers: " + config.string() +
                  " has no num_hidden_layers, n_layer or num_layers");
  return layers;
}

std::pair<int, int> Translator::layerRange(const YAML::Node &range, const std::string &where) {
  auto a = range.IsSequence() && range.size() == 2 ? asNumber(range[0]) : std::nullopt;
  auto b = range.IsSequence() && range.size() == 2 ? asNumber(range[1]) : std::nullopt;
  if (!a || !b || *a != std::floor(*a) || *b != std::floor(*b) || *a < 0 || *b > 1e8 || *a >= *b)
    fail(locOf(range), where + ".layer_range must be [first, end] with integers 0 <= first < end");
  return {int(*a), int(*b)};
}

/// Several slices, or sources taking some of the models' layers (frankenmerges, depth
/// up-scaling): `layers [...]`. passthrough takes one source per slice, any model in each; the
/// other methods merge the same models in every slice (those of slices[0], in its order, with
/// the same parameters), since one expression serves every slice.
void Translator::stackSlices(const YAML::Node &slices, const std::vector<StackSource> &firstSlice,
                             bool passthrough) {
  // A missing key (an invalid node from a const lookup) and a null value compare as absent.
  auto dump = [](const YAML::Node &n) {
    return n.IsDefined() && !n.IsNull() ? YAML::Dump(n) : std::string();
  };
  auto ordered = [&](std::vector<StackSource> sources) {
    // The slice's first source gives the output layers' tensors: the base where it is one.
    std::stable_partition(sources.begin(), sources.end(), [&](const StackSource &s) {
      return baseIndex_ >= 0 && s.model == size_t(baseIndex_);
    });
    return sources;
  };
  for (size_t i = 1; i < firstSlice.size(); ++i)
    if (firstSlice[i].end - firstSlice[i].begin != firstSlice[0].end - firstSlice[0].begin)
      fail(firstSlice[i].loc,
           "slices[0].sources[" + std::to_string(i) + "].layer_range: " +
               std::to_string(firstSlice[i].end - firstSlice[i].begin) +
               " layers, the slice's first source has " +
               std::to_string(firstSlice[0].end - firstSlice[0].begin));
  for (const StackSource &s : firstSlice)
    if (!models_[s.model].loraPath.empty())
      fail(models_[s.model].loc, models_[s.model].where + ": a LoRA reference in a layer "
                                 "stacking slice is not supported (a slice takes a model's layers)");
  if (passthrough && firstSlice.size() != 1)
    fail(locOf(slices[0]), "slices[0]: passthrough takes one source per slice; this one has " +
                               std::to_string(firstSlice.size()));
  stack_.push_back(ordered(firstSlice));
  YAML::Node firstParams = slices[0]["parameters"];
  for (size_t k = 1; k < slices.size(); ++k) {
    std::string where = "slices[" + std::to_string(k) + "]";
    YAML::Node sources;
    bool hasSources = false;
    for (auto &[key, v] : entries(slices[k], where)) {
      if (key.Scalar() == "sources")
        sources = v, hasSources = true;
      else if (key.Scalar() == "parameters") {
        if (dump(v) != dump(firstParams))
          fail(locOf(key), where + ".parameters differ from slices[0]'s: per-slice parameters "
                                   "are not supported yet (one expression serves every slice)");
      } else
        fail(locOf(key), where + "." + key.Scalar() + " is not supported yet");
    }
    if (!hasSources || !sources.IsSequence() || sources.size() == 0)
      fail(locOf(slices[k]), where + " has no sources");
    if (passthrough && sources.size() != 1)
      fail(locOf(sources), where + ": passthrough takes one source per slice; this one has " +
                               std::to_string(sources.size()));
    if (!passthrough && sources.size() != firstSlice.size())
      fail(locOf(sources), where + ".sources: " + std::to_string(sources.size()) +
                               " models, slices[0] has " + std::to_string(firstSlice.size()) +
                               ": slices that merge other models than slices[0]'s are not "
                               "supported yet");
    std::vector<StackSource> slice;
    for (size_t i = 0; i < sources.size(); ++i) {
      std::string at = where + ".sources[" + std::to_string(i) + "]";
      YAML::Node modelNode, params, range;
      bool hasModel = false, hasParams = false, hasRange = false;
      for (auto &[key, v] : entries(sources[i], at)) {
        if (key.Scalar() == "model")
          modelNode = v, hasModel = true;
        else if (key.Scalar() == "parameters")
          params = v, hasParams = true;
        else if (key.Scalar() == "layer_range")
          range = v, hasRange = true;
        else
          fail(locOf(key), "unknown key '" + key.Scalar() + "' in " + at);
      }
      if (!hasModel)
        fail(locOf(sources[i]), at + " has no model");
      if (!hasRange)
        fail(locOf(sources[i]), at + ".layer_range must be [first, end]");
      auto [a, b] = layerRange(range, at);
      std::string ref = asString(modelNode, at + ".model");
      std::optional<size_t> index;
      for (size_t m = 0; m < models_.size(); ++m)
        if (models_[m].ref == ref)
          index = m;
      if (passthrough) {
        if (!dump(params).empty())
          fail(locOf(params), at + ".parameters: passthrough's scale in a layer stacking slice "
                                   "is not supported yet");
        if (!index) {
          ModelEntry e = resolveModel(modelNode, at + ".model", false);
          e.where = at;
          index = models_.size();
          models_.push_back(std::move(e));
        }
      } else {
        const StackSource &same = firstSlice[i];
        if (!index || *index != same.model)
          fail(locOf(modelNode), at + ".model: '" + ref + "' where slices[0] has '" +
                                     models_[same.model].ref +
                                     "': slices that merge other models than slices[0]'s (in "
                                     "its order) are not supported yet");
        YAML::Node firstSourceParams = slices[0]["sources"][i]["parameters"];
        if (dump(params) != dump(firstSourceParams))
          fail(locOf(hasParams ? params : sources[i]),
               at + ".parameters differ from slices[0]'s: per-slice parameters are not "
                    "supported yet (one expression serves every slice)");
      }
      if (!models_[*index].loraPath.empty())
        fail(locOf(modelNode), at + ": a LoRA reference in a layer stacking slice is not "
                                    "supported (a slice takes a model's layers)");
      if (!slice.empty() && b - a != slice.front().end - slice.front().begin)
        fail(locOf(range), at + ".layer_range: " + std::to_string(b - a) + " layers, the slice's "
                               "first source has " +
                               std::to_string(slice.front().end - slice.front().begin));
      slice.push_back({*index, a, b, locOf(range)});
    }
    stack_.push_back(ordered(slice));
  }
  stackLayers_ = 0;
  for (const auto &slice : stack_)
    stackLayers_ += slice.front().end - slice.front().begin;
  std::string text;
  for (size_t k = 0; k < stack_.size(); ++k)
    text += std::string(k ? ", " : "") + std::to_string(stack_[k].front().end - stack_[k].front().begin);
  note("slices: layer stacking: " + std::to_string(stackLayers_) + " output layers (" + text +
       " by slice) -> `layers [...]`; config.json gets num_hidden_layers = " +
       std::to_string(stackLayers_) +
       (passthrough ? "; passthrough -> `merge passthrough()` (each tensor from its slice's source)"
                    : "; each slice's layers merged by the one expression below"));
}

std::vector<const Setting *> Translator::chain(const std::string &param, const ModelEntry *model) const {
  std::vector<const Setting *> out;
  if (model)
    if (auto it = model->params.find(param); it != model->params.end())
      out.push_back(it->second.get());
  if (auto it = slice_.find(param); it != slice_.end())
    out.push_back(it->second.get());
  if (auto it = top_.find(param); it != top_.end())
    out.push_back(it->second.get());
  return out;
}

void Translator::collectConditionals(const Setting *s) {
  if (s->kind == Setting::Kind::Conditional &&
      std::find(conditionals_.begin(), conditionals_.end(), s) == conditionals_.end())
    conditionals_.push_back(s);
}

bool Translator::hasGradient(const Setting *s) const {
  if (s->kind == Setting::Kind::Gradient)
    return true;
  for (const auto &b : s->branches)
    if (hasGradient(b.value.get()))
      return true;
  return false;
}

/// A setting's value for the rule `ctx`; nullopt when a filter/value list matches nothing.
std::optional<Value> Translator::resolve(const Setting &s, const RuleContext &ctx, const ParamDef &def) const {
  auto typed = [&](Value v) {
    v.from = &s;
    if (def.kind == PKind::Flag && v.kind != Value::Kind::Bool)
      fail(s.loc, s.where + ": " + def.name + " must be true or false, got " + s.yaml);
    if (def.kind == PKind::Number && v.kind == Value::Kind::Bool)
      fail(s.loc, s.where + ": " + def.name + " must be a number, got " + s.yaml);
    if (v.kind == Value::Kind::String)
      fail(s.loc, s.where + ": " + def.name + " must be a number, got '" + v.text + "'");
    return v;
  };
  switch (s.kind) {
  case Setting::Kind::Number:
    return typed(numberValue(s.number));
  case Setting::Kind::Bool:
    return typed(boolValue(s.flag));
  case Setting::Kind::String: {
    Value v;
    v.kind = Value::Kind::String;
    v.text = s.text;
    return typed(v);
  }
  case Setting::Kind::Gradient: {
    if (def.kind == PKind::Flag)
      fail(s.loc, s.where + ": " + def.name + " must be true or false, got a gradient " + s.yaml);
    if (s.gradient.size() == 1)
      return typed(numberValue(s.gradient[0]));
    if (ctx.layerExpanded) {
      double t = !ctx.layer ? 0.0 : ctx.numLayers > 1 ? double(*ctx.layer) / double(ctx.numLayers - 1) : 1.0;
      return typed(numberValue(interpolate(s.gradient, t)));
    }
    Value v;
    v.kind = Value::Kind::Ramp;
    v.ramp = s.gradient;
    return typed(v);
  }
  case Setting::Kind::Conditional: {
    size_t b = ctx.branch.at(&s);
    if (b >= s.branches.size())
      return std::nullopt;
    return resolve(*s.branches[b].value, ctx, def);
  }
  }
  return std::nullopt;
}

Value Translator::value(const ParamDef &def, const ModelEntry *model, const RuleContext &ctx) const {
  for (const Setting *s : chain(def.name, model))
    if (auto v = resolve(*s, ctx, def))
      return *v;
  if (def.defaultValue)
    return *def.defaultValue;
  Loc loc = model ? model->loc : methodLoc_;
  fail(loc, method_->name + " needs " + def.name +
                (model ? " for model '" + model->ref + "' (" + model->where + ")" : std::string()) +
                (ctx.branch.empty() ? std::string() : " for the tensors no filter of its list matches") +
                ": mergekit requires it");
}

/// The recipe expression for one rule.
std::string Translator::expression(const RuleContext &ctx) {
  const Method &m = *method_;
  const ModelEntry *base = baseIndex_ >= 0 ? &models_[baseIndex_] : nullptr;
  std::vector<const ModelEntry *> inputs, others;
  for (const auto &e : models_) {
    inputs.push_back(&e);
    if (&e != base)
      others.push_back(&e);
  }
  auto g = [&](const std::string &name) { return value(*findParam(m.global, name), nullptr, ctx); };
  auto per = [&](const std::string &name, const std::vector<const ModelEntry *> &list) {
    std::vector<Value> vs;
    for (const ModelEntry *e : list)
      vs.push_back(value(*findParam(m.perModel, name), e, ctx));
    return vs;
  };
  auto listOf = [](const std::vector<Value> &vs, bool compact) {
    if (compact && !vs.empty() &&
        std::all_of(vs.begin(), vs.end(), [&](const Value &v) { return v == vs[0]; }))
      return vs[0].expr();
    std::string s = "[";
    for (size_t i = 0; i < vs.size(); ++i)
      s += (i ? ", " : "") + vs[i].expr();
    return s + "]";
  };
  auto names = [](const std::vector<const ModelEntry *> &list, bool tv) {
    std::string s = "[";
    for (size_t i = 0; i < list.size(); ++i)
      s += (i ? ", " : "") + (tv ? list[i]->tv() : list[i]->name);
    return s + "]";
  };
  auto count = [&](size_t want, const char *what) {
    if (others.size() != want)
      fail(methodLoc_, m.name + " " + what + " (this configuration has " +
                           std::to_string(others.size()) + " besides the base model)");
  };
  const std::string &mn = m.name;
  if (mn == "linear") {
    return "linear(" + names(inputs, false) + ", weights = " + listOf(per("weight", inputs), false) +
           ", normalize = " + g("normalize").expr() + ")";
  }
  if (findParam(m.perModel, "density") || mn == "sce") {
    if (others.empty())
      return "base";
    std::string call;
    if (mn == "sce") {
      call = "sce(" + names(others, true) + ", select_topk = " + g("select_topk").expr() + ")";
      return "base + " + call;
    }
    call = mn + "(" + names(others, true) + ", weights = " + listOf(per("weight", others), false);
    if (mn != "task_arithmetic")
      call += ", density = " + listOf(per("density", others), true);
    if (findParam(m.perModel, "gamma"))
      call += ", gamma = " + listOf(per("gamma", others), true);
    if (findParam(m.perModel, "epsilon"))
      call += ", epsilon = " + listOf(per("epsilon", others), true);
    call += ", normalize = " + g("normalize").expr();
    if (mn != "task_arithmetic")
      call += ", rescale = " + g("rescale").expr();
    if (m.random)
      call += ", seed = " + std::to_string(seed_.value_or(0));
    call += ")";
    Value lambda = g("lambda");
    if (lambda.kind == Value::Kind::Number && lambda.number == 1)
      return "base + " + call;
    return "base + " + lambda.expr() + " * " + call;
  }
  if (mn == "slerp") {
    count(1, "takes the base model and one other");
    return "slerp(base, " + others[0]->name + ", " + g("t").expr() + ")";
  }
  if (mn == "nearswap") {
    count(1, "takes the base model and one other");
    return "nearswap(base, " + others[0]->name + ", " + g("t").expr() + ")";
  }
  if (mn == "nuslerp") {
    Value rowWise = g("nuslerp_row_wise");
    if (rowWise.flag)
      fail(rowWise.from ? rowWise.from->loc : methodLoc_,
           "nuslerp_row_wise: true (an angle per column) is not supported yet");
    count(2, "takes two models besides the base model (when there is one)");
    std::vector<Value> w = per("weight", others);
    std::string t;
    if (w[0].kind == Value::Kind::Number && w[1].kind == Value::Kind::Number) {
      double sum = w[0].number + w[1].number;
      t = formatNumber(std::fabs(sum) < 1e-6 ? 0.5 : w[1].number / sum);
    } else {
      std::string a = w[0].expr(), b = w[1].expr();
      t = "where(abs(" + a + " + " + b + ") < 1e-6, 0.5, " + b + " / (" + a + " + " + b + "))";
    }
    std::string flatten = g("nuslerp_flatten").expr();
    if (base)
      return "base + nuslerp(" + others[0]->tv() + ", " + others[1]->tv() + ", " + t +
             ", flatten = " + flatten + ")";
    return "nuslerp(" + others[0]->name + ", " + others[1]->name + ", " + t + ", flatten = " + flatten + ")";
  }
  if (mn == "multislerp") {
    Value nw = g("normalize_weights");
    if (!nw.flag)
      fail(nw.from ? nw.from->loc : methodLoc_, "normalize_weights: false is not supported yet "
                                                "(mergec's multislerp normalizes the weights)");
    Value eps = g("eps");
    if (!(eps.kind == Value::Kind::Number && eps.number == 1e-8))
      fail(eps.from ? eps.from->loc : methodLoc_,
           "multislerp's eps other than 1e-8 is not supported yet");
    if (base)
      return "base + multislerp(" + names(others, true) + ", weights = " +
             listOf(per("weight", others), false) + ")";
    return "multislerp(" + names(others, false) + ", weights = " + listOf(per("weight", others), false) + ")";
  }
  if (mn == "model_stock") {
    if (others.size() < 2)
      fail(methodLoc_, "model_stock needs at least two models besides the base model");
    return "model_stock(base, " + names(others, false) + ", filter_wise = " + g("filter_wise").expr() + ")";
  }
  if (mn == "ram" || mn == "ramplus_tl") {
    if (others.empty())
      return "base";
    std::string call = mn + "(" + names(others, true);
    for (const ParamDef &p : m.global)
      call += ", " + p.name + " = " + g(p.name).expr();
    return "base + " + call + ")";
  }
  if (mn == "arcee_fusion") {
    count(1, "takes the base model and one other");
    return "arcee_fusion(base, " + others[0]->name + ")";
  }
  if (mn == "karcher") {
    return "karcher(" + names(inputs, false) + ", max_iter = " + g("max_iter").expr() +
           ", tol = " + g("tol").expr() + ")";
  }
  if (mn == "passthrough") {
    if (inputs.size() != 1)
      fail(methodLoc_, "passthrough takes exactly one model (layer stacking with slices is not "
                       "supported yet); this configuration has " + std::to_string(inputs.size()));
    Value scale = per("scale", inputs)[0];
    if (scale.kind == Value::Kind::String)
      return inputs[0]->name;
    return inputs[0]->name + " * " + scale.expr();
  }
  fail(methodLoc_, "internal: no translation for " + mn);
}

void Translator::checkParams(const std::map<std::string, std::shared_ptr<Setting>> &params,
                             const std::map<std::string, Loc> &keyLocs, bool perModel,
                             const std::string &where) {
  for (auto &[name, setting] : params) {
    Loc loc = keyLocs.at(name);
    const ParamDef *def = findParam(method_->perModel, name);
    if (!def && !perModel)
      def = findParam(method_->global, name);
    if (!def) {
      if (perModel && findParam(method_->global, name))
        fail(loc, where + "." + name + ": " + name + " is a setting of the whole merge in " + method_->name +
                      ": mergekit reads it from the top-level parameters only");
      std::string known;
      for (const auto *list : {&method_->global, &method_->perModel})
        for (const auto &p : *list)
          if (perModel ? list == &method_->perModel : true)
            known += (known.empty() ? "" : ", ") + p.name;
      fail(loc, "unknown parameter '" + name + "' in " + where + " (" + method_->name +
                    " takes " + (known.empty() ? std::string("none") : known) + ")");
    }
    collectConditionals(setting.get());
    if (!def->effect.empty())
      note(where + "." + name + ": " + setting->yaml + ": " + def->effect);
    if (hasGradient(setting.get()))
      gradients_.push_back(setting.get());
    if (setting->kind == Setting::Kind::Conditional) {
      std::string f;
      for (const auto &b : setting->branches)
        f += (f.empty() ? "" : ", ") + (b.filter ? "\"*" + *b.filter + "*\"" : std::string("_"));
      note(where + "." + name + ": a filter/value list (mergekit: the first filter that is a "
                               "substring of the tensor name wins): rules " + f + ", in order" +
           (f.size() >= 1 && f.substr(f.size() - 1) == "_" ? std::string()
                                                           : "; the others take the next level's value"));
    }
  }
}

ImportResult Translator::run(const YAML::Node &root) {
  if (!root || root.IsNull())
    fail({1, 1}, "an empty configuration");
  auto top = entries(root, "the configuration");
  std::map<std::string, YAML::Node> keys;
  std::map<std::string, Loc> keyLoc;
  for (auto &[k, v] : top) {
    const std::string &key = k.Scalar();
    static const std::set<std::string> known = {"merge_method", "base_model", "models", "slices",
                                                "parameters", "dtype", "out_dtype",
                                                "tokenizer_source", "random_seed"};
    if (key == "modules")
      fail(locOf(k), "modules (a merge per module) is not supported yet");
    if (key == "tokenizer")
      fail(locOf(k), "tokenizer (a merged vocabulary, token embeddings by source) is not supported yet");
    if (key == "chat_template")
      fail(locOf(k), "chat_template is not supported yet: the output takes the base model's chat "
                     "template files");
    if (!known.count(key))
      fail(locOf(k), "unknown key '" + key + "' in a mergekit configuration");
    keys[key] = v;
    keyLoc[key] = locOf(k);
  }
  if (!keys.count("merge_method"))
    fail({1, 1}, "merge_method is missing");
  std::string methodName = asString(keys["merge_method"], "merge_method");
  methodLoc_ = locOf(keys["merge_method"]);
  static const std::vector<Method> all = methods();
  for (const auto &m : all)
    if (m.name == methodName)
      method_ = &m;
  if (!method_) {
    std::string names;
    for (const auto &m : all)
      names += (names.empty() ? "" : ", ") + m.name;
    fail(methodLoc_, "merge_method '" + methodName + "' is not supported (mergec translates " + names + ")");
  }

  // Models: `models`, or one slice whose sources all span every layer.
  YAML::Node list;
  bool hasList = false;
  std::string listWhere = "models";
  std::optional<std::pair<int, Loc>> sliceLayers; // [0, N] that must be every layer
  // Layer stacking: slices[0]'s sources (as models_ indices, in order) with their ranges; set
  // when a source takes some layers only (`partial`) or there are several slices.
  std::vector<StackSource> firstSlice;
  bool partial = false;
  if (keys.count("models") && keys.count("slices"))
    fail(keyLoc["slices"], "give either models or slices, not both");
  std::map<std::string, Loc> sliceParamLocs;
  YAML::Node slices;
  if (keys.count("slices")) {
    slices = keys["slices"];
    if (!slices.IsSequence() || slices.size() == 0)
      fail(locOf(slices), "slices must be a non-empty list");
    for (auto &[k, v] : entries(slices[0], "slices[0]")) {
      if (k.Scalar() == "sources") {
        list = v;
        hasList = true;
      } else if (k.Scalar() == "parameters") {
        for (auto &[pk, pv] : entries(v, "slices[0].parameters")) {
          slice_[pk.Scalar()] = parseSetting(pv, "slices[0].parameters." + pk.Scalar());
          sliceParamLocs[pk.Scalar()] = locOf(pk);
        }
      } else
        fail(locOf(k), "slices[0]." + k.Scalar() + " is not supported yet");
    }
    if (!hasList)
      fail(locOf(slices[0]), "slices[0] has no sources");
    listWhere = "slices[0].sources";
  } else if (keys.count("models")) {
    list = keys["models"];
  } else {
    fail({1, 1}, "the configuration names no models (give models)");
  }
  if (!list.IsSequence() || list.size() == 0)
    fail(locOf(list), listWhere + " must be a non-empty list");

  std::optional<std::string> baseRef;
  if (keys.count("base_model"))
    baseRef = asString(keys["base_model"], "base_model");
  if (method_->needsBase && !baseRef)
    fail(methodLoc_, methodName + " needs a base_model");

  for (size_t i = 0; i < list.size(); ++i) {
    std::string where = listWhere + "[" + std::to_string(i) + "]";
    YAML::Node modelNode, params, range;
    bool hasModel = false, hasParams = false, hasRange = false;
    for (auto &[k, v] : entries(list[i], where)) {
      if (k.Scalar() == "model")
        modelNode = v, hasModel = true;
      else if (k.Scalar() == "parameters")
        params = v, hasParams = true;
      else if (k.Scalar() == "layer_range" && listWhere != "models")
        range = v, hasRange = true;
      else
        fail(locOf(k), "unknown key '" + k.Scalar() + "' in " + where);
    }
    if (!hasModel)
      fail(locOf(list[i]), where + " has no model");
    if (listWhere != "models") {
      if (!hasRange || !range.IsSequence() || range.size() != 2 || !asNumber(range[0]) || !asNumber(range[1]))
        fail(locOf(hasRange ? range : list[i]), where + ".layer_range must be [first, end]");
      auto [a, b] = layerRange(range, where);
      if (a != 0 || (sliceLayers && sliceLayers->first != b))
        partial = true;
      if (!sliceLayers)
        sliceLayers = {b, locOf(range)};
      firstSlice.push_back({models_.size(), a, b, locOf(range)});
    }
    std::string ref = asString(modelNode, where + ".model");
    bool isBase = baseRef && ref == *baseRef;
    for (const auto &e : models_)
      if (e.ref == ref)
        fail(locOf(modelNode), where + ": model '" + ref + "' is listed twice");
    ModelEntry e = resolveModel(modelNode, where + ".model", isBase);
    e.where = where;
    std::map<std::string, Loc> locs;
    if (hasParams)
      for (auto &[pk, pv] : entries(params, where + ".parameters")) {
        e.params[pk.Scalar()] = parseSetting(pv, where + ".parameters." + pk.Scalar());
        locs[pk.Scalar()] = locOf(pk);
      }
    if (isBase)
      baseIndex_ = int(models_.size());
    models_.push_back(std::move(e));
    checkParams(models_.back().params, locs, true, where + ".parameters");
  }
  if (baseRef && baseIndex_ < 0) {
    ModelEntry e = resolveModel(keys["base_model"], "base_model", true);
    e.listed = false;
    e.where = "base_model";
    baseIndex_ = int(models_.size());
    models_.push_back(std::move(e));
  }
  for (auto &e : models_)
    e.onIsBase = !e.loraPath.empty() && baseIndex_ >= 0 && e.path == models_[baseIndex_].path;
  bool passthrough = methodName == "passthrough";
  if (keys.count("slices") && (slices.size() > 1 || partial))
    stackSlices(slices, firstSlice, passthrough);

  if (keys.count("parameters")) {
    std::map<std::string, Loc> locs;
    for (auto &[pk, pv] : entries(keys["parameters"], "parameters")) {
      top_[pk.Scalar()] = parseSetting(pv, "parameters." + pk.Scalar());
      locs[pk.Scalar()] = locOf(pk);
    }
    checkParams(top_, locs, false, "parameters");
  }
  if (!slice_.empty())
    checkParams(slice_, sliceParamLocs, false, "slices[0].parameters");

  if (keys.count("random_seed")) {
    auto v = asNumber(keys["random_seed"]);
    if (!v || *v != std::floor(*v) || *v < 0 || *v >= 4294967296.0)
      fail(locOf(keys["random_seed"]), "random_seed must be an integer in [0, 2^32)");
    seed_ = int64_t(*v);
    if (method_->random)
      note("random_seed: " + std::to_string(*seed_) + " -> seed = " + std::to_string(*seed_) +
           " (mergec draws from Philox keyed by the seed and the tensor name: the same "
           "distribution as mergekit's torch generator, not the same draws)");
    else
      note("random_seed: " + methodName + " draws no random numbers: no effect");
  } else if (method_->random) {
    note("seed = 0: mergec's default (a top-level random_seed: N sets it; mergekit's "
         "--random-seed); mergec's Philox draws match mergekit's torch generator in "
         "distribution, not draw for draw");
  }

  // The output dtype and the compute dtype.
  ImportResult result;
  auto dtypeName = [&](const std::string &key) -> std::string {
    std::string v = asString(keys[key], key);
    std::string name = v.rfind("torch.", 0) == 0 ? v.substr(6) : v;
    if (name == "float32")
      return "f32";
    if (name == "bfloat16")
      return "bf16";
    if (name == "float16")
      return "f16";
    fail(locOf(keys[key]), key + ": '" + v + "' is not supported (float32, bfloat16 or float16)");
  };
  std::string computeNote;
  if (keys.count("dtype")) {
    std::string d = dtypeName("dtype");
    note("dtype: " + keys["dtype"].Scalar() + ": mergekit's compute dtype; mergec computes every "
         "element in f32 and rounds once when storing");
    if (!keys.count("out_dtype")) {
      result.dtype = d;
      note("the output dtype is " + d + " (mergekit writes dtype when there is no out_dtype): "
           "`mergec run` of this file passes --dtype " + d + "; give it when running this recipe");
    }
  }
  if (keys.count("out_dtype")) {
    result.dtype = dtypeName("out_dtype");
    note("out_dtype: " + keys["out_dtype"].Scalar() + " -> --dtype " + *result.dtype +
         " (`mergec run` of this file passes it; give it when running this recipe)");
  }

  if (keys.count("tokenizer_source")) {
    std::string src = asString(keys["tokenizer_source"], "tokenizer_source");
    Loc loc = locOf(keys["tokenizer_source"]);
    if (src == "union")
      fail(loc, "tokenizer_source: union (a merged vocabulary) is not supported yet");
    bool isBase = src == "base" ? true : (baseRef && src == *baseRef);
    if (src == "base" && !baseRef)
      isBase = false;
    if (!isBase)
      fail(loc, "tokenizer_source: '" + src + "': copying the tokenizer of a model other than the "
                "base model is not supported yet (the output takes the base model's tokenizer files)");
    note("tokenizer_source: " + src + ": the output takes the base model's tokenizer files (mergec's default)");
  }

  // Settings that must be known while compiling and vary over the layers: one rule per layer.
  RuleContext proto;
  for (const auto *list : {&method_->global, &method_->perModel})
    for (const ParamDef &p : *list) {
      if (!p.compileTime)
        continue;
      std::vector<const Setting *> settings;
      for (const auto &e : models_)
        for (const Setting *s : chain(p.name, list == &method_->perModel ? &e : nullptr))
          settings.push_back(s);
      for (const Setting *s : settings)
        if (hasGradient(s) && !proto.layerExpanded) {
          proto.layerExpanded = true;
          proto.numLayers = stack_.empty() ? numLayers(s->loc, s->where + ": a gradient of " + p.name)
                                           : stackLayers_;
          note(s->where + ": " + s->yaml + ": " + methodName + " needs " + p.name +
               " known while compiling, so every layer gets its own rule with the values "
               "mergekit interpolates for it (" + std::to_string(proto.numLayers) +
               " layers, from the config.json of '" + models_[baseIndex_ >= 0 ? baseIndex_ : 0].ref +
               "'); every gradient is evaluated there");
        }
    }
  if (stack_.size() > 1 && !gradients_.empty())
    fail(gradients_.front()->loc,
         gradients_.front()->where + ": a gradient over the layers with several slices is not "
         "supported yet (mergec's ramp runs over the output's layers, not within each slice)");
  for (const Setting *s : gradients_)
    note(s->where + ": " + (s->kind == Setting::Kind::Conditional ? std::string("its values hold gradients")
                                                                     : s->yaml + " is a gradient") +
         " over the layers (mergekit interpolates at "
         "t = layer / (layers - 1), t = 0 outside the layers): " +
         (proto.layerExpanded ? std::string("its value at each layer's rule") : std::string("ramp(...)")));
  if (sliceLayers && stack_.empty()) {
    int layers = proto.layerExpanded ? proto.numLayers
                                     : numLayers(sliceLayers->second, "slices[0]: layer_range [0, " +
                                                                          std::to_string(sliceLayers->first) + "]");
    if (layers != sliceLayers->first) {
      // Fewer layers than the models have: a stack of one slice, whose gradients run over it.
      stackSlices(slices, firstSlice, passthrough);
      if (proto.layerExpanded)
        proto.numLayers = stackLayers_;
    } else {
      note("slices: one slice, every source's layer_range [0, " + std::to_string(layers) +
           "] spans all layers: the same as models:");
    }
  }

  // Rules: every combination of layer and filter/value branches, in lexicographic order. A
  // rule's pattern is the conjunction of the filters its branches chose. For a tensor, the
  // first rule whose filters it all contains is its own: any earlier combination differs first
  // in a dimension where it chose an earlier branch, whose filter the tensor does not contain
  // (else that branch would be the tensor's).
  struct Dim {
    std::vector<std::optional<std::string>> filters; ///< per branch; nullopt: no condition
    const Setting *setting = nullptr;                ///< null: the layer dimension
  };
  std::vector<Dim> dims;
  if (proto.layerExpanded) {
    Dim d;
    for (int l = 0; l < proto.numLayers; ++l)
      d.filters.push_back(".layers." + std::to_string(l) + ".");
    d.filters.push_back(std::nullopt);
    dims.push_back(d);
  }
  for (const Setting *s : conditionals_) {
    Dim d;
    d.setting = s;
    bool catchAll = false;
    for (const auto &b : s->branches) {
      d.filters.push_back(b.filter);
      if (!b.filter) {
        catchAll = true;
        break;
      }
    }
    if (!catchAll)
      d.filters.push_back(std::nullopt); // none matched: the next level's value
    dims.push_back(d);
  }
  struct Rule {
    std::vector<std::string> patterns;
    std::string expr;
  };
  std::vector<Rule> rules;
  std::vector<size_t> idx(dims.size(), 0);
  size_t combinations = 1;
  for (const auto &d : dims) {
    combinations *= d.filters.size();
    if (combinations > 4096)
      fail(methodLoc_, "the filter lists and layers combine into more than 4096 rules");
  }
  for (size_t n = 0; n < combinations; ++n) {
    RuleContext ctx = proto;
    std::vector<std::string> parts;
    bool possible = true;
    for (size_t d = 0; d < dims.size(); ++d) {
      const auto &f = dims[d].filters[idx[d]];
      if (dims[d].setting)
        ctx.branch[dims[d].setting] = idx[d] < dims[d].setting->branches.size() ? idx[d] : dims[d].setting->branches.size();
      else if (f)
        ctx.layer = int(idx[d]);
      if (f) {
        parts.push_back(*f);
        // An earlier branch whose filter this one contains would have matched first.
        for (size_t e = 0; e < idx[d]; ++e)
          if (dims[d].filters[e] && f->find(*dims[d].filters[e]) != std::string::npos)
            possible = false;
      }
    }
    if (possible) {
      Rule r;
      r.expr = !stack_.empty() && passthrough ? "passthrough()" : expression(ctx);
      if (auto glob = conjunctionGlob(parts))
        r.patterns.push_back(*glob);
      rules.push_back(r);
    }
    for (size_t d = dims.size(); d-- > 0;) { // next combination, the last dimension fastest
      if (++idx[d] < dims[d].filters.size())
        break;
      idx[d] = 0;
    }
  }
  if (rules.empty() || !rules.back().patterns.empty())
    fail(methodLoc_, "internal: the rules have no default");
  // Neighbours with the same expression share a rule; rules before the default with its
  // expression are the default's.
  std::vector<Rule> merged;
  for (auto &r : rules) {
    if (!merged.empty() && merged.back().expr == r.expr && !merged.back().patterns.empty()) {
      if (r.patterns.empty())
        merged.back().patterns.clear();
      else
        merged.back().patterns.insert(merged.back().patterns.end(), r.patterns.begin(), r.patterns.end());
    } else {
      merged.push_back(r);
    }
  }
  while (merged.size() > 1 && merged[merged.size() - 2].expr == merged.back().expr)
    merged.erase(merged.end() - 2);
  // mergekit's passthrough takes the tensors after the layers from the last slice's model (and
  // those before them from the first slice's, the output model here): a rule for those of a
  // Llama-style checkpoint, when that model is another.
  if (!stack_.empty() && methodName == "passthrough") {
    const ModelEntry &output = models_[baseIndex_ >= 0 ? baseIndex_ : 0];
    const ModelEntry &last = models_[stack_.back().front().model];
    if (last.name != output.name) {
      merged.insert(merged.begin(), Rule{{"model.norm.weight", "lm_head.weight"}, last.name});
      note("the tensors after the layers (the final norm and lm_head, by their Llama-style names) "
           "come from the last slice's model, as in mergekit: \"model.norm.weight\" | "
           "\"lm_head.weight\" => " + last.name);
    }
  }

  // Unused --model mappings are mistakes.
  for (auto &[ref, path] : options_.models)
    if (!usedMappings_.count(ref))
      fail({}, "--model " + ref + "=" + path + ": the configuration names no model '" + ref + "'");

  std::ostringstream out;
  out << "# Translated by `mergec import` from " << path_ << " (a mergekit configuration);\n"
      << "# `mergec run " << path_ << "` runs exactly this recipe.\n"
      << "#\n# merge_method: " << methodName << "\n# models (mergekit reference -> recipe name):\n";
  for (const auto &e : models_)
    out << "#   " << e.ref << " -> " << e.name << " (" << e.how
        << (e.listed ? "" : "; base_model, which mergekit adds to the models") << ")\n";
  for (const auto &n : notes_)
    out << "# " << n << "\n";
  if (baseIndex_ >= 0) // first: the output follows it (tensor names, order, dtype)
    out << "model base = " << recipeString(models_[baseIndex_].path) << "\n";
  for (const auto &e : models_)
    if (e.name != "base" && e.loraPath.empty())
      out << "model " << e.name << " = " << recipeString(e.path) << "\n";
  // A lora is on the model of the same directory when one is declared, else on a model of
  // its own (named after the adapter's entry).
  for (const auto &e : models_) {
    if (e.loraPath.empty())
      continue;
    std::string on;
    for (const auto &m : models_)
      if (m.loraPath.empty() && m.path == e.path)
        on = m.name;
    if (on.empty()) {
      on = e.name + "_model";
      out << "model " << on << " = " << recipeString(e.path) << "\n";
    }
    out << "lora " << e.name << " = " << recipeString(e.loraPath) << " on " << on << "\n";
  }
  if (!stack_.empty()) {
    out << "layers [";
    for (size_t k = 0; k < stack_.size(); ++k) {
      out << (k ? ", " : "") << (stack_[k].size() > 1 ? "(" : "");
      for (size_t i = 0; i < stack_[k].size(); ++i)
        out << (i ? ", " : "") << models_[stack_[k][i].model].name << "[" << stack_[k][i].begin
            << ":" << stack_[k][i].end << "]";
      out << (stack_[k].size() > 1 ? ")" : "");
    }
    out << "]\n";
  }
  if (merged.size() == 1) {
    out << "merge " << merged[0].expr << "\n";
  } else {
    out << "merge {\n";
    for (const auto &r : merged) {
      out << "  ";
      if (r.patterns.empty())
        out << "_";
      for (size_t i = 0; i < r.patterns.size(); ++i)
        out << (i ? " | " : "") << recipeString(r.patterns[i]);
      out << " => " << r.expr << "\n";
    }
    out << "}\n";
  }
  result.recipe = out.str();
  return result;
}

} // namespace

std::optional<ImportResult> importMergekitConfig(const std::string &path, int file,
                                                 const ImportOptions &options,
                                                 DiagnosticEngine &diags) {
  try {
    YAML::Node root;
    try {
      root = YAML::Load(diags.source(file));
    } catch (const YAML::Exception &e) {
      fail({e.mark.line + 1, e.mark.column + 1}, "invalid YAML: " + e.msg);
    }
    Translator t(path, options);
    return t.run(root);
  } catch (const ImportError &e) {
    diags.error({e.loc.line, e.loc.col, file}, e.message);
  } catch (const YAML::Exception &e) {
    diags.error({e.mark.line + 1, e.mark.column + 1, file}, e.msg);
  }
  return std::nullopt;
}

} // namespace mergec::import
