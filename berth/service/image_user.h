// File: berth/service/image_user.h
//
// The user an image's processes run as, from the config's `User` field, in the two forms CRI
// reports: a numeric uid or a user name (mutually exclusive).
//
//   ""            → neither (the runtime's default, root)
//   "1000"        → uid 1000         "1000:1000" → uid 1000 (the group is not reported)
//   "nobody"      → username nobody  "nobody:nogroup" → username nobody
//
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace berth::service {

struct ImageUser {
  std::optional<int64_t> uid;
  std::string username;

  friend bool operator==(const ImageUser&, const ImageUser&) = default;
};

// Splits `user` at the first ':' and reports the part before it as a uid when it is a decimal
// number that fits in int64, else as a user name. Never fails.
ImageUser ParseImageUser(std::string_view user);

}  // namespace berth::service
