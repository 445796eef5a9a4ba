// File: tools/imagegen/layer.h
//
// Layers as blobs: a LayerSource streamed through TarWriter → (diffID hash) → compressor →
// (blob hash) → destination, in one pass. The result carries everything a manifest and a
// registry push need: the blob descriptor, the diffID, and the blob itself (in memory for small
// layers, in a file for large ones).
//
// Also Descriptor and Platform, kept minimal and local to the generator so that it does not
// depend on the production image model.
//
// Thread safety: value types and free functions; BuildLayer* block on the source's I/O.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "tools/imagegen/byte_sink.h"
#include "tools/imagegen/compress.h"
#include "tools/imagegen/file_tree.h"

namespace berth::imagegen {

struct Platform {
  std::string architecture;
  std::string os;
  std::string variant;
  friend bool operator==(const Platform&, const Platform&) = default;
};

struct Descriptor {
  std::string media_type;
  Digest digest = Digest::Sha256Of("");
  int64_t size = 0;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;
  friend bool operator==(const Descriptor&, const Descriptor&) = default;
};

// Which family of media types a manifest and its blobs use.
enum class ManifestFormat {
  kOci,     // application/vnd.oci.image.*
  kDocker,  // Docker image manifest v2 schema 2 and manifest lists
};

// Docker's media type for an uncompressed layer, which berth/image/media_types.h lacks.
inline constexpr std::string_view kDockerLayerUncompressed =
    "application/vnd.docker.image.rootfs.diff.tar";

// The layer media type for `compression` in `format`.
std::string_view LayerMediaType(ManifestFormat format, Compression compression);

struct Layer {
  // media_type follows the image's format (OCI until AssembleImage() says otherwise).
  Descriptor blob;
  // sha256 of the uncompressed tar.
  Digest diff_id = Digest::Sha256Of("");
  uint64_t uncompressed_size = 0;
  Compression compression = Compression::kGzip;
  // The blob bytes when built in memory; empty when `file` is set.
  std::string bytes;
  // The blob's file when built to disk.
  std::filesystem::path file;

  bool on_disk() const { return !file.empty(); }
};

// The digests one streaming pass produces.
struct LayerDigests {
  Digest diff_id = Digest::Sha256Of("");
  uint64_t uncompressed_size = 0;
  Digest blob_digest = Digest::Sha256Of("");
  uint64_t blob_size = 0;
};

// Streams `source` as a tar, compressed per `options`, into `out` (which is finished on
// success). Errors from the source, the compressor or `out` are returned as they are.
Result<LayerDigests> WriteLayer(const LayerSource& source, const CompressionOptions& options,
                                ByteSink& out);

// Builds a layer held in memory. For small trees (tests, demos).
Result<Layer> BuildLayer(const LayerSource& source, const CompressionOptions& options = {});

// Builds a layer whose blob is written to `blob_path` (created or truncated). Memory use does
// not depend on the layer's size. On failure the partial file is removed.
Result<Layer> BuildLayerFile(const LayerSource& source, const std::filesystem::path& blob_path,
                             const CompressionOptions& options = {});

}  // namespace berth::imagegen
