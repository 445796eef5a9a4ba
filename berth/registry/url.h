// File: berth/registry/url.h
//
// The little URL handling the registry client needs: split an absolute http(s) URL, escape a
// query value, and resolve a redirect's Location against the URL that answered.
#pragma once

#include <string>
#include <string_view>

#include "berth/base/result.h"

namespace berth::registry {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // "registry.example:5000", "[::1]:5000"
  std::string path;    // path and query, starting with '/' ("/" when empty)

  std::string ToString() const { return scheme + "://" + host + path; }
};

// Parses "scheme://host[:port][/path][?query]". kInvalidArgument for other schemes, userinfo or
// an empty host.
Result<Url> ParseUrl(std::string_view text);

// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
std::string QueryEscape(std::string_view value);

// Resolves a Location header against `base`: absolute URLs as they are, "/path" on base's host,
// "//host/path" with base's scheme, and relative paths against base's directory.
Result<Url> ResolveLocation(const Url& base, std::string_view location);

}  // namespace berth::registry
