#include "berth/pull/schema1_converter.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "berth/archive/decompressor.h"
#include "berth/image/media_types.h"

namespace berth::pull {
namespace {

// Docker's media type for an uncompressed layer (berth/image/media_types.h lists only the
// compressed ones).
constexpr std::string_view kDockerLayerUncompressed =
    "application/vnd.docker.image.rootfs.diff.tar";

// Hashes what the decompressor produces.
class HashingSink final : public archive::ChunkSink {
 public:
  Result<void> Write(std::string_view data) override {
    hasher_.Update(data);
    return Ok();
  }
  Digest digest() const { return hasher_.Finish(); }

 private:
  Hasher hasher_;
};

// Reads up to `buffer.size()` bytes at the current offset of `fd`, retrying on EINTR.
Result<size_t> ReadSome(int fd, std::string& buffer, const Digest& digest) {
  while (true) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return Fail(ErrnoError(errno, fmt::format("read blob {}", digest)));
  }
}

// The layer media type of a stored schema1 blob: gzip when it starts with the gzip magic,
// otherwise an uncompressed tar (containerd's converter sniffs the same way).
Result<std::string_view> SniffLayerMediaType(const content::Store& store, const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, store.OpenBlob(digest));
  std::string head(2, '\0');
  size_t have = 0;
  while (have < head.size()) {
    std::string rest(head.size() - have, '\0');
    BERTH_ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), rest, digest));
    if (n == 0) break;
    head.replace(have, n, rest.substr(0, n));
    have += n;
  }
  if (have == 2 && head[0] == '\x1f' && head[1] == '\x8b') return media_types::kDockerLayerGzip;
  return kDockerLayerUncompressed;
}

// What the conversion learns about one distinct blob.
struct BlobFacts {
  std::string media_type;
  int64_t size = 0;
  Digest diff_id = Digest::Sha256Of("");
};

}  // namespace

Result<Digest> DiffIdOfStoredBlob(const content::Store& store, const Digest& digest,
                                  std::string_view media_type, const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(archive::Compression compression,
                         archive::CompressionForMediaType(media_type));
  HashingSink sink;
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<archive::Decompressor> decompressor,
                         archive::MakeDecompressor(compression, sink));
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, store.OpenBlob(digest));
  std::string buffer(1 << 20, '\0');
  while (true) {
    BERTH_RETURN_IF_ERROR(cancel.Check());
    BERTH_ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buffer, digest));
    if (n == 0) break;
    BERTH_RETURN_IF_ERROR(decompressor->Write(std::string_view(buffer.data(), n)));
  }
  BERTH_RETURN_IF_ERROR(decompressor->Finish());
  return sink.digest();
}

Result<ConvertedSchema1> ConvertSchema1(content::Store& store, std::string_view document,
                                        const FetchBlobFn& fetch, int max_concurrent,
                                        const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(image::Schema1Manifest manifest, image::ParseSchema1Manifest(document));
  const std::vector<const image::Schema1Layer*> layers = image::NonEmptyLayers(manifest);

  // Each distinct blob once (an image may list one blob for several steps), oldest first.
  std::vector<Digest> blobs;
  std::map<Digest, size_t> blob_index;
  for (const image::Schema1Layer* layer : layers) {
    if (blob_index.emplace(layer->blob_sum, blobs.size()).second) blobs.push_back(layer->blob_sum);
  }

  // Fetch and hash them, a bounded number at a time; the first failure stops the others.
  std::vector<BlobFacts> facts(blobs.size());
  CancelToken convert_cancel(&cancel);
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  auto convert_one = [&](size_t index) -> Result<void> {
    const Digest& digest = blobs[index];
    const std::string what = fmt::format("schema1 layer {}", digest);
    image::Descriptor descriptor{
        .media_type = std::string(media_types::kDockerLayerGzip), .digest = digest, .size = -1};
    BERTH_RETURN_IF_ERROR(WithContext(fetch(descriptor, convert_cancel), what));
    BlobFacts& blob = facts[index];
    BERTH_ASSIGN_OR_RETURN(content::BlobInfo info, WithContext(store.Info(digest), what));
    blob.size = info.size;
    BERTH_ASSIGN_OR_RETURN(std::string_view media_type,
                           WithContext(SniffLayerMediaType(store, digest), what));
    blob.media_type = std::string(media_type);
    BERTH_ASSIGN_OR_RETURN(
        blob.diff_id,
        WithContext(DiffIdOfStoredBlob(store, digest, media_type, convert_cancel), what));
    return Ok();
  };
  auto worker = [&] {
    while (true) {
      size_t index = next.fetch_add(1);
      if (index >= blobs.size() || convert_cancel.cancelled()) return;
      if (Result<void> converted = convert_one(index); !converted) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::move(converted).error();
        convert_cancel.Cancel();
        return;
      }
    }
  };
  const size_t workers =
      std::min<size_t>(blobs.size(), static_cast<size_t>(std::max(1, max_concurrent)));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(worker);
  if (workers > 0) worker();
  for (std::thread& thread : threads) thread.join();
  if (first_error) return Fail(std::move(*first_error));
  BERTH_RETURN_IF_ERROR(cancel.Check());

  // The config: its digest is the image ID.
  std::vector<Digest> diff_ids;
  std::vector<image::Descriptor> layer_descriptors;
  for (const image::Schema1Layer* layer : layers) {
    const BlobFacts& blob = facts[blob_index.at(layer->blob_sum)];
    diff_ids.push_back(blob.diff_id);
    layer_descriptors.push_back(
        {.media_type = blob.media_type, .digest = layer->blob_sum, .size = blob.size});
  }
  BERTH_ASSIGN_OR_RETURN(std::string config_bytes, image::BuildSchema1Config(manifest, diff_ids));
  ConvertedSchema1 converted;
  converted.config = {.media_type = std::string(media_types::kDockerConfig),
                      .digest = Digest::Sha256Of(config_bytes),
                      .size = static_cast<int64_t>(config_bytes.size())};
  BERTH_RETURN_IF_ERROR(WithContext(store.WriteBlob(converted.config.digest, config_bytes),
                                    "store the converted config"));

  converted.manifest_bytes = image::BuildDockerManifest(converted.config, layer_descriptors);
  converted.manifest = {.media_type = std::string(media_types::kDockerManifest),
                        .digest = Digest::Sha256Of(converted.manifest_bytes),
                        .size = static_cast<int64_t>(converted.manifest_bytes.size())};
  BERTH_RETURN_IF_ERROR(
      WithContext(store.WriteBlob(converted.manifest.digest, converted.manifest_bytes),
                  "store the converted manifest"));
  return converted;
}

}  // namespace berth::pull
