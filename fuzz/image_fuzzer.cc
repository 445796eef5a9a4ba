// Fuzzes the decoders of registry documents (berth/image): DetectKind, ParseManifest,
// ParseIndex, ParseImageConfig, and Docker schema1 (ParseSchema1Manifest, Schema1SignedPayload,
// BuildSchema1Config). Every decoder sees every input. Invariants: decoded documents respect the
// documented limits, platform selection and chain IDs work on whatever decoded, and a decoded
// schema1 manifest converts into a config the config decoder accepts as JSON.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "berth/image/manifest.h"
#include "berth/image/platform.h"
#include "berth/image/schema1.h"
#include "fuzz/fuzz_check.h"

namespace {

bool IsDecodeError(const berth::Error& error) {
  return error.code() == berth::ErrorCode::kInvalidArgument ||
         error.code() == berth::ErrorCode::kResourceExhausted ||
         error.code() == berth::ErrorCode::kUnimplemented;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace image = berth::image;
  std::string_view document(reinterpret_cast<const char*>(data), size);

  for (std::string_view content_type : {std::string_view("application/json"), std::string_view(""),
                                        image::MediaTypeOf(image::ManifestKind::kOciIndex)}) {
    berth::Result<image::ManifestKind> kind = image::DetectKind(content_type, document);
    FUZZ_CHECK(kind || IsDecodeError(kind.error()), kind.error().message());
  }

  if (berth::Result<image::Manifest> manifest = image::ParseManifest(document)) {
    FUZZ_CHECK(manifest->layers.size() <= image::kMaxLayers, "too many layers accepted");
    FUZZ_CHECK(!image::IsIndex(manifest->kind), "a manifest decoded as an index kind");
  } else {
    FUZZ_CHECK(IsDecodeError(manifest.error()), manifest.error().message());
  }

  if (berth::Result<image::Index> index = image::ParseIndex(document)) {
    FUZZ_CHECK(index->manifests.size() <= image::kMaxIndexEntries, "too many entries accepted");
    FUZZ_CHECK(image::IsIndex(index->kind), "an index decoded as a manifest kind");
    (void)image::SelectManifest(*index, image::HostPlatform());
  } else {
    FUZZ_CHECK(IsDecodeError(index.error()), index.error().message());
  }

  if (berth::Result<image::ImageConfig> config = image::ParseImageConfig(document)) {
    std::vector<berth::Digest> chain = image::ChainIds(config->diff_ids);
    FUZZ_CHECK(chain.size() == config->diff_ids.size(), "one chain ID per diff ID");
  } else {
    FUZZ_CHECK(IsDecodeError(config.error()), config.error().message());
  }

  if (berth::Result<image::Schema1Manifest> schema1 = image::ParseSchema1Manifest(document)) {
    std::vector<berth::Digest> diff_ids;
    for (size_t i = 0; i < image::NonEmptyLayers(*schema1).size(); ++i) {
      diff_ids.push_back(berth::Digest::Sha256Of(std::to_string(i)));
    }
    berth::Result<std::string> converted = image::BuildSchema1Config(*schema1, diff_ids);
    FUZZ_CHECK(converted.has_value(), converted.error().message());
    FUZZ_CHECK(nlohmann::json::accept(*converted), "converted schema1 config is not JSON");
  } else {
    FUZZ_CHECK(IsDecodeError(schema1.error()), schema1.error().message());
  }
  (void)image::Schema1SignedPayload(document);
  return 0;
}
