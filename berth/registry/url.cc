#include "berth/registry/url.h"

#include <fmt/format.h>

#include <cctype>

namespace berth::registry {

Result<Url> ParseUrl(std::string_view text) {
  size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid URL \"{}\": expected scheme://host/path", text));
  }
  Url url;
  url.scheme = std::string(text.substr(0, scheme_end));
  for (char& c : url.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (url.scheme != "http" && url.scheme != "https") {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid URL \"{}\": scheme must be http or https", text));
  }
  std::string_view rest = text.substr(scheme_end + 3);
  size_t host_end = rest.find_first_of("/?#");
  std::string_view host = rest.substr(0, host_end);
  if (host.empty()) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("invalid URL \"{}\": no host", text));
  }
  if (host.find('@') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "invalid URL: credentials in URLs are not supported; configure them as auth");
  }
  url.host = std::string(host);
  url.path = host_end == std::string_view::npos ? "/" : std::string(rest.substr(host_end));
  if (url.path.front() != '/') url.path.insert(url.path.begin(), '/');
  size_t fragment = url.path.find('#');
  if (fragment != std::string::npos) url.path.resize(fragment);
  return url;
}

std::string QueryEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 15]);
    }
  }
  return out;
}

Result<Url> ResolveLocation(const Url& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return ParseUrl(location);
  if (location.starts_with("//")) return ParseUrl(base.scheme + ":" + std::string(location));
  Url resolved = base;
  if (location.starts_with("/")) {
    resolved.path = std::string(location);
    return resolved;
  }
  std::string directory = base.path.substr(0, base.path.find('?'));
  directory.resize(directory.rfind('/') + 1);
  resolved.path = directory + std::string(location);
  return resolved;
}

}  // namespace berth::registry
