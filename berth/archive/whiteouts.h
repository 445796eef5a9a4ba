// File: berth/archive/whiteouts.h
//
// The OCI image spec's whiteout names (image-spec layer.md), for every reader of layer entries:
// TarApplier, and the EROFS writer and directory walker.
#pragma once

#include <string_view>

namespace berth::archive {

// ".wh.<name>" deletes <name> of the lower layers.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
// Names starting ".wh..wh." are the spec's own markers, not whiteouts of a name.
inline constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
// In a directory, hides every entry of the lower layers' same directory (opaque).
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

}  // namespace berth::archive
