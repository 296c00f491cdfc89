//===- Error.h - errors raised by the runtime -------------------*- C++ -*-===//
// The runtime reports failures as exceptions carrying a complete, user-facing message
// (it names the file and, where there is one, the tensor); the driver prints it and exits 1.
#pragma once
#include <stdexcept>
#include <string>

namespace mergec::rt {

class RuntimeError : public std::runtime_error {
public:
  explicit RuntimeError(const std::string &message) : std::runtime_error(message) {}
};

} // namespace mergec::rt
