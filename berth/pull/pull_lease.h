// File: berth/pull/pull_lease.h
//
// PullLease is how a pull tells garbage collection what it is about to create or rely on, so a
// collection running meanwhile keeps it (the image service backs it with a lease in the metadata
// database). The rule that makes this safe: a pull holds a blob or snapshot BEFORE it checks for
// it, fetches it or creates it; what is held stays until the pull is over.
//
// Thread safety: implementations must allow calls from the pull's threads concurrently.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/digest/digest.h"

namespace berth::pull {

class PullLease {
 public:
  virtual ~PullLease() = default;
  // Blobs by digest (manifests, configs, layers), present or not; also protects their ingests.
  virtual Result<void> HoldBlobs(std::span<const Digest> digests) = 0;
  // Committed snapshots by name (chain IDs) the unpacker checks for or commits.
  virtual Result<void> HoldSnapshots(std::span<const std::string> names) = 0;
  // An active snapshot the unpacker is about to prepare.
  virtual Result<void> HoldActiveSnapshot(std::string_view key) = 0;
};

}  // namespace berth::pull
