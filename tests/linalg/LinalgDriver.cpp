//===- LinalgDriver.cpp - one linear algebra call on a matrix file --------===//
// mergec-linalg-driver OP M N IN OUTDIR [K [OVERSAMPLE ITERS SEED]] [--threads T]
//   OP: svd (K), rsvd (K OVERSAMPLE ITERS SEED), orth, lowrank (K), highpass or lowpass (K is
//   the ratio in thousandths). IN holds M·N row-major f32.
//   Writes OUTDIR/u.f32, s.f32, vt.f32 (svd, rsvd) or OUTDIR/out.f32 (the others) and prints
//   the call's wall time as "seconds: S". Exit 1 with the library's message on failure.
#include "mergec/Runtime/LinearAlgebra.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

std::vector<float> readMatrix(const std::string &path, int64_t count) {
  std::vector<float> x(count);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char *>(x.data()), count * 4)) {
    std::cerr << "linalg-driver: " << path << ": cannot read " << count << " floats\n";
    std::exit(1);
  }
  return x;
}

void write(const std::string &path, const std::vector<float> &x) {
  std::ofstream out(path, std::ios::binary);
  if (!out.write(reinterpret_cast<const char *>(x.data()), x.size() * 4)) {
    std::cerr << "linalg-driver: cannot write " << path << "\n";
    std::exit(1);
  }
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      mergec_la_set_threads(std::atoi(argv[++i]));
    else
      args.push_back(argv[i]);
  }
  if (args.size() < 5) {
    std::cerr << "usage: mergec-linalg-driver OP M N IN OUTDIR [K [OVERSAMPLE ITERS SEED]] "
                 "[--threads T]\n";
    return 1;
  }
  const std::string &op = args[0], &outdir = args[4];
  int64_t m = std::atoll(args[1].c_str()), n = std::atoll(args[2].c_str());
  auto arg = [&](size_t i) { return i < args.size() ? std::atoll(args[i].c_str()) : 0; };
  int64_t k = arg(5);
  std::vector<float> x = readMatrix(args[3], m * n);
  auto start = std::chrono::steady_clock::now();
  int32_t status;
  std::vector<float> u, s, vt, out;
  if (op == "svd" || op == "rsvd") {
    u.resize(m * k), s.resize(k), vt.resize(k * n);
    status = op == "svd" ? mergec_la_svd(m, n, x.data(), k, u.data(), s.data(), vt.data())
                         : mergec_la_rsvd(m, n, x.data(), k, arg(6), arg(7),
                                          static_cast<uint32_t>(arg(8)), 0, u.data(), s.data(),
                                          vt.data());
  } else if (op == "orth" || op == "lowrank") {
    out.resize(m * n);
    status = op == "orth" ? mergec_la_orth(m, n, x.data(), out.data())
                          : mergec_la_lowrank(m, n, x.data(), k, out.data());
  } else if (op == "highpass" || op == "lowpass") {
    out.resize(m * n);
    status = mergec_la_spectral_filter(m, n, x.data(), static_cast<float>(k) / 1000.0f,
                                       op == "lowpass" ? 1 : 0, out.data());
  } else {
    std::cerr << "linalg-driver: unknown op " << op << "\n";
    return 1;
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (status != 0) {
    std::cerr << "linalg-driver: " << mergec_la_error() << "\n";
    return 1;
  }
  if (out.empty()) {
    write(outdir + "/u.f32", u);
    write(outdir + "/s.f32", s);
    write(outdir + "/vt.f32", vt);
  } else {
    write(outdir + "/out.f32", out);
  }
  std::printf("seconds: %.6f\n", seconds);
  return 0;
}
