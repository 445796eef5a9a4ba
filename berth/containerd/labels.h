// File: berth/containerd/labels.h
//
// The snapshot labels containerd sends with a Prepare of an image layer (facts of containerd's
// API: core/snapshots' LabelSnapshotRef, and pkg/snapshotters' labels, which containerd's CRI
// plugin adds when disable_snapshot_annotations = false).
#pragma once

#include <string_view>

namespace berth::containerd {

// The chain ID the layer's snapshot becomes once committed.
inline constexpr std::string_view kSnapshotRefLabel = "containerd.io/snapshot.ref";
// The image reference as the CRI pulls it ("docker.io/library/busybox:latest").
inline constexpr std::string_view kImageRefLabel = "containerd.io/snapshot/cri.image-ref";
// The digest of the image's manifest for this platform.
inline constexpr std::string_view kManifestDigestLabel =
    "containerd.io/snapshot/cri.manifest-digest";
// The layer's blob digest.
inline constexpr std::string_view kLayerDigestLabel = "containerd.io/snapshot/cri.layer-digest";
// The blob digests of this layer and every layer above it, comma-separated (cut short when the
// label would grow too long: a list that ends early only costs parallelism).
inline constexpr std::string_view kImageLayersLabel = "containerd.io/snapshot/cri.image-layers";

}  // namespace berth::containerd
