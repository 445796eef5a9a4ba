#include "berth/image/json_limits.h"

#include <fmt/format.h>

#include "berth/base/abbreviate.h"

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

Result<nlohmann::json> ParseJson(std::string_view document, int max_depth) {
  BERTH_RETURN_IF_ERROR(CheckJsonDepth(document, max_depth));
  try {
    return nlohmann::json::parse(document.begin(), document.end());
  } catch (const nlohmann::json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."; the
    // bracketed id means nothing to a reader.
    std::string_view reason = e.what();
    if (size_t end = reason.find("] "); reason.starts_with("[json.") && end != reason.npos) {
      reason.remove_prefix(end + 2);
    }
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("not valid JSON ({})", AbbreviateMiddle(reason, 256)));
  }
}

}  // namespace berth::image::internal
