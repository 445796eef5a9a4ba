// Fuzzes token server response decoding (berth/registry/auth ParseTokenResponse). Invariants: an
// accepted response has a non-empty access token and a lifetime within [1 s, 1 day]; errors are
// kInvalidArgument (malformed) or kResourceExhausted (over kMaxTokenResponseBytes) and never
// contain the token text.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "berth/registry/auth.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace registry = berth::registry;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  berth::Result<registry::Token> token = registry::ParseTokenResponse(body);
  if (!token) {
    berth::ErrorCode code = token.error().code();
    FUZZ_CHECK(
        code == berth::ErrorCode::kInvalidArgument || code == berth::ErrorCode::kResourceExhausted,
        token.error().message());
    return 0;
  }
  FUZZ_CHECK(body.size() <= registry::kMaxTokenResponseBytes, "oversized response accepted");
  FUZZ_CHECK(!token->access_token.empty(), "accepted a response without a token");
  FUZZ_CHECK(
      token->expires_in >= std::chrono::seconds(1) && token->expires_in <= std::chrono::hours(24),
      std::to_string(token->expires_in.count()));
  return 0;
}
