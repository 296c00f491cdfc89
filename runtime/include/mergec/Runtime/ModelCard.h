//===- ModelCard.h - README.md for a merged model ---------------*- C++ -*-===//
#pragma once
#include "mergec/Runtime/Executor.h"
#include <string>

namespace mergec::rt {

/// The model card a merge writes as README.md: Hugging Face front matter (the models as
/// base_model, tags), then what made the model: mergec's version, the methods, the output's base
/// model, every input model with its path, the params and the recipe with its sha256. Nothing
/// in it depends on the run's time or on how the kernels were built, so `mergec run` and a
/// merge executable write the same card.
std::string modelCard(const MergePlan &plan, const RunOptions &options);

} // namespace mergec::rt
