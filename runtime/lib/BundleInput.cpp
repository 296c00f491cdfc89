//===- BundleInput.cpp - a compressed bundle's member as an input ---------===//
#include "mergec/Runtime/BundleInput.h"
#include "mergec/Runtime/Bundle.h"
#include "mergec/Runtime/Error.h"
#include "mergec/Runtime/LinearAlgebra.h"
#include <nlohmann/json.hpp>
#include <filesystem>
#include <fstream>

namespace mergec::rt {
namespace {

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void toF32(const TensorInfo &t, float *out) {
  int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i)
    out[i] = loadAsF32(t.dtype, t.data, i);
}

} // namespace

std::unique_ptr<BundleMember> BundleMember::open(const std::string &name, const std::string &path,
                                                 int64_t member, Checkpoint &bundle) {
  std::string file = (std::filesystem::path(bundle.directory()) / kBundleFileName).string();
  auto fail = [&](const std::string &what, const std::string &tensor = "") -> RuntimeError {
    return RuntimeError(file + ": " + what, file, tensor);
  };
  std::ifstream in(file);
  if (!in)
    throw fail("missing: '" + path + "' is not a bundle (merge compress(...) writes one)");
  nlohmann::ordered_json layout;
  try {
    layout = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::parse_error &e) {
    throw fail(std::string("not JSON: ") + e.what());
  }
  auto result = std::make_unique<BundleMember>();
  BundleMember &b = *result;
  b.member_ = member;
  try {
    if (!layout.is_object() || layout.value("format", "") != kBundleFormat)
      throw fail(std::string("not a bundle description (\"format\" is not \"") + kBundleFormat +
                 "\")");
    if (layout.at("version").get<int>() != kBundleVersion)
      throw fail("version " + layout.at("version").dump() + ", this mergec reads version " +
                 std::to_string(kBundleVersion));
    const auto &members = layout.at("members");
    b.members_ = members.size();
    if (member < 0 || static_cast<size_t>(member) >= b.members_)
      throw fail(name + ": the bundle has " + std::to_string(b.members_) + " member(s), 0 to " +
                 std::to_string(static_cast<int64_t>(b.members_) - 1) + ", not " +
                 std::to_string(member));
    std::vector<const TensorInfo *> order;
    auto need = [&](const std::string &tensor, const std::vector<int64_t> &shape) {
      const TensorInfo *t = bundle.find(tensor);
      if (!t)
        throw fail("lists a tensor whose '" + tensor + "' is not in the bundle's files",
                   tensor);
      if (t->shape != shape)
        throw fail("'" + tensor + "' should be " + shapeText(shape) + " as the layout says, the "
                   "file has " + t->shapeString(), tensor);
      if (!isComputeDType(t->dtype) && tensor.find(".model.") == std::string::npos)
        throw fail("'" + tensor + "' is " + dtypeName(t->dtype) + ", not F32, F16 or BF16",
                   tensor);
      return t;
    };
    for (const auto &[tensor, e] : layout.at("tensors").items()) {
      auto shape = e.at("shape").get<std::vector<int64_t>>();
      std::string kind = e.at("kind").get<std::string>();
      TensorInfo &view = b.view_.emplace_back();
      if (kind == "stored") {
        // X.model.i as it is, under X's name.
        view = *need(tensor + ".model." + std::to_string(member), shape);
        view.name = tensor;
      } else if (kind == "compressed") {
        if (shape.size() != 2)
          throw fail("compressed tensor '" + tensor + "' is " + shapeText(shape) +
                     ", not a matrix", tensor);
        auto dtype = parseDType(e.at("dtype").get<std::string>());
        if (!dtype || !isComputeDType(*dtype))
          throw fail("compressed tensor '" + tensor + "' has dtype " + e.at("dtype").dump(),
                     tensor);
        BundleFactors f;
        f.name = tensor;
        f.rows = shape[0];
        f.cols = shape[1];
        f.rank = e.at("rank").get<int64_t>();
        int64_t n = static_cast<int64_t>(b.members_);
        f.avg = need(tensor + ".avg", {f.rows, f.cols});
        f.scale = need(tensor + ".scale", {n});
        for (int64_t i = 0; i < n; ++i) {
          f.u.push_back(need(tensor + ".U." + std::to_string(i), {f.rows, f.rank}));
          f.v.push_back(need(tensor + ".V." + std::to_string(i), {f.rank, f.cols}));
        }
        // The source's header; its f32 values are reconstructed when a rule reads it.
        view.name = tensor;
        view.dtype = *dtype;
        view.shape = shape;
        view.nbytes = static_cast<uint64_t>(f.rows * f.cols) * dtypeSize(*dtype);
        view.file = f.avg->file; // where its factors are, for messages; no bytes of its own
        b.factors_[tensor] = std::move(f);
      } else {
        throw fail("tensor '" + tensor + "' has kind \"" + kind +
                   "\" (compressed or stored expected)", tensor);
      }
      order.push_back(&view);
    }
    bundle.setView(std::move(order));
  } catch (const nlohmann::json::exception &e) {
    throw fail(std::string("malformed layout: ") + e.what());
  }
  return result;
}

const BundleFactors *BundleMember::factors(const std::string &name) const {
  auto it = factors_.find(name);
  return it == factors_.end() ? nullptr : &it->second;
}

std::vector<const TensorInfo *> BundleMember::readTensors(const BundleFactors &f, int64_t member) {
  return {f.avg, f.scale, f.u[static_cast<size_t>(member)], f.v[static_cast<size_t>(member)]};
}

uint64_t BundleMember::scratchBytes(const BundleFactors &f) {
  return static_cast<uint64_t>(f.rows * f.cols + f.rank * (f.rows + f.cols)) * sizeof(float);
}

void BundleMember::reconstruct(const BundleFactors &f, int64_t member, float *out,
                               std::vector<float> &scratch) {
  const TensorInfo &u = *f.u[static_cast<size_t>(member)], &v = *f.v[static_cast<size_t>(member)];
  int64_t n = f.rows * f.cols;
  size_t need = static_cast<size_t>(n + f.rank * (f.rows + f.cols));
  if (scratch.size() < need)
    scratch.resize(need);
  float *avg = scratch.data(), *uf = avg + n, *vf = uf + f.rank * f.rows;
  toF32(*f.avg, avg);
  toF32(u, uf);
  toF32(v, vf);
  // U @ V with the runtime's threaded GEMM (split by rows and columns, never over the rank: the
  // same bits for any thread count), then scale (avg + UV) in f32, as bundle_ref.py writes it.
  if (mergec_la_gemm(0, 0, f.rows, f.cols, f.rank, 1.0f, uf, vf, out) != 0)
    throw RuntimeError("tensor " + f.name + ": reconstructing it from the bundle: " +
                           mergec_la_error(),
                       f.avg->file ? f.avg->file->path() : "", f.name);
  float scale = loadAsF32(f.scale->dtype, f.scale->data, member);
  for (int64_t i = 0; i < n; ++i)
    out[i] = scale * (avg[i] + out[i]);
}

} // namespace mergec::rt
