// File: berth/archive/test_util.h
//
// Test helpers for berth/archive (test-only, header-only):
//   - RawTar: emits ustar/GNU headers with arbitrary names, link names, types and numeric
//     fields, for hostile or unusual archives that imagegen's TarWriter will not produce;
//   - TarOf / Compress: imagegen FileTree → tar bytes → gzip/zstd blob.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "tools/imagegen/compress.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/tar_writer.h"

namespace berth::archive::testing {

struct RawHeader {
  std::string name;
  char type = '0';
  uint32_t mode = 0644;
  uint64_t size = 0;
  std::string linkname;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t mtime = 0;
  // Overrides for the raw text of the size field (e.g. garbage), if non-empty.
  std::string raw_size;
  // "ustar\0" + "00" (POSIX) unless gnu is set ("ustar  \0").
  bool gnu = false;
};

class RawTar {
 public:
  using Block = std::array<char, 512>;

  static void PutOctal(Block& block, size_t offset, size_t width, uint64_t value) {
    std::string digits = fmt::format("{:0{}o}", value, width - 1);
    std::memcpy(block.data() + offset, digits.data(), std::min(digits.size(), width));
  }
  static void Checksum(Block& block) {
    std::memset(block.data() + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : block) sum += static_cast<unsigned char>(c);
    std::string digits = fmt::format("{:06o}", sum);
    std::memcpy(block.data() + 148, digits.data(), 6);
    block[154] = '\0';
    block[155] = ' ';
  }

  static Block MakeHeader(const RawHeader& h) {
    Block block{};
    std::memcpy(block.data(), h.name.data(), std::min<size_t>(h.name.size(), 100));
    PutOctal(block, 100, 8, h.mode);
    PutOctal(block, 108, 8, h.uid);
    PutOctal(block, 116, 8, h.gid);
    if (!h.raw_size.empty()) {
      std::memcpy(block.data() + 124, h.raw_size.data(), std::min<size_t>(h.raw_size.size(), 12));
    } else {
      PutOctal(block, 124, 12, h.size);
    }
    PutOctal(block, 136, 12, h.mtime);
    block[156] = h.type;
    std::memcpy(block.data() + 157, h.linkname.data(), std::min<size_t>(h.linkname.size(), 100));
    if (h.gnu) {
      std::memcpy(block.data() + 257, "ustar  \0", 8);
    } else {
      std::memcpy(block.data() + 257,
                  "ustar\0"
                  "00",
                  8);
    }
    Checksum(block);
    return block;
  }

  // Appends a header and `content` (padded); header.size defaults to content.size().
  RawTar& Add(RawHeader header, std::string_view content = {}) {
    if (header.size == 0) header.size = content.size();
    Block block = MakeHeader(header);
    bytes_.append(block.data(), block.size());
    AppendPadded(content);
    return *this;
  }
  RawTar& AddBlock(const Block& block) {
    bytes_.append(block.data(), block.size());
    return *this;
  }
  RawTar& AppendPadded(std::string_view content) {
    bytes_.append(content);
    bytes_.append((512 - content.size() % 512) % 512, '\0');
    return *this;
  }
  // A pax extended header ('x') with the given records, applying to the next entry.
  RawTar& AddPax(const std::vector<std::pair<std::string, std::string>>& records) {
    std::string payload;
    for (const auto& [key, value] : records) payload += imagegen::PaxRecord(key, value);
    return Add({.name = "PaxHeaders/x", .type = 'x'}, payload);
  }
  std::string Finish() {
    bytes_.append(1024, '\0');
    return bytes_;
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

inline std::string TarOf(const imagegen::LayerSource& source) {
  std::string bytes;
  imagegen::StringSink sink(&bytes);
  imagegen::TarWriter tar(sink);
  auto written = source.WriteTo(tar);
  EXPECT_TRUE(written.has_value()) << written.error().ToString();
  auto finished = tar.Finish();
  EXPECT_TRUE(finished.has_value()) << finished.error().ToString();
  return bytes;
}

inline std::string Compress(std::string_view tar, imagegen::Compression compression) {
  std::string bytes;
  imagegen::StringSink sink(&bytes);
  auto compressor = imagegen::MakeCompressor({.compression = compression}, sink);
  EXPECT_TRUE(compressor.has_value());
  EXPECT_TRUE((*compressor)->Write(tar).has_value());
  EXPECT_TRUE((*compressor)->Finish().has_value());
  return bytes;
}

}  // namespace berth::archive::testing
