//===- Png.cpp - a small PNG encoder (8-bit RGB, stored deflate) ----------===//
// PNG: https://www.w3.org/TR/png/ ; zlib: RFC 1950 ; stored deflate blocks: RFC 1951 3.2.4.
#include "Png.h"
#include <algorithm>
#include <array>

namespace mergec {

RgbImage::RgbImage(int w, int h, uint8_t r, uint8_t g, uint8_t b)
    : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3) {
  fill(0, 0, w, h, r, g, b);
}

void RgbImage::set(int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= width || y >= height)
    return;
  size_t at = (static_cast<size_t>(y) * width + x) * 3;
  pixels[at] = r;
  pixels[at + 1] = g;
  pixels[at + 2] = b;
}

void RgbImage::fill(int x, int y, int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  for (int yy = y; yy < y + h; ++yy)
    for (int xx = x; xx < x + w; ++xx)
      set(xx, yy, r, g, b);
}

namespace {

uint32_t crc32(const std::string &bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k)
        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char byte : bytes)
    c = table[(c ^ byte) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(const std::string &bytes) {
  uint32_t a = 1, b = 0;
  for (unsigned char byte : bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void putBigEndian(std::string &out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void putChunk(std::string &out, const char *type, const std::string &data) {
  putBigEndian(out, static_cast<uint32_t>(data.size()));
  std::string typed = std::string(type, 4) + data;
  out += typed;
  putBigEndian(out, crc32(typed));
}

} // namespace

std::string encodePng(const RgbImage &image) {
  // The raw scanlines: filter type 0 (none), then the row's pixels.
  std::string raw;
  size_t rowBytes = static_cast<size_t>(image.width) * 3;
  for (int y = 0; y < image.height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char *>(image.pixels.data()) + y * rowBytes, rowBytes);
  }
  // zlib: CMF 0x78 (deflate, 32K window), FLG 0x01 (check bits; no dictionary, level 0).
  std::string zlib{'\x78', '\x01'};
  size_t done = 0;
  do {
    size_t n = std::min<size_t>(raw.size() - done, 65535);
    bool last = done + n == raw.size();
    zlib.push_back(last ? 1 : 0); // BFINAL, BTYPE 00: stored
    zlib.push_back(static_cast<char>(n & 0xFF));
    zlib.push_back(static_cast<char>(n >> 8));
    zlib.push_back(static_cast<char>(~n & 0xFF));
    zlib.push_back(static_cast<char>((~n >> 8) & 0xFF));
    zlib.append(raw, done, n);
    done += n;
  } while (done < raw.size());
  putBigEndian(zlib, adler32(raw));

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  putBigEndian(header, static_cast<uint32_t>(image.width));
  putBigEndian(header, static_cast<uint32_t>(image.height));
  header += std::string{8, 2, 0, 0, 0}; // 8 bits, RGB, deflate, adaptive filters, no interlace
  putChunk(png, "IHDR", header);
  putChunk(png, "IDAT", zlib);
  putChunk(png, "IEND", "");
  return png;
}

} // namespace mergec
