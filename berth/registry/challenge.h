// File: berth/registry/challenge.h
//
// Parsing of WWW-Authenticate headers (RFC 9110 §11.6.1) as registries send them:
//   Bearer
//   realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull" Basic
//   realm="Registry Realm"
// One header may hold several challenges; a response may carry several headers.
//
// Thread safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"

namespace berth::registry {

struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lowercased: realm, service, scope, error

  // The scheme and realm (and service, for Bearer), for error messages:
  // `Basic realm="Registry Realm"`, `Bearer realm="https://auth.example/token"
  // service="registry.example"`. A realm names where to log in, not a credential.
  std::string Describe() const;

  std::string Param(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
};

// Headers longer than this are refused rather than parsed.
inline constexpr size_t kMaxChallengeHeaderBytes = 16 << 10;

// Parses one WWW-Authenticate header value. kInvalidArgument for a malformed or oversized header.
Result<std::vector<Challenge>> ParseChallenges(std::string_view header);

}  // namespace berth::registry
