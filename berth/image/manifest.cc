#include "berth/image/manifest.h"

#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "berth/image/json_limits.h"
#include "berth/image/media_types.h"

namespace berth::image {
namespace {

using nlohmann::json;

Error Malformed(std::string_view what, std::string_view detail) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("invalid {}: {}", what, detail));
}

Result<json> ParseDocument(std::string_view document, std::string_view what) {
  if (document.size() > kMaxManifestBytes) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("{} is {} bytes, over the {} byte limit", what, document.size(),
                            kMaxManifestBytes));
  }
  Result<json> parsed = internal::ParseJson(document, kMaxJsonDepth);
  if (!parsed) return Fail(Malformed(what, parsed.error().message()));
  if (!parsed->is_object()) return Fail(Malformed(what, "top level is not a JSON object"));
  return parsed;
}

// Reads an optional string field; absent or null gives "".
Result<std::string> OptionalString(const json& object, const char* key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Fail(Malformed(where, fmt::format("\"{}\" is not a string", key)));
  return it->get<std::string>();
}

Result<std::vector<std::string>> OptionalStringArray(const json& object, const char* key,
                                                     std::string_view where) {
  std::vector<std::string> out;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) return Fail(Malformed(where, fmt::format("\"{}\" is not an array", key)));
  for (const json& item : *it) {
    if (!item.is_string()) {
      return Fail(Malformed(where, fmt::format("\"{}\" holds a non-string", key)));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

Result<std::map<std::string, std::string>> OptionalStringMap(const json& object, const char* key,
                                                             std::string_view where) {
  std::map<std::string, std::string> out;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_object()) return Fail(Malformed(where, fmt::format("\"{}\" is not an object", key)));
  for (const auto& [name, value] : it->items()) {
    if (!value.is_string()) {
      return Fail(Malformed(where, fmt::format("\"{}\".\"{}\" is not a string", key, name)));
    }
    out.emplace(name, value.get<std::string>());
  }
  return out;
}

Result<Platform> DecodePlatform(const json& object, std::string_view where) {
  if (!object.is_object()) return Fail(Malformed(where, "\"platform\" is not an object"));
  Platform platform;
  BERTH_ASSIGN_OR_RETURN(platform.architecture, OptionalString(object, "architecture", where));
  BERTH_ASSIGN_OR_RETURN(platform.os, OptionalString(object, "os", where));
  BERTH_ASSIGN_OR_RETURN(platform.variant, OptionalString(object, "variant", where));
  BERTH_ASSIGN_OR_RETURN(platform.os_version, OptionalString(object, "os.version", where));
  BERTH_ASSIGN_OR_RETURN(platform.os_features, OptionalStringArray(object, "os.features", where));
  return platform;
}

Result<Descriptor> DecodeDescriptor(const json& object, std::string_view where) {
  if (!object.is_object()) return Fail(Malformed(where, "descriptor is not an object"));
  Descriptor descriptor;
  BERTH_ASSIGN_OR_RETURN(descriptor.media_type, OptionalString(object, "mediaType", where));
  auto digest_field = object.find("digest");
  if (digest_field == object.end() || !digest_field->is_string()) {
    return Fail(Malformed(where, "descriptor has no \"digest\" string"));
  }
  Result<Digest> digest = Digest::Parse(digest_field->get<std::string>());
  if (!digest) return Fail(std::move(digest).error().WithContext(std::string(where)));
  descriptor.digest = *digest;
  auto size_field = object.find("size");
  if (size_field == object.end() || !size_field->is_number_integer()) {
    return Fail(Malformed(where, fmt::format("descriptor {} has no integer \"size\"", *digest)));
  }
  if (size_field->is_number_unsigned()) {
    auto size = size_field->get<uint64_t>();
    if (size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Fail(Malformed(where, fmt::format("descriptor {} size is out of range", *digest)));
    }
    descriptor.size = static_cast<int64_t>(size);
  } else {
    descriptor.size = size_field->get<int64_t>();
  }
  if (descriptor.size < 0) {
    return Fail(Malformed(where, fmt::format("descriptor {} has a negative size", *digest)));
  }
  if (auto platform = object.find("platform"); platform != object.end() && !platform->is_null()) {
    BERTH_ASSIGN_OR_RETURN(descriptor.platform, DecodePlatform(*platform, where));
  }
  BERTH_ASSIGN_OR_RETURN(descriptor.annotations, OptionalStringMap(object, "annotations", where));
  BERTH_ASSIGN_OR_RETURN(descriptor.urls, OptionalStringArray(object, "urls", where));
  return descriptor;
}

Result<int> SchemaVersion(const json& object, std::string_view where) {
  auto it = object.find("schemaVersion");
  if (it == object.end() || !it->is_number_integer()) {
    return Fail(Malformed(where, "no integer \"schemaVersion\""));
  }
  return it->get<int>();
}

}  // namespace

bool IsIndex(ManifestKind kind) {
  return kind == ManifestKind::kOciIndex || kind == ManifestKind::kDockerManifestList;
}

std::string_view MediaTypeOf(ManifestKind kind) {
  switch (kind) {
    case ManifestKind::kOciManifest:
      return media_types::kOciManifest;
    case ManifestKind::kDockerManifest:
      return media_types::kDockerManifest;
    case ManifestKind::kOciIndex:
      return media_types::kOciIndex;
    case ManifestKind::kDockerManifestList:
      return media_types::kDockerManifestList;
    case ManifestKind::kDockerSchema1:
      return media_types::kDockerSchema1SignedManifest;
  }
  return media_types::kOciManifest;
}

Result<ManifestKind> KindOfMediaType(std::string_view media_type) {
  if (media_type == media_types::kOciManifest) return ManifestKind::kOciManifest;
  if (media_type == media_types::kDockerManifest) return ManifestKind::kDockerManifest;
  if (media_type == media_types::kOciIndex) return ManifestKind::kOciIndex;
  if (media_type == media_types::kDockerManifestList) return ManifestKind::kDockerManifestList;
  if (media_type == media_types::kDockerSchema1Manifest ||
      media_type == media_types::kDockerSchema1SignedManifest) {
    return ManifestKind::kDockerSchema1;
  }
  return Fail(ErrorCode::kUnimplemented,
              fmt::format("unsupported manifest media type \"{}\"", media_type));
}

Result<ManifestKind> DetectKind(std::string_view content_type, std::string_view document) {
  // Strip parameters such as "; charset=utf-8".
  std::string_view bare = content_type.substr(0, content_type.find(';'));
  while (!bare.empty() && bare.back() == ' ') bare.remove_suffix(1);
  if (Result<ManifestKind> by_header = KindOfMediaType(bare); by_header) return by_header;

  BERTH_ASSIGN_OR_RETURN(json parsed, ParseDocument(document, "manifest"));
  if (auto media_type = parsed.find("mediaType");
      media_type != parsed.end() && media_type->is_string()) {
    return KindOfMediaType(media_type->get<std::string>());
  }
  BERTH_ASSIGN_OR_RETURN(int version, SchemaVersion(parsed, "manifest"));
  if (version == 1) return ManifestKind::kDockerSchema1;
  if (parsed.contains("manifests")) return ManifestKind::kOciIndex;
  if (parsed.contains("config") && parsed.contains("layers")) return ManifestKind::kOciManifest;
  return Fail(
      ErrorCode::kUnimplemented,
      fmt::format("cannot tell what kind of manifest this is (Content-Type \"{}\")", content_type));
}

Result<Manifest> ParseManifest(std::string_view document) {
  constexpr std::string_view kWhat = "image manifest";
  BERTH_ASSIGN_OR_RETURN(json parsed, ParseDocument(document, kWhat));
  BERTH_ASSIGN_OR_RETURN(int version, SchemaVersion(parsed, kWhat));
  if (version != 2) {
    return Fail(Malformed(kWhat, fmt::format("schemaVersion {} (expected 2)", version)));
  }
  Manifest manifest;
  BERTH_ASSIGN_OR_RETURN(std::string media_type, OptionalString(parsed, "mediaType", kWhat));
  if (media_type.empty() || media_type == media_types::kOciManifest) {
    manifest.kind = ManifestKind::kOciManifest;
  } else if (media_type == media_types::kDockerManifest) {
    manifest.kind = ManifestKind::kDockerManifest;
  } else {
    return Fail(
        Malformed(kWhat, fmt::format("mediaType \"{}\" is not an image manifest", media_type)));
  }
  auto config = parsed.find("config");
  if (config == parsed.end()) return Fail(Malformed(kWhat, "no \"config\" descriptor"));
  BERTH_ASSIGN_OR_RETURN(manifest.config, DecodeDescriptor(*config, "image manifest config"));
  auto layers = parsed.find("layers");
  if (layers == parsed.end() || !layers->is_array()) {
    return Fail(Malformed(kWhat, "no \"layers\" array"));
  }
  if (layers->size() > kMaxLayers) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("image manifest lists {} layers, over the limit of {}", layers->size(),
                            kMaxLayers));
  }
  manifest.layers.reserve(layers->size());
  for (size_t i = 0; i < layers->size(); ++i) {
    BERTH_ASSIGN_OR_RETURN(
        Descriptor layer,
        DecodeDescriptor((*layers)[i], fmt::format("image manifest layer {}", i)));
    manifest.layers.push_back(std::move(layer));
  }
  BERTH_ASSIGN_OR_RETURN(manifest.annotations, OptionalStringMap(parsed, "annotations", kWhat));
  return manifest;
}

Result<Index> ParseIndex(std::string_view document) {
  constexpr std::string_view kWhat = "image index";
  BERTH_ASSIGN_OR_RETURN(json parsed, ParseDocument(document, kWhat));
  BERTH_ASSIGN_OR_RETURN(int version, SchemaVersion(parsed, kWhat));
  if (version != 2) {
    return Fail(Malformed(kWhat, fmt::format("schemaVersion {} (expected 2)", version)));
  }
  Index index;
  BERTH_ASSIGN_OR_RETURN(std::string media_type, OptionalString(parsed, "mediaType", kWhat));
  if (media_type.empty() || media_type == media_types::kOciIndex) {
    index.kind = ManifestKind::kOciIndex;
  } else if (media_type == media_types::kDockerManifestList) {
    index.kind = ManifestKind::kDockerManifestList;
  } else {
    return Fail(Malformed(kWhat, fmt::format("mediaType \"{}\" is not an index", media_type)));
  }
  auto manifests = parsed.find("manifests");
  if (manifests == parsed.end() || !manifests->is_array()) {
    return Fail(Malformed(kWhat, "no \"manifests\" array"));
  }
  if (manifests->size() > kMaxIndexEntries) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("image index lists {} manifests, over the limit of {}",
                            manifests->size(), kMaxIndexEntries));
  }
  for (size_t i = 0; i < manifests->size(); ++i) {
    BERTH_ASSIGN_OR_RETURN(
        Descriptor entry,
        DecodeDescriptor((*manifests)[i], fmt::format("image index entry {}", i)));
    index.manifests.push_back(std::move(entry));
  }
  BERTH_ASSIGN_OR_RETURN(index.annotations, OptionalStringMap(parsed, "annotations", kWhat));
  return index;
}

Result<Descriptor> SelectManifest(const Index& index, const Platform& platform) {
  const Descriptor* best = nullptr;
  int best_rank = std::numeric_limits<int>::max();
  std::string offered;
  for (const Descriptor& entry : index.manifests) {
    if (!entry.platform) continue;
    // Attestation manifests (buildkit) carry platform unknown/unknown and never match.
    if (!offered.empty()) offered += ", ";
    offered += entry.platform->ToString();
    std::optional<int> rank = MatchRank(platform, *entry.platform);
    if (rank && *rank < best_rank) {
      best = &entry;
      best_rank = *rank;
    }
  }
  if (best == nullptr) {
    return Fail(ErrorCode::kNotFound,
                fmt::format("no manifest for platform {} in the index (it offers: {})",
                            platform.ToString(), offered.empty() ? "none" : offered));
  }
  return *best;
}

Result<ImageConfig> ParseImageConfig(std::string_view document) {
  constexpr std::string_view kWhat = "image config";
  BERTH_ASSIGN_OR_RETURN(json parsed, ParseDocument(document, kWhat));
  ImageConfig config;
  BERTH_ASSIGN_OR_RETURN(config.architecture, OptionalString(parsed, "architecture", kWhat));
  BERTH_ASSIGN_OR_RETURN(config.os, OptionalString(parsed, "os", kWhat));
  BERTH_ASSIGN_OR_RETURN(config.variant, OptionalString(parsed, "variant", kWhat));
  BERTH_ASSIGN_OR_RETURN(config.created, OptionalString(parsed, "created", kWhat));
  if (auto runtime = parsed.find("config"); runtime != parsed.end() && !runtime->is_null()) {
    if (!runtime->is_object()) return Fail(Malformed(kWhat, "\"config\" is not an object"));
    constexpr std::string_view kRuntime = "image config \"config\"";
    BERTH_ASSIGN_OR_RETURN(config.user, OptionalString(*runtime, "User", kRuntime));
    BERTH_ASSIGN_OR_RETURN(config.env, OptionalStringArray(*runtime, "Env", kRuntime));
    BERTH_ASSIGN_OR_RETURN(config.entrypoint,
                           OptionalStringArray(*runtime, "Entrypoint", kRuntime));
    BERTH_ASSIGN_OR_RETURN(config.cmd, OptionalStringArray(*runtime, "Cmd", kRuntime));
    BERTH_ASSIGN_OR_RETURN(config.working_dir, OptionalString(*runtime, "WorkingDir", kRuntime));
    BERTH_ASSIGN_OR_RETURN(config.labels, OptionalStringMap(*runtime, "Labels", kRuntime));
  }
  auto rootfs = parsed.find("rootfs");
  if (rootfs == parsed.end() || !rootfs->is_object()) {
    return Fail(Malformed(kWhat, "no \"rootfs\" object"));
  }
  BERTH_ASSIGN_OR_RETURN(std::string type, OptionalString(*rootfs, "type", kWhat));
  if (type != "layers") {
    return Fail(Malformed(kWhat, fmt::format("rootfs.type is \"{}\" (expected \"layers\")", type)));
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                         OptionalStringArray(*rootfs, "diff_ids", kWhat));
  if (diff_ids.size() > kMaxLayers) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("image config lists {} layers, over the limit of {}", diff_ids.size(),
                            kMaxLayers));
  }
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    Result<Digest> diff_id = Digest::Parse(diff_ids[i]);
    if (!diff_id) {
      return Fail(std::move(diff_id).error().WithContext(
          fmt::format("image config rootfs.diff_ids[{}]", i)));
    }
    config.diff_ids.push_back(*diff_id);
  }
  return config;
}

std::vector<Digest> ChainIds(std::span<const Digest> diff_ids) {
  std::vector<Digest> chain;
  chain.reserve(diff_ids.size());
  for (const Digest& diff_id : diff_ids) {
    if (chain.empty()) {
      chain.push_back(diff_id);
    } else {
      chain.push_back(Digest::Sha256Of(chain.back().ToString() + " " + diff_id.ToString()));
    }
  }
  return chain;
}

}  // namespace berth::image
