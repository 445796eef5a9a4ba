// Fuzzes the decoding of CRI AuthConfig credentials: the input is a serialized runtime.v1
// AuthConfig protobuf message as it arrives in a PullImageRequest; its fields go to
// registry::CredentialsForHost (the base64 `auth` field decoded to user:password), as
// berth/cri does for every pull. Invariants: no secret (password, auth, tokens) ever appears in
// an error message, and credentials decoded from `auth` re-encode to it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "berth/base/base64.h"
#include "berth/registry/auth.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "proto/runtime/v1/api.pb.h"

namespace {

// `text` with every run of digits (and '#') replaced by one '#': messages carry lengths and
// positions, and a length of 35 must compare equal to the 1 of the wording sample below.
std::string WithoutDigits(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    bool digit = (c >= '0' && c <= '9') || c == '#';
    if (!digit) {
      out += c;
    } else if (out.empty() || out.back() != '#') {
      out += '#';
    }
  }
  return out;
}

// The error messages for malformed `auth` values, digits masked: the fixed wording any message
// may contain. A secret that is itself a piece of that wording is found in it by construction.
const std::string& FixedWording() {
  static const std::string* wording = [] {
    std::string text;
    for (const char* auth : {"!", "!!!!", "eA=="}) {
      berth::registry::CriAuthConfig config{.auth = berth::Secret(auth)};
      berth::Result<berth::registry::Credentials> refused =
          berth::registry::CredentialsForHost(config, "registry.example");
      if (!refused) text += WithoutDigits(refused.error().message()) + "\n";
    }
    return new std::string(text);
  }();
  return *wording;
}

void CheckNoSecret(std::string_view message, const std::string& secret) {
  // Very short secrets appear in any text by chance; three bytes and more must not.
  std::string masked = WithoutDigits(secret);
  if (masked.size() < 3 || FixedWording().find(masked) != std::string::npos) return;
  FUZZ_CHECK(WithoutDigits(message).find(masked) == std::string::npos,
             "a secret leaked into an error");
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it refuses; a fuzzer sends them by the
// thousand, and the log would bury a finding.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  runtime::v1::AuthConfig message;
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  berth::registry::CriAuthConfig auth{.username = message.username(),
                                      .password = berth::Secret(message.password()),
                                      .auth = berth::Secret(message.auth()),
                                      .server_address = message.server_address(),
                                      .identity_token = berth::Secret(message.identity_token()),
                                      .registry_token = berth::Secret(message.registry_token())};

  for (std::string_view host :
       {std::string_view("registry.example:5000"), std::string_view("docker.io"),
        std::string_view(message.server_address())}) {
    berth::Result<berth::registry::Credentials> credentials =
        berth::registry::CredentialsForHost(auth, host);
    if (!credentials) {
      const std::string& text = credentials.error().message();
      FUZZ_CHECK(credentials.error().code() == berth::ErrorCode::kInvalidArgument, text);
      for (const std::string* secret : {&message.password(), &message.auth(),
                                        &message.identity_token(), &message.registry_token()}) {
        CheckNoSecret(text, *secret);
      }
      continue;
    }
    bool from_auth = message.username().empty() && message.identity_token().empty() &&
                     !message.auth().empty() && !credentials->anonymous();
    if (from_auth) {
      berth::Result<std::string> decoded = berth::Base64Decode(message.auth());
      FUZZ_CHECK(decoded.has_value(), "accepted an auth that is not base64");
      std::string prefix = credentials->username + ":" + credentials->password.reveal();
      FUZZ_CHECK(decoded->starts_with(prefix), "decoded credentials differ from auth");
      FUZZ_CHECK(decoded->find_first_not_of('\0', prefix.size()) == std::string::npos,
                 "only NULs may follow the password");
    }
  }
  return 0;
}
