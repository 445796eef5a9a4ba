// File: berth/base/base64.h
//
// Standard base64 (RFC 4648 §4, with padding), as Go's base64.StdEncoding reads and writes it.
#pragma once

#include <string>
#include <string_view>

#include "berth/base/result.h"

namespace berth {

std::string Base64Encode(std::string_view bytes);
// URL-safe alphabet without padding (RFC 4648 §5), as JWTs use.
std::string Base64UrlEncode(std::string_view bytes);

// Decodes the URL-safe alphabet without padding (JWT segments); trailing '=' padding is also
// accepted. kInvalidArgument on characters outside the alphabet or an impossible length.
Result<std::string> Base64UrlDecode(std::string_view text);

// Strict decoding: padding required, no whitespace, no characters outside the alphabet.
// kInvalidArgument naming the offending position otherwise. The input is not echoed, since it
// may be a credential.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace berth
