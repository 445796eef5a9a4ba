// File: berth/reference/reference_json.h
//
// The JSON view of a Reference that the CLI prints (`berth ref normalize --json`) and tests
// compare against. Kept apart from reference.h so that only users who want JSON see it.
//
// Thread safety: a pure function of its argument.
#pragma once

#include <string>

#include "berth/reference/reference.h"

namespace berth {

// Returns a compact JSON object with exactly these keys:
//   "domain"   reference.domain()
//   "path"     reference.path()
//   "tag"      the tag, or null if the reference has none
//   "digest"   the digest as "algorithm:hex", or null if the reference has none
//   "familiar" reference.FamiliarString()
// e.g. {"digest":null,"domain":"docker.io","familiar":"busybox:latest",
//       "path":"library/busybox","tag":"latest"} (keys in sorted order).
std::string ReferenceToJson(const Reference& reference);

}  // namespace berth
