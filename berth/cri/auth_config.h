// File: berth/cri/auth_config.h
//
// The CRI AuthConfig message (runtime.v1 or v1alpha2; same fields) as registry::CriAuthConfig,
// its secrets wrapped in Secret at once. Used by the standalone handlers (the pull's
// credentials) and by front mode (the credentials held while the upstream pulls).
//
// Thread safety: pure functions.
#pragma once

#include "berth/base/redact.h"
#include "berth/registry/auth.h"

namespace berth::cri {

template <typename Auth>
registry::CriAuthConfig ToCriAuthConfig(const Auth& auth) {
  return {.username = auth.username(),
          .password = Secret(auth.password()),
          .auth = Secret(auth.auth()),
          .server_address = auth.server_address(),
          .identity_token = Secret(auth.identity_token()),
          .registry_token = Secret(auth.registry_token())};
}

// Whether `auth` carries any credential (a user name, password, auth, identity or registry
// token); a pull without one is anonymous.
inline bool HasCredentials(const registry::CriAuthConfig& auth) {
  return !auth.username.empty() || !auth.password.empty() || !auth.auth.empty() ||
         !auth.identity_token.empty() || !auth.registry_token.empty();
}

}  // namespace berth::cri
