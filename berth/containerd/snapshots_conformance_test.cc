// The Snapshotter conformance suite through containerd's Snapshots API: every call goes from a
// SnapshotsClient over a real gRPC channel on a unix socket to a SnapshotsService in front of a
// real overlay LocalSnapshotter (and a native one, which cannot rebase). The Cleaner side (which
// the API cannot express: it does not say what Cleanup removed) is the local snapshotter's. The
// crash tests run the server and client in the forked child too: the child _exits inside the
// server's handler, so the client never hears back.
#include <fmt/format.h>

#include <atomic>

#include "berth/containerd/snapshots_test_util.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "berth/snapshot/snapshotter_conformance.h"

namespace berth::containerd {
namespace {

namespace fs = std::filesystem;
using snapshot::Labels;

// A Snapshotter whose every call goes through the API, and the local snapshotter's Cleaner.
class SnapshotterOverGrpc final : public snapshot::Snapshotter, public snapshot::Cleaner {
 public:
  SnapshotterOverGrpc(std::unique_ptr<snapshot::LocalSnapshotter> local,
                      std::unique_ptr<testing::ServedSnapshots> served)
      : local_(std::move(local)), served_(std::move(served)) {}
  ~SnapshotterOverGrpc() override { served_.reset(); }

  Result<std::vector<snapshot::Mount>> Prepare(std::string_view key, std::string_view parent,
                                               const Labels& labels) override {
    return client().Prepare(key, parent, labels);
  }
  Result<std::vector<snapshot::Mount>> View(std::string_view key, std::string_view parent,
                                            const Labels& labels) override {
    return client().View(key, parent, labels);
  }
  Result<std::vector<snapshot::Mount>> Mounts(std::string_view key) override {
    return client().Mounts(key);
  }
  Result<void> Commit(std::string_view name, std::string_view key, const Labels& labels) override {
    return client().Commit(name, key, labels);
  }
  bool SupportsRebase() const override { return served_->client().SupportsRebase(); }
  Result<void> CommitRebased(std::string_view name, std::string_view key, std::string_view parent,
                             const Labels& labels) override {
    return client().CommitRebased(name, key, parent, labels);
  }
  Result<void> Remove(std::string_view key) override { return client().Remove(key); }
  Result<snapshot::Info> Stat(std::string_view key) override { return client().Stat(key); }
  Result<snapshot::Info> UpdateLabels(std::string_view key,
                                      const snapshot::LabelUpdate& update) override {
    return client().UpdateLabels(key, update);
  }
  Result<void> Rename(std::string_view name, std::string_view new_name,
                      const Labels& labels) override {
    return client().Rename(name, new_name, labels);
  }
  Result<snapshot::Usage> GetUsage(std::string_view key) override { return client().GetUsage(key); }
  Result<void> Walk(const std::function<Result<void>(const snapshot::Info&)>& visit) override {
    return client().Walk(visit);
  }
  Result<snapshot::ApplyTarget> GetApplyTarget(std::string_view key) override {
    return client().GetApplyTarget(key);
  }

  Result<std::vector<fs::path>> Cleanup() override { return local_->Cleanup(); }
  Result<std::vector<fs::path>> FindOrphans() override { return local_->FindOrphans(); }
  Result<std::vector<std::string>> FindMissing() override { return local_->FindMissing(); }

 private:
  SnapshotsClient& client() { return served_->client(); }

  std::unique_ptr<snapshot::LocalSnapshotter> local_;
  std::unique_ptr<testing::ServedSnapshots> served_;
};

// Opens `Local` at options.root and serves it on a socket beside the root.
template <typename Local, typename LocalOptions, Rebase kRebase>
struct OverGrpcFactory {
  static constexpr bool kRenames = false;  // the API has no rename
  static Result<std::unique_ptr<SnapshotterOverGrpc>> Open(
      const snapshot::LocalSnapshotterOptions& options) {
    static std::atomic<int> sockets{0};
    LocalOptions local_options;
    static_cast<snapshot::LocalSnapshotterOptions&>(local_options) = options;
    BERTH_ASSIGN_OR_RETURN(auto local, Local::Open(local_options));
    const fs::path socket =
        options.root.parent_path() / fmt::format("snapshots-{}.sock", sockets++);
    BERTH_ASSIGN_OR_RETURN(
        auto served, testing::ServedSnapshots::Start(*local, *local, socket, {.rebase = kRebase}));
    return std::make_unique<SnapshotterOverGrpc>(std::move(local), std::move(served));
  }
  // The crash points are the local snapshotter's, and the Overlay and Native instantiations
  // (snapshot_test) run them; here a forked child would inherit gRPC's threads' locks.
  static std::string CrashSkipReason() {
    return "the crash tests fork, and gRPC (running in this process) does not survive a fork; "
           "snapshot_test runs them on the local snapshotters";
  }
};

struct OverlayOverGrpc : OverGrpcFactory<snapshot::OverlaySnapshotter,
                                         snapshot::OverlaySnapshotterOptions, Rebase::kSupported> {
  static std::string SkipReason() { return snapshot::testing::OverlaySkipReason(); }
};
struct NativeOverGrpc : OverGrpcFactory<snapshot::NativeSnapshotter,
                                        snapshot::NativeSnapshotterOptions, Rebase::kUnsupported> {
  static std::string SkipReason() { return snapshot::testing::MountSkipReason(); }
};

}  // namespace
}  // namespace berth::containerd

namespace berth::snapshot::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(OverlayOverGrpc, SnapshotterConformance,
                               ::berth::containerd::OverlayOverGrpc);
INSTANTIATE_TYPED_TEST_SUITE_P(NativeOverGrpc, SnapshotterConformance,
                               ::berth::containerd::NativeOverGrpc);
}  // namespace berth::snapshot::testing
