#include "tools/imagegen/layer.h"

#include <system_error>

#include "berth/image/media_types.h"

namespace berth::imagegen {

std::string_view LayerMediaType(ManifestFormat format, Compression compression) {
  if (format == ManifestFormat::kDocker) {
    switch (compression) {
      case Compression::kNone:
        return kDockerLayerUncompressed;
      case Compression::kGzip:
        return media_types::kDockerLayerGzip;
      case Compression::kZstd:
        return media_types::kDockerLayerZstd;
    }
  }
  switch (compression) {
    case Compression::kNone:
      return media_types::kOciLayer;
    case Compression::kGzip:
      return media_types::kOciLayerGzip;
    case Compression::kZstd:
      return media_types::kOciLayerZstd;
  }
  return media_types::kOciLayer;
}

Result<LayerDigests> WriteLayer(const LayerSource& source, const CompressionOptions& options,
                                ByteSink& out) {
  HashingSink blob(out);
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<ByteSink> compressor, MakeCompressor(options, blob));
  HashingSink diff(*compressor);
  TarWriter tar(diff);
  BERTH_RETURN_IF_ERROR(source.WriteTo(tar));
  BERTH_RETURN_IF_ERROR(tar.Finish());
  return LayerDigests{.diff_id = diff.digest(),
                      .uncompressed_size = diff.size(),
                      .blob_digest = blob.digest(),
                      .blob_size = blob.size()};
}

namespace {

Layer MakeLayer(const LayerDigests& digests, Compression compression) {
  Layer layer;
  layer.blob.media_type = LayerMediaType(ManifestFormat::kOci, compression);
  layer.blob.digest = digests.blob_digest;
  layer.blob.size = static_cast<int64_t>(digests.blob_size);
  layer.diff_id = digests.diff_id;
  layer.uncompressed_size = digests.uncompressed_size;
  layer.compression = compression;
  return layer;
}

}  // namespace

Result<Layer> BuildLayer(const LayerSource& source, const CompressionOptions& options) {
  std::string bytes;
  StringSink sink(&bytes);
  BERTH_ASSIGN_OR_RETURN(LayerDigests digests, WriteLayer(source, options, sink));
  Layer layer = MakeLayer(digests, options.compression);
  layer.bytes = std::move(bytes);
  return layer;
}

Result<Layer> BuildLayerFile(const LayerSource& source, const std::filesystem::path& blob_path,
                             const CompressionOptions& options) {
  BERTH_ASSIGN_OR_RETURN(FileSink sink, FileSink::Create(blob_path));
  Result<LayerDigests> digests = WriteLayer(source, options, sink);
  if (!digests) {
    std::error_code ignored;
    std::filesystem::remove(blob_path, ignored);
    return Fail(std::move(digests).error().WithContext("build layer " + blob_path.string()));
  }
  Layer layer = MakeLayer(*digests, options.compression);
  layer.file = blob_path;
  return layer;
}

}  // namespace berth::imagegen
