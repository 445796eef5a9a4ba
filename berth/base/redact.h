// File: berth/base/redact.h
//
// Credential hygiene. Two tools, used together:
//
// - Secret holds a credential (password, token, base64 auth). It has no implicit conversion to
//   string and formats as "<redacted>", so a Secret passed to a log call or an error message
//   prints nothing sensitive. Code that must send it on the wire calls reveal() explicitly.
// - RedactSecrets() scrubs free text that may carry a credential by accident (a server's error
//   body, a URL, a header dump). Every Error message and every log line goes through it.
//
// Thread safety: both are value types / pure functions.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace berth {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}

  // The credential itself. Call only where it is put on the wire or compared.
  const std::string& reveal() const { return value_; }
  bool empty() const { return value_.empty(); }

  friend bool operator==(const Secret&, const Secret&) = default;

 private:
  std::string value_;
};

// The placeholder that replaces any secret in logs and errors.
inline constexpr std::string_view kRedacted = "<redacted>";

// Returns `text` with credentials replaced by kRedacted:
//  - values of Authorization / Proxy-Authorization headers, and any "Basic xxx" / "Bearer xxx";
//  - userinfo in URLs ("https://user:pass@host" → "https://<redacted>@host");
//  - URL query strings (signed object-storage URLs carry signatures there) → "?<redacted>";
//  - key=value, key: value and "key": "value" pairs whose key IsSecretKey() accepts.
std::string RedactSecrets(std::string_view text);

// True if a field named `key` holds a secret by its name: case-insensitively, the key (or, for a
// dotted key, its last component) contains password, passwd, token, secret, auth (but not as
// part of "author", unless in "authorization"), identitytoken, credential, signature, apikey or
// api_key, or is exactly "sig".
bool IsSecretKey(std::string_view key);

}  // namespace berth

template <>
struct fmt::formatter<berth::Secret> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const berth::Secret&, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format(berth::kRedacted, ctx);
  }
};
