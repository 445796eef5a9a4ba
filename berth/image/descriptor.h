// File: berth/image/descriptor.h
//
// Descriptor and Platform: the value types that name content in the OCI image spec. A
// Descriptor says what a blob is (media type), where it is (digest) and how big it is (size);
// every byte berth fetches is checked against one.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "berth/digest/digest.h"

namespace berth::image {

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string os_version;
  std::vector<std::string> os_features;

  // "linux/arm64/v8", "linux/amd64".
  std::string ToString() const;
  friend bool operator==(const Platform&, const Platform&) = default;
};

struct Descriptor {
  std::string media_type;
  Digest digest = Digest::Sha256Of("");
  int64_t size = 0;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> urls;

  friend bool operator==(const Descriptor&, const Descriptor&) = default;
};

}  // namespace berth::image
