#include "tools/imagegen/image.h"

#include <fmt/format.h>

#include <exception>
#include <nlohmann/json.hpp>

#include "berth/image/media_types.h"

namespace berth::imagegen {
namespace {

using Json = nlohmann::ordered_json;

// nlohmann throws on invalid UTF-8 in strings; that is the caller's bad input, not a crash.
Result<std::string> Dump(const Json& json, std::string_view what) {
  try {
    return json.dump();
  } catch (const std::exception& error) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("{} is not valid JSON text ({}); use "
                                                         "UTF-8 in names, labels and commands",
                                                         what, error.what()));
  }
}

Json PlatformJson(const Platform& platform) {
  Json json = Json::object();
  json["architecture"] = platform.architecture;
  json["os"] = platform.os;
  if (!platform.variant.empty()) json["variant"] = platform.variant;
  return json;
}

Json DescriptorJson(const Descriptor& descriptor) {
  Json json = Json::object();
  json["mediaType"] = descriptor.media_type;
  json["digest"] = descriptor.digest.ToString();
  json["size"] = descriptor.size;
  if (!descriptor.annotations.empty()) {
    Json annotations = Json::object();
    for (const auto& [key, value] : descriptor.annotations) annotations[key] = value;
    json["annotations"] = std::move(annotations);
  }
  if (descriptor.platform) json["platform"] = PlatformJson(*descriptor.platform);
  return json;
}

Descriptor DescriptorOf(std::string_view media_type, std::string_view bytes) {
  Descriptor descriptor;
  descriptor.media_type = media_type;
  descriptor.digest = Digest::Sha256Of(bytes);
  descriptor.size = static_cast<int64_t>(bytes.size());
  return descriptor;
}

Json StringArray(const std::vector<std::string>& values) {
  Json json = Json::array();
  for (const std::string& value : values) json.push_back(value);
  return json;
}

}  // namespace

Result<std::string> ConfigJson(const ImageConfig& config, const std::vector<Digest>& diff_ids) {
  Json json = Json::object();
  json["created"] = config.created;
  if (!config.author.empty()) json["author"] = config.author;
  json["architecture"] = config.architecture;
  json["os"] = config.os;
  if (!config.variant.empty()) json["variant"] = config.variant;

  Json runtime = Json::object();
  if (!config.user.empty()) runtime["User"] = config.user;
  if (!config.env.empty()) runtime["Env"] = StringArray(config.env);
  if (!config.entrypoint.empty()) runtime["Entrypoint"] = StringArray(config.entrypoint);
  if (!config.cmd.empty()) runtime["Cmd"] = StringArray(config.cmd);
  if (!config.working_dir.empty()) runtime["WorkingDir"] = config.working_dir;
  if (!config.labels.empty()) {
    Json labels = Json::object();
    for (const auto& [key, value] : config.labels) labels[key] = value;
    runtime["Labels"] = std::move(labels);
  }
  json["config"] = std::move(runtime);

  Json rootfs = Json::object();
  rootfs["type"] = "layers";
  Json ids = Json::array();
  for (const Digest& diff_id : diff_ids) ids.push_back(diff_id.ToString());
  rootfs["diff_ids"] = std::move(ids);
  json["rootfs"] = std::move(rootfs);

  std::vector<HistoryEntry> history = config.history;
  if (history.empty()) {
    for (size_t i = 0; i < diff_ids.size(); ++i) {
      history.push_back(
          {.created = config.created, .created_by = fmt::format("berth imagegen: layer {}", i)});
    }
  }
  size_t non_empty = 0;
  for (const HistoryEntry& entry : history) non_empty += entry.empty_layer ? 0 : 1;
  if (non_empty != diff_ids.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("image history has {} non-empty entries for {} layers; give one per "
                            "layer or leave history empty",
                            non_empty, diff_ids.size()));
  }
  Json history_json = Json::array();
  for (const HistoryEntry& entry : history) {
    Json item = Json::object();
    item["created"] = entry.created;
    if (!entry.created_by.empty()) item["created_by"] = entry.created_by;
    if (!entry.comment.empty()) item["comment"] = entry.comment;
    if (entry.empty_layer) item["empty_layer"] = true;
    history_json.push_back(std::move(item));
  }
  json["history"] = std::move(history_json);
  return Dump(json, "image config");
}

Result<Image> AssembleImage(const ImageConfig& config, std::vector<Layer> layers,
                            ManifestFormat format,
                            const std::map<std::string, std::string>& annotations) {
  if (format == ManifestFormat::kDocker && !annotations.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "Docker schema 2 manifests have no annotations; use ManifestFormat::kOci");
  }
  Image image;
  image.format = format;
  std::vector<Digest> diff_ids;
  for (Layer& layer : layers) {
    layer.blob.media_type = LayerMediaType(format, layer.compression);
    diff_ids.push_back(layer.diff_id);
  }
  BERTH_ASSIGN_OR_RETURN(image.config_json, ConfigJson(config, diff_ids));
  bool oci = format == ManifestFormat::kOci;
  image.config =
      DescriptorOf(oci ? media_types::kOciConfig : media_types::kDockerConfig, image.config_json);

  Json manifest = Json::object();
  manifest["schemaVersion"] = 2;
  manifest["mediaType"] = oci ? media_types::kOciManifest : media_types::kDockerManifest;
  manifest["config"] = DescriptorJson(image.config);
  Json layers_json = Json::array();
  for (const Layer& layer : layers) layers_json.push_back(DescriptorJson(layer.blob));
  manifest["layers"] = std::move(layers_json);
  if (!annotations.empty()) {
    Json annotations_json = Json::object();
    for (const auto& [key, value] : annotations) annotations_json[key] = value;
    manifest["annotations"] = std::move(annotations_json);
  }
  BERTH_ASSIGN_OR_RETURN(image.manifest_json, Dump(manifest, "image manifest"));
  image.manifest = DescriptorOf(oci ? media_types::kOciManifest : media_types::kDockerManifest,
                                image.manifest_json);
  image.manifest.platform = config.platform();
  image.layers = std::move(layers);
  return image;
}

Result<ImageIndex> AssembleIndex(std::vector<Image> images, ManifestFormat format) {
  if (images.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "an image index needs at least one image");
  }
  bool oci = format == ManifestFormat::kOci;
  Json index = Json::object();
  index["schemaVersion"] = 2;
  index["mediaType"] = oci ? media_types::kOciIndex : media_types::kDockerManifestList;
  Json manifests = Json::array();
  for (const Image& image : images) {
    if (image.format != format) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("image {} has a different manifest format than the index; build "
                              "every image with the index's format",
                              image.manifest.digest));
    }
    manifests.push_back(DescriptorJson(image.manifest));
  }
  index["manifests"] = std::move(manifests);
  ImageIndex result;
  result.format = format;
  BERTH_ASSIGN_OR_RETURN(result.json, Dump(index, "image index"));
  result.descriptor =
      DescriptorOf(oci ? media_types::kOciIndex : media_types::kDockerManifestList, result.json);
  result.manifests = std::move(images);
  return result;
}

namespace {

Result<Descriptor> ParseDescriptor(const Json& json, std::string_view where) {
  if (!json.is_object() || !json.contains("digest") || !json["digest"].is_string() ||
      !json.contains("size") || !json["size"].is_number_integer()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: descriptor without a digest string and integer size", where));
  }
  Descriptor descriptor;
  if (json.contains("mediaType") && json["mediaType"].is_string()) {
    descriptor.media_type = json["mediaType"].get<std::string>();
  }
  BERTH_ASSIGN_OR_RETURN(
      descriptor.digest,
      WithContext(Digest::Parse(json["digest"].get<std::string>()), std::string(where)));
  descriptor.size = json["size"].get<int64_t>();
  if (json.contains("platform") && json["platform"].is_object()) {
    const Json& platform = json["platform"];
    Platform parsed;
    parsed.architecture = platform.value("architecture", "");
    parsed.os = platform.value("os", "");
    parsed.variant = platform.value("variant", "");
    descriptor.platform = parsed;
  }
  if (json.contains("annotations") && json["annotations"].is_object()) {
    for (const auto& [key, value] : json["annotations"].items()) {
      if (value.is_string()) descriptor.annotations[key] = value.get<std::string>();
    }
  }
  return descriptor;
}

}  // namespace

Result<ParsedManifest> ParseManifest(std::string_view text) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "manifest is not a JSON object");
  }
  if (!json.contains("schemaVersion") || json["schemaVersion"] != 2) {
    return Fail(ErrorCode::kUnimplemented, "manifest schemaVersion is not 2");
  }
  ParsedManifest parsed;
  if (json.contains("mediaType") && json["mediaType"].is_string()) {
    parsed.media_type = json["mediaType"].get<std::string>();
  }
  if (json.contains("manifests")) {
    if (!json["manifests"].is_array()) {
      return Fail(ErrorCode::kInvalidArgument, "index \"manifests\" is not an array");
    }
    for (const Json& item : json["manifests"]) {
      BERTH_ASSIGN_OR_RETURN(Descriptor descriptor, ParseDescriptor(item, "index manifests[]"));
      parsed.manifests.push_back(std::move(descriptor));
    }
    return parsed;
  }
  if (!json.contains("config") || !json.contains("layers") || !json["layers"].is_array()) {
    return Fail(ErrorCode::kInvalidArgument,
                "manifest has neither \"manifests\" nor \"config\" and \"layers\"");
  }
  BERTH_ASSIGN_OR_RETURN(parsed.config, ParseDescriptor(json["config"], "manifest config"));
  for (const Json& item : json["layers"]) {
    BERTH_ASSIGN_OR_RETURN(Descriptor descriptor, ParseDescriptor(item, "manifest layers[]"));
    parsed.layers.push_back(std::move(descriptor));
  }
  return parsed;
}

Result<Image> MakeDemoImage(ManifestFormat format, Platform platform) {
  FileTree base;
  base.AddDirectory("etc")
      .AddFile("etc/os-release", fmt::format("NAME=\"berth demo\"\nID=berth-demo\nVERSION_ID=1\n"
                                             "BERTH_PLATFORM={}/{}{}{}\n",
                                             platform.os, platform.architecture,
                                             platform.variant.empty() ? "" : "/", platform.variant))
      .AddDirectory("usr")
      .AddDirectory("usr/bin");
  FileTree app;
  app.AddDirectory("usr")
      .AddDirectory("usr/bin")
      .AddFile("usr/bin/hello", "#!/bin/sh\necho \"hello from berth\"\n", {.mode = 0755})
      .AddSymlink("usr/bin/hi", "hello");
  BERTH_ASSIGN_OR_RETURN(Layer base_layer, BuildLayer(base, {.compression = Compression::kGzip}));
  BERTH_ASSIGN_OR_RETURN(Layer app_layer, BuildLayer(app, {.compression = Compression::kZstd}));
  ImageConfig config{.architecture = platform.architecture,
                     .os = platform.os,
                     .variant = platform.variant,
                     .env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                     .cmd = {"/usr/bin/hello"},
                     .working_dir = "/",
                     .labels = {{"org.opencontainers.image.title", "berth demo"}}};
  return AssembleImage(config, {std::move(base_layer), std::move(app_layer)}, format);
}

}  // namespace berth::imagegen
