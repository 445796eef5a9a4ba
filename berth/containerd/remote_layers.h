// File: berth/containerd/remote_layers.h
//
// RemoteLayers gives containerd remote snapshots: layers berth fetched and unpacked itself, so
// that containerd's unpacker skips them (as the stargz, nydus and SOCI snapshotters do, here for
// plain OCI images and with berth's own pull pipeline). It is the LayerSource of berthd's
// SnapshotsService (snapshots_service.h).
//
// What containerd sends (its unpacker, and core/metadata/snapshot.go): for each layer it lacks,
// one at a time from the bottom, Prepare(key, parent) with the labels of labels.h. `parent` is
// containerd's backend name of the layer below ("" for the first). The CRI labels (image
// reference, manifest digest) come only from containerd's CRI plugin with
// disable_snapshot_annotations = false; `ctr images pull` sends none (and fetches every blob
// before it unpacks). When the snapshotter answers ALREADY_EXISTS, containerd lists the
// snapshots with labels."containerd.io/snapshot.ref"==<chain ID>,parent==<parent> and takes the
// committed one it finds as that layer.
//
// How Provide answers:
//   1. Staging. A Prepare that no stage of its image can answer starts one:
//      ImageService::Stage pulls <image name>@<manifest digest> with every layer at once (the
//      node's download scheduler, blobs shared with other pulls, hosts.toml, mirrors, retries,
//      resume) and unpacks the layers above `parent` into committed snapshots named
//      "remote/<stage>/<chain ID>", the first on top of `parent`'s snapshot (its snapshot.ref
//      label says which of the image's layers it holds). containerd's List does not show those
//      names, so its garbage collection cannot take them, and the stage's lease keeps them from
//      berth's.
//   2. Taking. Each Prepare waits for its stage to end, then renames the staged snapshot of its
//      chain ID to containerd's key (snapshot::kContainerdKeyPrefix + key) with the Prepare's
//      labels: from then on it is containerd's, and berth's GC leaves it alone. The staged layer
//      above it now names that key as its parent, which is the `parent` containerd sends next.
//   3. Falling back. No CRI labels, no credentials that work, a registry berth cannot reach, a
//      stage that failed at or below this layer, a parent without a snapshot.ref label: Provide
//      logs why (at warning, naming the image and layer, never a credential) and returns false,
//      and containerd fetches and unpacks that layer itself into an ordinary active snapshot.
//      A pull never fails because berth was in the path. After a stage of an image failed, no
//      new stage of it starts for a minute: its other layers fall back at once.
//
// Credentials for a stage: those of the most recent CRI PullImage of that image still in flight
// through berth's front (registry::PullCredentials), else of any image of that registry, else
// the config's and hosts.toml's. Each stage authorizes on its own (tokens are not shared).
//
// A stage ends when containerd takes its top layer (the one whose cri.image-layers lists only
// itself), or `keep_staged` after its pull ended otherwise (containerd gave up or fell back).
// Its untaken snapshots are then removed, its lease is deleted and berth's garbage collection
// runs: the blobs are garbage now that containerd's snapshots hold the layers. If berthd dies,
// start-up deletes the stage leases (ImageService::Recover) and its collection removes the rest.
//
// Thread safety: Provide may be called from many threads at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/result.h"
#include "berth/containerd/snapshots_service.h"
#include "berth/registry/pull_credentials.h"
#include "berth/service/image_service.h"
#include "berth/snapshot/snapshotter.h"

namespace berth::containerd {

// The prefix of staged snapshot names: "remote/<stage>/<chain ID>".
inline constexpr std::string_view kStagedPrefix = "remote/";

struct RemoteLayersOptions {
  // How long a stage's layers wait for containerd after its pull ended.
  std::chrono::seconds keep_staged{600};
};

class RemoteLayers final : public LayerSource {
 public:
  // `images` and `snapshotter` (the one images unpacks into) must outlive this; so must
  // `credentials` unless it is null (no front mode: only the config's credentials).
  RemoteLayers(service::ImageService& images, snapshot::Snapshotter& snapshotter,
               const registry::PullCredentials* credentials, RemoteLayersOptions options = {});
  // Cancels the stages still pulling, waits for them, and removes everything staged.
  ~RemoteLayers() override;
  RemoteLayers(const RemoteLayers&) = delete;
  RemoteLayers& operator=(const RemoteLayers&) = delete;

  bool Provide(const LayerRequest& request, const CancelToken& cancel) override;

  // How many stages exist (pulling, or waiting for containerd to take their layers).
  size_t stages() const;

 private:
  struct Stage;
  // What one Prepare asks for, read from its labels.
  struct Wanted {
    std::string image;      // <name>@<manifest digest>: what a stage pulls
    std::string reference;  // the image reference as containerd's CRI wrote it
    std::string host;       // its registry
    Digest chain_id = Digest::Sha256Of("");
    bool top = false;  // the image's top layer
  };

  // nullopt when the labels do not name an image (no CRI labels); an error when they are not
  // what containerd writes.
  static Result<std::optional<Wanted>> ReadWanted(const snapshot::Labels& labels);

  // Provide's work; an error is why containerd must fetch the layer itself.
  Result<void> ProvideLayer(const Wanted& wanted, const LayerRequest& request,
                            const CancelToken& cancel);
  // The stage whose staged layer will sit on `parent` (stored name), or a new one based on it.
  // REQUIRES: mutex_ held.
  Result<std::shared_ptr<Stage>> FindOrStartStage(const Wanted& wanted, const std::string& parent);
  std::shared_ptr<Stage> StartStage(const Wanted& wanted, const std::string& parent,
                                    const std::optional<Digest>& parent_chain);
  // Renames the staged snapshot of `wanted` to containerd's key. REQUIRES: mutex_ held.
  Result<void> Take(Stage& stage, const Wanted& wanted, const LayerRequest& request);
  registry::CriAuthConfig CredentialsFor(const Wanted& wanted) const;
  // Ends the stages that are over (or all of them), outside mutex_.
  void EndStages(bool all);
  void Discard(Stage& stage);
  void Janitor();

  service::ImageService& images_;
  snapshot::Snapshotter& snapshotter_;
  const registry::PullCredentials* const credentials_;
  const RemoteLayersOptions options_;
  const std::string stage_prefix_;  // "remote/<random>-": a stage adds its number and '/'

  mutable std::mutex mutex_;
  std::condition_variable_any changed_;         // a stage ended, or stopping_
  std::vector<std::shared_ptr<Stage>> stages_;  // guarded by mutex_
  uint64_t next_stage_ = 1;                     // guarded by mutex_
  bool stopping_ = false;                       // guarded by mutex_
  std::thread janitor_;  // last: it starts in the constructor and uses the members above
};

}  // namespace berth::containerd
