//===- AtomicFile.h - a file that is replaced whole or not at all -*- C++ -*-===//
#pragma once
#include "mergec/Runtime/InputProtection.h"
#include <string>
#include <string_view>
#include <vector>

namespace mergec::rt {

/// Writes `bytes` to `path`: into a temporary beside it, every write and the close checked,
/// fsynced, then renamed into place, so `path` holds either its old content or all of the new
/// one (a full disk leaves it untouched, never empty). A link is followed and its target
/// replaced. A character device or FIFO (`-o /dev/stdout`) is written directly; a directory or
/// another kind of file is refused. Refuses, before writing anything, a `path` that is or lies
/// inside one of `inputs`. Throws RuntimeError.
void writeFileAtomically(const std::string &path, std::string_view bytes,
                         const std::vector<ProtectedInput> &inputs);

} // namespace mergec::rt
