#include "tools/imagegen/push.h"

#include <fmt/format.h>

namespace berth::imagegen {
namespace {

Result<void> PushOneBlob(RegistryClient& client, std::string_view repository,
                         const Descriptor& blob, const Layer* layer, std::string_view bytes,
                         PushedImage& pushed) {
  BERTH_ASSIGN_OR_RETURN(bool exists, client.BlobExists(repository, blob.digest));
  if (exists) {
    ++pushed.blobs_skipped;
    return Ok();
  }
  if (layer != nullptr && layer->on_disk()) {
    BERTH_RETURN_IF_ERROR(client.PushBlobFile(repository, blob.digest, layer->file));
  } else {
    BERTH_RETURN_IF_ERROR(client.PushBlob(repository, blob.digest, bytes));
  }
  ++pushed.blobs_uploaded;
  return Ok();
}

Result<void> PushBlobs(RegistryClient& client, std::string_view repository, const Image& image,
                       PushedImage& pushed) {
  for (const Layer& layer : image.layers) {
    BERTH_RETURN_IF_ERROR(
        WithContext(PushOneBlob(client, repository, layer.blob, &layer, layer.bytes, pushed),
                    fmt::format("push layer {}", layer.blob.digest)));
  }
  return WithContext(
      PushOneBlob(client, repository, image.config, nullptr, image.config_json, pushed),
      fmt::format("push config {}", image.config.digest));
}

Result<void> VerifyManifestBytes(const FetchedManifest& fetched, const Descriptor& expected,
                                 std::string_view expected_bytes, std::string_view what) {
  if (fetched.bytes != expected_bytes) {
    return Fail(
        ErrorCode::kDataLoss,
        fmt::format("{}: registry serves manifest {} ({} bytes), expected {} ({} bytes)", what,
                    fetched.digest, fetched.bytes.size(), expected.digest, expected_bytes.size()));
  }
  // Registries may add parameters ("; charset=utf-8"); the type itself must match.
  std::string_view media_type = fetched.media_type;
  media_type = media_type.substr(0, media_type.find(';'));
  if (media_type != expected.media_type) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("{}: registry serves Content-Type {:?}, expected {:?}", what,
                            fetched.media_type, expected.media_type));
  }
  return Ok();
}

Result<void> VerifyBlob(RegistryClient& client, std::string_view repository,
                        const Descriptor& descriptor) {
  NullSink sink;  // GetBlob hashes and counts; nothing is kept.
  BERTH_ASSIGN_OR_RETURN(uint64_t size, client.GetBlob(repository, descriptor.digest, sink));
  if (size != static_cast<uint64_t>(descriptor.size)) {
    return Fail(ErrorCode::kDataLoss, fmt::format("blob {}: {} bytes, manifest says {}",
                                                  descriptor.digest, size, descriptor.size));
  }
  return Ok();
}

}  // namespace

std::string PushedImage::ByDigest() const {
  return fmt::format("{}@{}", repository, manifest.digest);
}

Result<PushedImage> PushImage(RegistryClient& client, std::string_view repository,
                              std::string_view tag, const Image& image) {
  PushedImage pushed{
      .repository = std::string(repository), .tag = std::string(tag), .manifest = image.manifest};
  BERTH_RETURN_IF_ERROR(PushBlobs(client, repository, image, pushed));
  std::string reference = tag.empty() ? image.manifest.digest.ToString() : std::string(tag);
  BERTH_RETURN_IF_ERROR(WithContext(
      client.PutManifest(repository, reference, image.manifest.media_type, image.manifest_json),
      fmt::format("push manifest {}:{}", repository, reference)));
  return pushed;
}

Result<PushedImage> PushImage(RegistryClient& client, std::string_view repository,
                              std::string_view tag, const ImageIndex& index) {
  PushedImage pushed{
      .repository = std::string(repository), .tag = std::string(tag), .manifest = index.descriptor};
  for (const Image& image : index.manifests) {
    BERTH_ASSIGN_OR_RETURN(PushedImage child, PushImage(client, repository, "", image));
    pushed.blobs_uploaded += child.blobs_uploaded;
    pushed.blobs_skipped += child.blobs_skipped;
  }
  std::string reference = tag.empty() ? index.descriptor.digest.ToString() : std::string(tag);
  BERTH_RETURN_IF_ERROR(WithContext(
      client.PutManifest(repository, reference, index.descriptor.media_type, index.json),
      fmt::format("push index {}:{}", repository, reference)));
  return pushed;
}

Result<void> VerifyImage(RegistryClient& client, std::string_view repository,
                         std::string_view reference, const Image& expected) {
  std::string what = fmt::format("verify {}:{}", repository, reference);
  std::string_view accept[] = {expected.manifest.media_type};
  BERTH_ASSIGN_OR_RETURN(FetchedManifest fetched,
                         WithContext(client.GetManifest(repository, reference, accept), what));
  BERTH_RETURN_IF_ERROR(
      VerifyManifestBytes(fetched, expected.manifest, expected.manifest_json, what));
  BERTH_ASSIGN_OR_RETURN(ParsedManifest parsed, WithContext(ParseManifest(fetched.bytes), what));
  if (parsed.is_index() || *parsed.config != expected.config ||
      parsed.layers.size() != expected.layers.size()) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("{}: manifest does not name the expected config and layers", what));
  }
  BERTH_ASSIGN_OR_RETURN(std::string config,
                         WithContext(client.GetBlob(repository, parsed.config->digest), what));
  if (config != expected.config_json) {
    return Fail(ErrorCode::kDataLoss, fmt::format("{}: config blob differs", what));
  }
  for (size_t i = 0; i < parsed.layers.size(); ++i) {
    if (parsed.layers[i] != expected.layers[i].blob) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("{}: layer {} is {}, expected {}", what, i, parsed.layers[i].digest,
                              expected.layers[i].blob.digest));
    }
    BERTH_RETURN_IF_ERROR(WithContext(VerifyBlob(client, repository, parsed.layers[i]),
                                      fmt::format("{}: layer {}", what, i)));
  }
  return Ok();
}

Result<void> VerifyImage(RegistryClient& client, std::string_view repository,
                         std::string_view reference, const ImageIndex& expected) {
  std::string what = fmt::format("verify {}:{}", repository, reference);
  std::string_view accept[] = {expected.descriptor.media_type};
  BERTH_ASSIGN_OR_RETURN(FetchedManifest fetched,
                         WithContext(client.GetManifest(repository, reference, accept), what));
  BERTH_RETURN_IF_ERROR(VerifyManifestBytes(fetched, expected.descriptor, expected.json, what));
  BERTH_ASSIGN_OR_RETURN(ParsedManifest parsed, WithContext(ParseManifest(fetched.bytes), what));
  if (!parsed.is_index() || parsed.manifests.size() != expected.manifests.size()) {
    return Fail(ErrorCode::kDataLoss, fmt::format("{}: index does not list the expected {} images",
                                                  what, expected.manifests.size()));
  }
  for (size_t i = 0; i < parsed.manifests.size(); ++i) {
    const Image& image = expected.manifests[i];
    if (parsed.manifests[i] != image.manifest) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("{}: entry {} is {}, expected {}", what, i,
                              parsed.manifests[i].digest, image.manifest.digest));
    }
    BERTH_RETURN_IF_ERROR(VerifyImage(client, repository, image.manifest.digest.ToString(), image));
  }
  return Ok();
}

}  // namespace berth::imagegen
