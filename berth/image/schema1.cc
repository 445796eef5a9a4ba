#include "berth/image/schema1.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "berth/base/base64.h"
#include "berth/image/json_limits.h"
#include "berth/image/manifest.h"
#include "berth/image/media_types.h"

namespace berth::image {
namespace {

using nlohmann::json;

constexpr std::string_view kWhat = "schema1 manifest";

Error Malformed(std::string_view detail) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("invalid {}: {}", kWhat, detail));
}

Result<json> ParseObject(std::string_view document, std::string_view where) {
  Result<json> parsed = internal::ParseJson(document, kMaxJsonDepth);
  if (!parsed) return Fail(Malformed(fmt::format("{}: {}", where, parsed.error().message())));
  if (!parsed->is_object()) return Fail(Malformed(fmt::format("{} is not a JSON object", where)));
  return parsed;
}

// An optional string field: absent or null gives "".
Result<std::string> OptionalStringField(const json& object, const char* key,
                                        std::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return Fail(Malformed(fmt::format("{} \"{}\" is not a string", where, key)));
  return it->get<std::string>();
}

// Reads what the conversion needs from one step's v1Compatibility object.
Result<void> DecodeV1Compatibility(const json& v1, std::string_view where, Schema1Layer& layer) {
  BERTH_ASSIGN_OR_RETURN(layer.created, OptionalStringField(v1, "created", where));
  BERTH_ASSIGN_OR_RETURN(layer.author, OptionalStringField(v1, "author", where));
  BERTH_ASSIGN_OR_RETURN(layer.comment, OptionalStringField(v1, "comment", where));

  // containerd's rule: "throwaway" decides when present; otherwise a "Size" of 0 (written by
  // older Docker versions, before "throwaway" existed) marks an empty layer; otherwise the layer
  // counts as a real one.
  if (auto throwaway = v1.find("throwaway"); throwaway != v1.end() && !throwaway->is_null()) {
    if (!throwaway->is_boolean()) {
      return Fail(Malformed(fmt::format("{} \"throwaway\" is not a boolean", where)));
    }
    layer.empty = throwaway->get<bool>();
  } else if (auto size = v1.find("Size"); size != v1.end() && !size->is_null()) {
    if (!size->is_number())
      return Fail(Malformed(fmt::format("{} \"Size\" is not a number", where)));
    layer.empty = *size == 0;
  }

  auto container_config = v1.find("container_config");
  if (container_config == v1.end() || container_config->is_null()) return Ok();
  if (!container_config->is_object()) {
    return Fail(Malformed(fmt::format("{} \"container_config\" is not an object", where)));
  }
  auto cmd = container_config->find("Cmd");
  if (cmd == container_config->end() || cmd->is_null()) return Ok();
  if (!cmd->is_array()) {
    return Fail(Malformed(fmt::format("{} container_config.Cmd is not an array", where)));
  }
  for (const json& word : *cmd) {
    if (!word.is_string()) {
      return Fail(Malformed(fmt::format("{} container_config.Cmd holds a non-string", where)));
    }
    if (!layer.created_by.empty()) layer.created_by += ' ';
    layer.created_by += word.get<std::string>();
  }
  return Ok();
}

json DescriptorJson(const Descriptor& descriptor) {
  return json{{"mediaType", descriptor.media_type},
              {"size", descriptor.size},
              {"digest", descriptor.digest.ToString()}};
}

}  // namespace

Result<Schema1Manifest> ParseSchema1Manifest(std::string_view document) {
  if (document.size() > kMaxManifestBytes) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("{} is {} bytes, over the {} byte limit", kWhat, document.size(),
                            kMaxManifestBytes));
  }
  BERTH_ASSIGN_OR_RETURN(json parsed, ParseObject(document, "the document"));
  auto version = parsed.find("schemaVersion");
  if (version == parsed.end() || !version->is_number_integer() || version->get<int64_t>() != 1) {
    return Fail(Malformed("\"schemaVersion\" is not 1"));
  }

  Schema1Manifest manifest;
  BERTH_ASSIGN_OR_RETURN(manifest.name, OptionalStringField(parsed, "name", "manifest"));
  BERTH_ASSIGN_OR_RETURN(manifest.tag, OptionalStringField(parsed, "tag", "manifest"));
  BERTH_ASSIGN_OR_RETURN(manifest.architecture,
                         OptionalStringField(parsed, "architecture", "manifest"));

  auto fs_layers = parsed.find("fsLayers");
  if (fs_layers == parsed.end() || !fs_layers->is_array() || fs_layers->empty()) {
    return Fail(Malformed("no \"fsLayers\" (a non-empty array)"));
  }
  if (fs_layers->size() > kMaxLayers) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("{} lists {} layers, over the limit of {}", kWhat, fs_layers->size(),
                            kMaxLayers));
  }
  auto history = parsed.find("history");
  if (history == parsed.end() || !history->is_array()) {
    return Fail(Malformed("no \"history\" array"));
  }
  if (history->size() != fs_layers->size()) {
    return Fail(Malformed(
        fmt::format("{} fsLayers but {} history entries", fs_layers->size(), history->size())));
  }

  // The document lists the newest step first; berth keeps layers oldest first.
  const size_t count = fs_layers->size();
  manifest.layers.resize(count);
  for (size_t i = 0; i < count; ++i) {
    Schema1Layer& layer = manifest.layers[count - 1 - i];
    const json& fs_layer = (*fs_layers)[i];
    const std::string where = fmt::format("fsLayers[{}]", i);
    if (!fs_layer.is_object()) return Fail(Malformed(where + " is not an object"));
    BERTH_ASSIGN_OR_RETURN(std::string blob_sum, OptionalStringField(fs_layer, "blobSum", where));
    Result<Digest> digest = Digest::Parse(blob_sum);
    if (!digest) {
      return Fail(std::move(digest).error().WithContext(
          fmt::format("invalid {}: {}.blobSum", kWhat, where)));
    }
    layer.blob_sum = *digest;

    const json& entry = (*history)[i];
    const std::string history_where = fmt::format("history[{}]", i);
    if (!entry.is_object()) return Fail(Malformed(history_where + " is not an object"));
    auto v1 = entry.find("v1Compatibility");
    if (v1 == entry.end() || !v1->is_string()) {
      return Fail(Malformed(history_where + " has no \"v1Compatibility\" string"));
    }
    layer.v1_compatibility = v1->get<std::string>();
    const std::string v1_where = history_where + ".v1Compatibility";
    BERTH_ASSIGN_OR_RETURN(json v1_object, ParseObject(layer.v1_compatibility, v1_where));
    BERTH_RETURN_IF_ERROR(DecodeV1Compatibility(v1_object, v1_where, layer));
  }

  if (auto signatures = parsed.find("signatures");
      signatures != parsed.end() && !signatures->is_null()) {
    if (!signatures->is_array()) return Fail(Malformed("\"signatures\" is not an array"));
    manifest.has_signatures = !signatures->empty();
  }
  return manifest;
}

std::vector<const Schema1Layer*> NonEmptyLayers(const Schema1Manifest& manifest) {
  std::vector<const Schema1Layer*> layers;
  for (const Schema1Layer& layer : manifest.layers) {
    if (!layer.empty) layers.push_back(&layer);
  }
  return layers;
}

Result<std::string> BuildSchema1Config(const Schema1Manifest& manifest,
                                       std::span<const Digest> diff_ids) {
  if (manifest.layers.empty()) return Fail(Malformed("no layers"));
  const size_t non_empty = NonEmptyLayers(manifest).size();
  if (diff_ids.size() != non_empty) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("converting a {}: {} diff_ids for {} non-empty layers", kWhat,
                            diff_ids.size(), non_empty));
  }
  BERTH_ASSIGN_OR_RETURN(json config, ParseObject(manifest.layers.back().v1_compatibility,
                                                  "history[0].v1Compatibility"));
  // v1 bookkeeping with no meaning in a content-addressed config (as Docker's own conversion).
  for (const char* key : {"id", "parent", "Size", "parent_id", "layer_id", "throwaway"}) {
    config.erase(key);
  }
  auto architecture = config.find("architecture");
  if ((architecture == config.end() || architecture->is_null() ||
       (architecture->is_string() && architecture->get<std::string>().empty())) &&
      !manifest.architecture.empty()) {
    config["architecture"] = manifest.architecture;
  }

  json rootfs_diff_ids = json::array();
  for (const Digest& diff_id : diff_ids) rootfs_diff_ids.push_back(diff_id.ToString());
  config["rootfs"] = json{{"type", "layers"}, {"diff_ids", std::move(rootfs_diff_ids)}};

  json history = json::array();
  for (const Schema1Layer& layer : manifest.layers) {
    json entry = json::object();
    if (!layer.created.empty()) entry["created"] = layer.created;
    if (!layer.created_by.empty()) entry["created_by"] = layer.created_by;
    if (!layer.author.empty()) entry["author"] = layer.author;
    if (!layer.comment.empty()) entry["comment"] = layer.comment;
    if (layer.empty) entry["empty_layer"] = true;
    history.push_back(std::move(entry));
  }
  config["history"] = std::move(history);
  // Every string came through the parser, so it is valid UTF-8 and dump() cannot throw; the
  // handler only makes that certain.
  return config.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string BuildDockerManifest(const Descriptor& config, std::span<const Descriptor> layers) {
  json layer_list = json::array();
  for (const Descriptor& layer : layers) layer_list.push_back(DescriptorJson(layer));
  json manifest{{"schemaVersion", 2},
                {"mediaType", media_types::kDockerManifest},
                {"config", DescriptorJson(config)},
                {"layers", std::move(layer_list)}};
  return manifest.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> Schema1SignedPayload(std::string_view document) {
  if (document.size() > kMaxManifestBytes) {
    return Fail(ErrorCode::kResourceExhausted, "schema1 manifest is over the size limit");
  }
  BERTH_RETURN_IF_ERROR(internal::CheckJsonDepth(document, kMaxJsonDepth));
  auto parsed = nlohmann::json::parse(document.begin(), document.end(), nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "schema1 manifest is not a JSON object");
  }
  auto signatures = parsed.find("signatures");
  if (signatures == parsed.end() || !signatures->is_array() || signatures->empty() ||
      !(*signatures)[0].is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "schema1 manifest has no signature");
  }
  auto protected_field = (*signatures)[0].find("protected");
  if (protected_field == (*signatures)[0].end() || !protected_field->is_string()) {
    return Fail(ErrorCode::kInvalidArgument, "schema1 signature has no protected header");
  }
  BERTH_ASSIGN_OR_RETURN(std::string header_json,
                         Base64UrlDecode(protected_field->get<std::string>()));
  auto header = nlohmann::json::parse(header_json, nullptr, false);
  if (header.is_discarded() || !header.is_object() || !header.contains("formatLength") ||
      !header["formatLength"].is_number_unsigned() || !header.contains("formatTail") ||
      !header["formatTail"].is_string()) {
    return Fail(ErrorCode::kInvalidArgument,
                "schema1 protected header lacks formatLength/formatTail");
  }
  auto length = header["formatLength"].get<uint64_t>();
  if (length > document.size()) {
    return Fail(ErrorCode::kInvalidArgument, "schema1 formatLength is past the document's end");
  }
  BERTH_ASSIGN_OR_RETURN(std::string tail,
                         Base64UrlDecode(header["formatTail"].get<std::string>()));
  return std::string(document.substr(0, length)) + tail;
}

}  // namespace berth::image
