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
  /// With the file and the tensor the message names, where the thrower knows them (empty where
  /// not): `--json`'s error event carries them as fields.
  RuntimeError(const std::string &message, std::string file, std::string tensor)
      : std::runtime_error(message), file_(std::move(file)), tensor_(std::move(tensor)) {}
  const std::string &file() const { return file_; }
  const std::string &tensor() const { return tensor_; }

private:
  std::string file_, tensor_;
};

} // namespace mergec::rt
