//===- Limits.h - how large and how deep a recipe may get -------*- C++ -*-===//
// The parser, the AST builder, Sema, MLIRGen and the fusion pass recurse over expressions, and
// Sema inlines every def at every call, so a short recipe can ask for unbounded stack or
// memory. Each limit below is checked where user input first reaches the structure it bounds
// and reported at the recipe's line and column. Every one sits far above what a real merge
// needs, and far below what breaks: within them the compiler stays under half of the default
// 8 MB stack and under 1 GB of memory, whatever the recipe says.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mergec::limits {

/// A recipe or library file larger than this is refused before it is read: real recipes are
/// a few KB, and ANTLR needs ~200 times the text in memory (a 3 MB list: 600 MB).
inline constexpr uint64_t kMaxRecipeBytes = 1u << 20;

/// Open parentheses, brackets and unary minus signs around a point of the text. ANTLR's
/// parser recurses once per level (under 0.5 KB of stack each); real recipes nest fewer than 10.
inline constexpr size_t kMaxNesting = 256;

/// Binary operators in one expression at one level of parentheses (`a + b * c - d` has 3).
/// Each one nests the syntax tree one level deeper; long sums are written sum([...]), which
/// does not nest.
inline constexpr size_t kMaxOperatorChain = 1000;

/// Depth of an expression's syntax tree in operators, calls and lists (parentheses are bounded
/// by kMaxNesting). The AST builder and Sema recurse once per level.
inline constexpr size_t kMaxExpressionDepth = 1000;

/// Depth of Sema's evaluation once defs are inlined (each call evaluates the def's body one
/// level further down), and the depth of the operation DAG it builds, which MLIRGen and the
/// fusion pass walk recursively. Stdlib methods reach ~50; 2000 levels of the deepest kinds
/// (nested calls of defs and builtins) fit in half of the default 8 MB stack.
inline constexpr size_t kMaxInlinedDepth = 2000;

/// Operations Sema may build for the whole recipe, counted as the MLIR operations they become
/// (a median of k values is a k x k sorting network, an iteration over the Gram matrix of m
/// tensors ~12 m^2). Inlining doubles the size with each def that calls the one below twice, so
/// without a cap a 1.5 KB recipe asks for 24 GB. The largest stdlib methods on 16 models need
/// ~4,000 (geomedian); a recipe at the cap (two sums of 9,900 distinct products in one rule)
/// takes LLVM ~60 s to compile, and the compile time grows faster than the size beyond it.
inline constexpr size_t kMaxOperations = 100'000;

/// Evaluation steps Sema may take for the whole recipe (an expression evaluated, a list item
/// copied): inlining repeats work that builds no operation, such as a long list only measured
/// by len(), as often as work that does. ~1 s of Sema; a 1 MiB recipe without defs needs at
/// most ~500,000, the stdlib methods a few thousand.
inline constexpr size_t kMaxEvaluationSteps = 10'000'000;

/// Items in one list. A list holds one value per model (or per pair of models, for
/// pairs_first / pairs_second): 10,000 is every pair of 141 models.
inline constexpr size_t kMaxListLength = 10'000;

/// Parameters of one def and arguments of one call (ramp takes one per anchor; models have at
/// most a few hundred layers). Keyword binding is quadratic in this number.
inline constexpr size_t kMaxArguments = 1024;

/// Rules in the merge block, and patterns in all of them together: planning matches every
/// pattern against every tensor name (tens of thousands in a large checkpoint; it also stops
/// with an error after 10^9 steps of wildcard matching, ~6 s), and each rule is compiled to
/// kernels of its own.
inline constexpr size_t kMaxRules = 1024;
inline constexpr size_t kMaxPatterns = 4096;

} // namespace mergec::limits
