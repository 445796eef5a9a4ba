// File: berth/image/json_limits.h (internal to berth/image)
//
// A linear pre-scan that refuses JSON nested deeper than a limit before any decoder builds a
// tree from it, so hostile documents cannot exhaust the stack or memory; and the one parse entry
// point of berth/image, which runs that scan and says why a document is not JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "berth/base/result.h"

namespace berth::image::internal {

// kInvalidArgument if `document` nests arrays/objects deeper than `max_depth`. Strings (and the
// brackets inside them) are skipped; the document is not otherwise validated.
Result<void> CheckJsonDepth(std::string_view document, int max_depth);

// Parses `document` after CheckJsonDepth. kInvalidArgument names the cause: "nested deeper
// than N levels", or "not valid JSON (<the decoder's reason, with line and column, or the
// number beyond a double's range>)", at most a few hundred bytes of it.
Result<nlohmann::json> ParseJson(std::string_view document, int max_depth);

}  // namespace berth::image::internal
