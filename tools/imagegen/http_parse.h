// File: tools/imagegen/http_parse.h
//
// The little HTTP text parsing imagegen's RegistryClient needs: absolute URLs (to resolve a
// Location header) and WWW-Authenticate challenges (Basic, and Bearer with realm/service/scope).
// Written apart from berth/registry on purpose: imagegen is a test oracle for berth's registry
// client, and an oracle that shared the parser it checks would share its bugs.
//
// Thread safety: value types and pure functions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace berth::imagegen {

// An absolute http(s) URL, split into its parts.
struct ParsedUrl {
  std::string scheme;  // lowercased: "http" or "https"
  std::string host;    // without brackets or port: "127.0.0.1", "::1", "registry.test"
  std::string port;    // "5000", or empty when the URL names none
  std::string path;    // starts with '/' ("/" when the URL has none)
  std::string query;   // without the '?'; empty when there is none

  // "host:port" (brackets around an IPv6 host), or the host alone without a port.
  std::string Authority() const;
  // The URL again: scheme://authority/path[?query].
  std::string ToString() const;
};

// Splits "scheme://host[:port][/path][?query][#fragment]" (the fragment is dropped). nullopt
// for a scheme other than http/https, a missing host, userinfo, or a port that is not a number.
std::optional<ParsedUrl> ParseHttpUrl(std::string_view text);

// `location` resolved against `base`: an absolute URL as it is, "//host/…" with base's scheme,
// "/path" on base's host, and anything else relative to base's directory (its path up to the
// last '/', the query not counted). nullopt when the result is not a valid URL.
std::optional<ParsedUrl> ResolveReference(const ParsedUrl& base, std::string_view location);

// Percent-encodes every byte but the RFC 3986 unreserved characters.
std::string PercentEncode(std::string_view value);

// One challenge of a WWW-Authenticate header.
struct AuthChallenge {
  std::string scheme;                         // lowercased: "basic", "bearer", …
  std::map<std::string, std::string> params;  // names lowercased; quoted values unescaped

  // The value of parameter `name` (lowercase), or empty.
  std::string Param(const std::string& name) const;
};

// Parses a WWW-Authenticate value holding one or more challenges, e.g.
//   Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a:pull"
//   Basic realm="registry"
// nullopt when it is malformed (an unterminated quote, a parameter value followed by anything
// but ',', no challenge at all).
std::optional<std::vector<AuthChallenge>> ParseAuthChallenges(std::string_view header);

}  // namespace berth::imagegen
