// Fuzzes image reference parsing (berth/reference): Parse and ParseNormalizedNamed on arbitrary
// text. Invariants: a parsed reference round-trips through ToString() and FamiliarString(), has
// exactly one of tag and digest after Parse(), and errors are kInvalidArgument without the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "berth/reference/reference.h"
#include "fuzz/fuzz_check.h"

namespace {

void CheckRoundTrip(const berth::Reference& reference, bool docker_ref) {
  auto reparse = [&](std::string_view text) {
    return docker_ref ? berth::Reference::Parse(text)
                      : berth::Reference::ParseNormalizedNamed(text);
  };
  std::string text = reference.ToString();
  berth::Result<berth::Reference> again = reparse(text);
  FUZZ_CHECK(again.has_value(), "ToString() does not parse: " + text);
  FUZZ_CHECK(*again == reference, "ToString() parses to a different reference: " + text);
  FUZZ_CHECK(reference.path().size() <= berth::Reference::kMaxPathLength, text);
  // Docker's familiar form cannot express a docker.io path whose first component looks like
  // a host (see reference.h), so only the other references must round-trip through it.
  std::string_view path = reference.path();
  std::string_view first = path.substr(0, path.find('/'));
  bool hostlike_first = first.find_first_of(".:") != std::string_view::npos || first == "localhost";
  if (!(reference.domain() == berth::Reference::kDefaultDomain && hostlike_first) &&
      !reference.domain().empty()) {
    std::string familiar = reference.FamiliarString();
    berth::Result<berth::Reference> from_familiar = reparse(familiar);
    FUZZ_CHECK(from_familiar.has_value(), "FamiliarString() does not parse: " + familiar);
    FUZZ_CHECK(*from_familiar == reference, "FamiliarString() differs: " + familiar);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  berth::Result<berth::Reference> parsed = berth::Reference::Parse(text);
  if (parsed) {
    FUZZ_CHECK(parsed->has_tag() != parsed->digest().has_value(),
               "Parse() must leave exactly one of tag and digest");
    CheckRoundTrip(*parsed, /*docker_ref=*/true);
  } else {
    FUZZ_CHECK(parsed.error().code() == berth::ErrorCode::kInvalidArgument,
               parsed.error().message());
  }

  berth::Result<berth::Reference> named = berth::Reference::ParseNormalizedNamed(text);
  FUZZ_CHECK(named.has_value() == parsed.has_value(),
             "Parse and ParseNormalizedNamed disagree on validity");
  if (named) {
    CheckRoundTrip(*named, /*docker_ref=*/false);
    (void)named->NameOnly().ToString();
    berth::Result<berth::Reference> retagged = named->WithTag("fuzz");
    FUZZ_CHECK(retagged.has_value() && retagged->tag() == "fuzz", "WithTag(\"fuzz\") failed");
  }
  return 0;
}
