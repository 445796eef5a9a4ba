// Runs the Snapshotter conformance suite against the on-disk implementations.
#include "berth/snapshot/snapshotter_conformance.h"

#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"

namespace berth::snapshot::testing {
namespace {

struct OverlayFactory {
  static constexpr bool kRenames = true;
  static std::string SkipReason() { return OverlaySkipReason(); }
  static Result<std::unique_ptr<LocalSnapshotter>> Open(const LocalSnapshotterOptions& options) {
    OverlaySnapshotterOptions overlay_options;
    static_cast<LocalSnapshotterOptions&>(overlay_options) = options;
    BERTH_ASSIGN_OR_RETURN(auto snapshotter, OverlaySnapshotter::Open(overlay_options));
    return std::unique_ptr<LocalSnapshotter>(std::move(snapshotter));
  }
};

struct NativeFactory {
  static constexpr bool kRenames = true;
  static std::string SkipReason() { return MountSkipReason(); }
  static Result<std::unique_ptr<LocalSnapshotter>> Open(const LocalSnapshotterOptions& options) {
    NativeSnapshotterOptions native_options;
    static_cast<LocalSnapshotterOptions&>(native_options) = options;
    BERTH_ASSIGN_OR_RETURN(auto snapshotter, NativeSnapshotter::Open(native_options));
    return std::unique_ptr<LocalSnapshotter>(std::move(snapshotter));
  }
};

std::string ErofsSkipReason() {
  std::string reason = MountSkipReason();
  if (!reason.empty()) return reason;
  if (!ErofsSnapshotter::KernelSupportsErofs()) {
    return "the kernel has no erofs or overlay filesystem (modprobe erofs overlay)";
  }
  return "";
}

template <LayerMountMethod kMethod>
struct ErofsFactory {
  static constexpr bool kRenames = true;
  static constexpr bool kCommitKeepsUsage = false;  // a committed layer is an image
  static std::string SkipReason() { return ErofsSkipReason(); }
  static Result<std::unique_ptr<LocalSnapshotter>> Open(const LocalSnapshotterOptions& options) {
    ErofsSnapshotterOptions erofs_options;
    static_cast<LocalSnapshotterOptions&>(erofs_options) = options;
    erofs_options.layer_mounts = kMethod;
    BERTH_ASSIGN_OR_RETURN(auto snapshotter, ErofsSnapshotter::Open(erofs_options));
    return std::unique_ptr<LocalSnapshotter>(std::move(snapshotter));
  }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Overlay, SnapshotterConformance, OverlayFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(Native, SnapshotterConformance, NativeFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(Erofs, SnapshotterConformance,
                               ErofsFactory<LayerMountMethod::kAuto>);
INSTANTIATE_TYPED_TEST_SUITE_P(ErofsLoop, SnapshotterConformance,
                               ErofsFactory<LayerMountMethod::kLoopDevice>);

}  // namespace
}  // namespace berth::snapshot::testing
