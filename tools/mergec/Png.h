//===- Png.h - a small PNG encoder (8-bit RGB, stored deflate) --*- C++ -*-===//
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mergec {

/// An 8-bit RGB image, row by row, 3 bytes per pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
  RgbImage(int w, int h, uint8_t r, uint8_t g, uint8_t b);
  void set(int x, int y, uint8_t r, uint8_t g, uint8_t b);
  void fill(int x, int y, int w, int h, uint8_t r, uint8_t g, uint8_t b);
};

/// The image as a PNG file's bytes: IHDR (8-bit RGB, no interlace), one IDAT holding a zlib
/// stream of stored (uncompressed) deflate blocks, IEND; each chunk with its CRC-32. Heat maps
/// are small, so compression would buy little and cost a dependency.
std::string encodePng(const RgbImage &image);

} // namespace mergec
