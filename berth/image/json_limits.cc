#include "berth/image/json_limits.h"

#include <fmt/format.h>

namespace berth::image::internal {

Result<void> CheckJsonDepth(std::string_view document, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < document.size(); ++i) {
    char c = document[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        return Fail(ErrorCode::kInvalidArgument,
                    fmt::format("JSON nested deeper than {} levels", max_depth));
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return Ok();
}

}  // namespace berth::image::internal
