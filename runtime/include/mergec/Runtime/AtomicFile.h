//===- AtomicFile.h - a file that is replaced whole or not at all -*- C++ -*-===//
#pragma once
#include "mergec/Runtime/InputProtection.h"
#include <string>
#include <sys/types.h>
#include <string_view>
#include <vector>

namespace mergec::rt {

/// Writes `bytes` to `path`: into a temporary beside it, every write and the close checked,
/// fsynced, then renamed into place, so `path` holds either its old content or all of the new
/// one (a full disk leaves it untouched, never empty). A link is followed and its target
/// replaced. A character device or FIFO (`-o /dev/stdout`) is written directly; a directory or
/// another kind of file is refused. Refuses, before writing anything, a `path` that is or lies
/// inside one of `inputs`. A new file gets `mode` less the umask (0777 for an executable); a
/// replaced one keeps its permissions. Throws RuntimeError.
void writeFileAtomically(const std::string &path, std::string_view bytes,
                         const std::vector<ProtectedInput> &inputs, unsigned mode = 0666);

} // namespace mergec::rt
