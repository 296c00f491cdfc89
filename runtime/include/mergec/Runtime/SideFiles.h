//===- SideFiles.h - copy the base model's tokenizer and config -*- C++ -*-===//
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace mergec::rt {

/// The files besides the weights that make a merged directory loadable: copied from the base.
extern const std::vector<std::string> kSideFiles;

enum class SideFileResult { Copied, Absent, Skipped };

/// Copies `modelDir/name` into `toDir`, keeping its permission bits, when it is a regular file
/// inside `modelDir` or a Hugging Face cache blob it links to (snapshots/<rev>/name ->
/// ../../blobs/<hash>). Anything else (a link leading elsewhere on disk, a FIFO, a device, a
/// directory, a dangling link) is Skipped with the reason in `warning`; nothing is opened
/// before that is known. Throws RuntimeError when a file that qualifies cannot be copied.
SideFileResult copySideFile(const std::string &modelDir, const std::string &toDir,
                            const std::string &name, std::string &warning);

} // namespace mergec::rt
