// File: berth/containerd/snapshots_client.h
//
// SnapshotsClient is a snapshot::Snapshotter over containerd's Snapshots API: each call is one
// RPC to a proxy snapshotter (berthd's SnapshotsService, or any other) on a unix socket. It is
// what the tests run the snapshotter conformance suite through, and what berth can use to drive
// a snapshotter containerd also talks to.
//
//   Prepare/View/Mounts/Commit/Remove/Stat/Walk(List)/GetUsage(Usage) map one to one;
//   UpdateLabels → Update (kReplace: mask "labels"; kMerge: "labels.<key>" per set or removed
//     key);
//   CommitRebased → Commit with `parent` (containerd 2.x's rebase; only when the options say
//     the server supports it, see SupportsRebase);
//   Rename has no call in the API: kUnimplemented;
//   GetApplyTarget is worked out from the mounts, so it REQUIRES a server on this host whose
//     mounts name its directories: one overlay mount gives upperdir= (overlay whiteouts, opaque
//     xattr "trusted.overlay.opaque", or "user.overlay.opaque" with userxattr) and lowerdir=;
//     one read-write bind mount gives its source (kDelete whiteouts: it holds the whole tree).
//     Anything else is kUnimplemented.
//   Cleanup() calls the server's Cleanup; it is not a snapshot::Cleaner (the API does not say
//     what was removed).
//
// Failed calls come back as Errors through cri::FromGrpcStatus (the server's code and message).
// Walk reads the whole listing before its first visit, so a visit may call the client.
//
// Thread safety: one client may be used from many threads (gRPC stubs are thread-safe).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/snapshot/snapshotter.h"
#include "proto/containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace berth::containerd {

// Whether the server can commit a snapshot prepared without a parent on top of one (containerd's
// "rebase" capability; berth's overlay snapshotter can, its native one cannot). The API does not
// tell, so the caller does.
enum class Rebase { kUnsupported, kSupported };

struct SnapshotsClientOptions {
  // The `snapshotter` field of every request (berthd ignores it; containerd's own service routes
  // by it).
  std::string snapshotter = "berth";
  Rebase rebase = Rebase::kUnsupported;
  // Bounds every call.
  std::chrono::seconds timeout = std::chrono::seconds(120);
};

class SnapshotsClient final : public snapshot::Snapshotter {
 public:
  // A channel to `address` ("unix:///ABSOLUTE/PATH"). Connects lazily: a dead socket shows up as
  // kUnavailable on the first call. kInvalidArgument for another form of address.
  static Result<std::unique_ptr<SnapshotsClient>> Connect(std::string_view address,
                                                          SnapshotsClientOptions options = {});

  Result<std::vector<snapshot::Mount>> Prepare(std::string_view key, std::string_view parent,
                                               const snapshot::Labels& labels) override;
  Result<std::vector<snapshot::Mount>> View(std::string_view key, std::string_view parent,
                                            const snapshot::Labels& labels) override;
  Result<std::vector<snapshot::Mount>> Mounts(std::string_view key) override;
  Result<void> Commit(std::string_view name, std::string_view key,
                      const snapshot::Labels& labels) override;
  bool SupportsRebase() const override { return options_.rebase == Rebase::kSupported; }
  Result<void> CommitRebased(std::string_view name, std::string_view key, std::string_view parent,
                             const snapshot::Labels& labels) override;
  Result<void> Remove(std::string_view key) override;
  Result<snapshot::Info> Stat(std::string_view key) override;
  Result<snapshot::Info> UpdateLabels(std::string_view key,
                                      const snapshot::LabelUpdate& update) override;
  Result<void> Rename(std::string_view name, std::string_view new_name,
                      const snapshot::Labels& labels) override;
  Result<snapshot::Usage> GetUsage(std::string_view key) override;
  Result<void> Walk(const std::function<Result<void>(const snapshot::Info&)>& visit) override;
  Result<snapshot::ApplyTarget> GetApplyTarget(std::string_view key) override;

  // The server's Cleanup: it deletes what no snapshot owns.
  Result<void> Cleanup();

  // List with containerd filters (filter.h), e.g. {"kind==committed"}.
  Result<std::vector<snapshot::Info>> List(const std::vector<std::string>& filters);

  ::containerd::services::snapshots::v1::Snapshots::Stub& stub() { return *stub_; }

 private:
  SnapshotsClient(std::string address, SnapshotsClientOptions options,
                  std::unique_ptr<::containerd::services::snapshots::v1::Snapshots::Stub> stub)
      : address_(std::move(address)), options_(std::move(options)), stub_(std::move(stub)) {}
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  Result<void> Check(const grpc::Status& status, std::string_view method) const;

  std::string address_;
  SnapshotsClientOptions options_;
  std::unique_ptr<::containerd::services::snapshots::v1::Snapshots::Stub> stub_;
};

}  // namespace berth::containerd
