// File: berth/image/json_limits.h (internal to berth/image)
//
// A linear pre-scan that refuses JSON nested deeper than a limit before any decoder builds a
// tree from it, so hostile documents cannot exhaust the stack or memory.
#pragma once

#include <string_view>

#include "berth/base/result.h"

namespace berth::image::internal {

// kInvalidArgument if `document` nests arrays/objects deeper than `max_depth`. Strings (and the
// brackets inside them) are skipped; the document is not otherwise validated.
Result<void> CheckJsonDepth(std::string_view document, int max_depth);

}  // namespace berth::image::internal
