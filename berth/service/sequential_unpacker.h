// File: berth/service/sequential_unpacker.h
//
// SequentialUnpacker is the simple unpacker: it lets the pull download every layer, then applies
// the layers one after another from the content store into the snapshotter, each committed
// under its chain ID (a layer whose chain ID is already committed is skipped). It is what the
// image service uses until berth/unpack's streaming Unpacker (which applies layers while they
// download) is wired in; it stays useful as a reference and for tests.
//
//   Prepare("extract-<n> <chainID>", parent chainID) → apply the blob → check its diffID →
//   Commit(chainID). A failed layer's active snapshot is removed.
//
// Thread safety: one instance serves one pull (Puller calls it from its threads one call at a
// time for Begin/End; PlanLayer may run concurrently and touches no state).
#pragma once

#include <memory>
#include <optional>

#include "berth/base/cancel.h"
#include "berth/content/store.h"
#include "berth/image/manifest.h"
#include "berth/pull/puller.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::service {

class SequentialUnpacker final : public pull::LayerHandler {
 public:
  // `store` and `snapshotter` must outlive the unpacker.
  SequentialUnpacker(content::Store& store, snapshot::Snapshotter& snapshotter)
      : store_(store), snapshotter_(snapshotter) {}

  Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig& config) override;
  Result<pull::LayerPlan> PlanLayer(size_t index) override;
  // On success, applies every layer not yet unpacked. kDataLoss when a layer's diffID does not
  // match the config; the archive's and the snapshotter's errors otherwise.
  Result<void> End(bool success) override;

 private:
  Result<void> ApplyLayer(size_t index, const std::string& parent, const std::string& chain_id);

  content::Store& store_;
  snapshot::Snapshotter& snapshotter_;
  std::optional<image::Manifest> manifest_;
  std::optional<image::ImageConfig> config_;
};

}  // namespace berth::service
