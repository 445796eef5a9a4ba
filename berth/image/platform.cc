#include "berth/image/platform.h"

#include <fmt/format.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cctype>

namespace berth::image {
namespace {

std::string Lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// "v7" → 7, "" or malformed → -1.
int ArmVariantNumber(std::string_view variant) {
  if (variant.size() != 2 || variant[0] != 'v' ||
      !std::isdigit(static_cast<unsigned char>(variant[1]))) {
    return -1;
  }
  return variant[1] - '0';
}

}  // namespace

std::string Platform::ToString() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

Platform Normalize(Platform platform) {
  platform.os = Lowercase(platform.os);
  std::string arch = Lowercase(platform.architecture);
  std::string variant = Lowercase(platform.variant);
  if (arch == "x86_64" || arch == "x86-64") arch = "amd64";
  if (arch == "i386") arch = "386";
  if (arch == "aarch64") arch = "arm64";
  if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  }
  if (arch == "amd64" && variant == "v1") variant.clear();
  if (arch == "arm64" && (variant.empty() || variant == "8" || variant == "v8.0")) variant = "v8";
  if (arch == "arm") {
    if (variant.empty()) variant = "v7";
    if (variant.size() == 1 && std::isdigit(static_cast<unsigned char>(variant[0]))) {
      variant = "v" + variant;
    }
  }
  platform.architecture = std::move(arch);
  platform.variant = std::move(variant);
  return platform;
}

Result<Platform> ParsePlatform(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = text.find('/', start);
    parts.push_back(
        text.substr(start, slash == std::string_view::npos ? text.npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  for (std::string_view part : parts) {
    if (part.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("invalid platform \"{}\": empty component (use os/arch[/variant], "
                              "e.g. linux/arm64)",
                              text));
    }
  }
  if (parts.size() > 3) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid platform \"{}\": use os/arch[/variant]", text));
  }
  Platform platform;
  if (parts.size() == 1) {
    std::string only = Lowercase(parts[0]);
    if (only == "linux" || only == "windows" || only == "darwin" || only == "freebsd") {
      platform.os = only;
      platform.architecture = HostPlatform().architecture;
    } else {
      platform.os = "linux";
      platform.architecture = only;
    }
  } else {
    platform.os = std::string(parts[0]);
    platform.architecture = std::string(parts[1]);
    if (parts.size() == 3) platform.variant = std::string(parts[2]);
  }
  return Normalize(std::move(platform));
}

Platform HostPlatform() {
#if defined(__x86_64__)
  return Normalize({.os = "linux", .architecture = "amd64"});
#elif defined(__aarch64__)
  return Normalize({.os = "linux", .architecture = "arm64"});
#elif defined(__arm__)
  return Normalize({.os = "linux", .architecture = "arm"});
#elif defined(__i386__)
  return Normalize({.os = "linux", .architecture = "386"});
#else
  struct utsname name {};
  ::uname(&name);
  return Normalize({.os = "linux", .architecture = name.machine});
#endif
}

std::optional<int> MatchRank(const Platform& wanted_raw, const Platform& candidate_raw) {
  Platform wanted = Normalize(wanted_raw);
  Platform candidate = Normalize(candidate_raw);
  if (wanted.os != candidate.os || wanted.architecture != candidate.architecture) {
    return std::nullopt;
  }
  if (wanted.variant == candidate.variant) return 0;
  if (wanted.architecture == "arm") {
    int want = ArmVariantNumber(wanted.variant);
    int have = ArmVariantNumber(candidate.variant);
    if (want > 0 && have > 0 && have < want) return want - have;
  }
  // A candidate without a variant runs anywhere its os/arch does, after every exact match.
  if (candidate.variant.empty()) return 10;
  return std::nullopt;
}

}  // namespace berth::image
