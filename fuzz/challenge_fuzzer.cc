// Fuzzes WWW-Authenticate parsing (berth/registry/challenge). Invariants: oversized headers are
// refused, schemes and parameter names come out lowercased and non-empty, errors are
// kInvalidArgument.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "berth/registry/challenge.h"
#include "fuzz/fuzz_check.h"

namespace {

bool IsLowercase(std::string_view text) {
  for (char c : text) {
    if (std::isupper(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace registry = berth::registry;
  std::string_view header(reinterpret_cast<const char*>(data), size);
  berth::Result<std::vector<registry::Challenge>> challenges = registry::ParseChallenges(header);
  if (!challenges) {
    FUZZ_CHECK(challenges.error().code() == berth::ErrorCode::kInvalidArgument,
               challenges.error().message());
    return 0;
  }
  FUZZ_CHECK(header.size() <= registry::kMaxChallengeHeaderBytes, "oversized header accepted");
  for (const registry::Challenge& challenge : *challenges) {
    FUZZ_CHECK(!challenge.scheme.empty(), "empty scheme");
    FUZZ_CHECK(IsLowercase(challenge.scheme), challenge.scheme);
    for (const auto& [key, value] : challenge.params) {
      FUZZ_CHECK(!key.empty(), "empty parameter name");
      FUZZ_CHECK(IsLowercase(key), key);
      FUZZ_CHECK(challenge.Param(key) == value, key);
    }
  }
  return 0;
}
