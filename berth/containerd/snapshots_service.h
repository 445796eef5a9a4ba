// File: berth/containerd/snapshots_service.h
//
// SnapshotsService answers containerd's Snapshots API (containerd.services.snapshots.v1,
// proto/containerd/services/snapshots/v1/snapshots.proto) over berth's snapshot::Snapshotter and
// snapshot::Cleaner, so that containerd can use berthd as a proxy snapshotter
// (`[proxy_plugins.berth] type = "snapshot"`, address = config snapshotter_address). It only
// translates: each call becomes one Snapshotter call, errors go through cri::ToGrpcStatus (the
// one mapping), and one line per request is logged at debug ("containerd.snapshots" with the
// method, key, milliseconds and code).
//
// Keys, parents and labels are containerd's, stored and returned exactly (containerd's metadata
// layer namespaces them, e.g. "default/12/sha256:…"). The request's `snapshotter` field is not
// checked: the socket serves one snapshotter.
//
// Ownership: every snapshot made through this service is containerd's. Its key is stored as
// snapshot::kContainerdKeyPrefix + key ("containerd/default/12/sha256:…"), and so is its
// parent's; berth's GC never removes a snapshot under that prefix (berth/gc/collector.h), only
// containerd's Remove does (and Cleanup its leftover directories). containerd never sees the
// prefix: names and parents come back without it, List shows only snapshots under it (containerd
// collects every backend snapshot it does not know, so berth's own images must stay invisible),
// and a key without it (berth's own chain IDs) is NOT_FOUND here.
//
// Remote snapshots: with a LayerSource, a Prepare that carries the label
// "containerd.io/snapshot.ref" (containerd's unpacker asking for a layer) first asks the source
// for that layer, which may make it containerd's committed snapshot; Prepare then answers
// ALREADY_EXISTS, as containerd's metadata layer expects of a remote snapshotter, and containerd
// finds the snapshot by List with that label and the parent. Otherwise Prepare goes on as usual.
//
// Mounts are the snapshotter's own (overlay or bind of the snapshot directories, see
// overlay_snapshotter.h), which containerd mounts itself: an active snapshot with parents is one
// "overlay" mount with upperdir= and lowerdir= options, the form containerd's diff applier
// writes into directly (whiteouts converted), without mounting.
//
// Update: the update mask's paths "labels" (replace them all) and "labels.<key>" (set the key to
// the request's value, or delete it when the request has none) are accepted; an empty mask
// replaces the labels; any other path is INVALID_ARGUMENT. List honours containerd's filters
// (filter.h); an unsupported one is INVALID_ARGUMENT naming it. Commit's `parent` (containerd
// 2.x's rebase capability) commits with Snapshotter::CommitRebased.
//
// Thread safety: handlers run on gRPC's threads concurrently; the Snapshotter and Cleaner must be
// safe for that (berth's are). Both must outlive the service.
#pragma once

#include <grpcpp/grpcpp.h>

#include "berth/base/cancel.h"
#include "berth/snapshot/cleaner.h"
#include "berth/snapshot/snapshotter.h"
#include "proto/containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::containerd {

namespace api = ::containerd::services::snapshots::v1;

// One Prepare that names the layer it is for (the label containerd.io/snapshot.ref), as
// containerd sent it: its names are containerd's, without kContainerdKeyPrefix.
struct LayerRequest {
  std::string_view key;
  std::string_view parent;  // "" for none
  const snapshot::Labels& labels;
};

// Remote snapshots: what Prepare asks first when a LayerSource is given (remote_layers.h is
// berth's). Owned by this service, its one user.
class LayerSource {
 public:
  virtual ~LayerSource() = default;
  // True when the layer `request` names is now containerd's committed snapshot
  // kContainerdKeyPrefix + request.key, on request.parent, with request.labels: Prepare then
  // answers ALREADY_EXISTS and containerd fetches nothing for that layer. False when it is not
  // (Prepare makes the ordinary active snapshot and containerd unpacks the layer itself). Never
  // fails: whatever went wrong is logged, and containerd's own way still works. Blocks while the
  // layer is fetched; returns false soon after `cancel` fires.
  virtual bool Provide(const LayerRequest& request, const CancelToken& cancel) = 0;
};

class SnapshotsService final : public api::Snapshots::Service {
 public:
  // `snapshotter` and `cleaner` (usually the same LocalSnapshotter) must outlive this, and so
  // must `layers` unless it is null (no remote snapshots).
  SnapshotsService(snapshot::Snapshotter& snapshotter, snapshot::Cleaner& cleaner,
                   LayerSource* layers = nullptr)
      : snapshotter_(snapshotter), cleaner_(cleaner), layers_(layers) {}

  grpc::Status Prepare(grpc::ServerContext* context, const api::PrepareSnapshotRequest* request,
                       api::PrepareSnapshotResponse* response) override;
  grpc::Status View(grpc::ServerContext* context, const api::ViewSnapshotRequest* request,
                    api::ViewSnapshotResponse* response) override;
  grpc::Status Mounts(grpc::ServerContext* context, const api::MountsRequest* request,
                      api::MountsResponse* response) override;
  grpc::Status Commit(grpc::ServerContext* context, const api::CommitSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Remove(grpc::ServerContext* context, const api::RemoveSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Stat(grpc::ServerContext* context, const api::StatSnapshotRequest* request,
                    api::StatSnapshotResponse* response) override;
  grpc::Status Update(grpc::ServerContext* context, const api::UpdateSnapshotRequest* request,
                      api::UpdateSnapshotResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const api::ListSnapshotsRequest* request,
                    grpc::ServerWriter<api::ListSnapshotsResponse>* writer) override;
  grpc::Status Usage(grpc::ServerContext* context, const api::UsageRequest* request,
                     api::UsageResponse* response) override;
  grpc::Status Cleanup(grpc::ServerContext* context, const api::CleanupRequest* request,
                       google::protobuf::Empty* response) override;

 private:
  snapshot::Snapshotter& snapshotter_;
  snapshot::Cleaner& cleaner_;
  LayerSource* const layers_;
};

}  // namespace berth::containerd
