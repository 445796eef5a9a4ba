#include "berth/service/image_user.h"

#include <charconv>

namespace berth::service {

ImageUser ParseImageUser(std::string_view user) {
  ImageUser result;
  std::string_view name = user.substr(0, user.find(':'));
  if (name.empty()) return result;
  int64_t uid = 0;
  auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), uid);
  if (error == std::errc() && end == name.data() + name.size() && uid >= 0) {
    result.uid = uid;
  } else {
    result.username = std::string(name);
  }
  return result;
}

}  // namespace berth::service
