// File: tools/imagegen/image.h
//
// Image assembly: config JSON, manifests (OCI or Docker schema 2) and multi-platform indexes
// (OCI index or Docker manifest list), serialized byte-exactly so their digests are stable.
//
// JSON is written compactly with keys in a fixed order (the order the specs list them) and
// empty optional fields left out. `created` defaults to the Unix epoch so that nothing depends
// on the clock: the same layers and config give the same image ID and manifest digest.
//
//   FileTree tree;
//   tree.AddFile("etc/os-release", "ID=berth\n");
//   BERTH_ASSIGN_OR_RETURN(Layer layer, BuildLayer(tree));
//   BERTH_ASSIGN_OR_RETURN(Image image, AssembleImage({.cmd = {"/bin/sh"}}, {layer}));
//
// Thread safety: value types and pure functions.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "tools/imagegen/layer.h"

namespace berth::imagegen {

struct HistoryEntry {
  std::string created = "1970-01-01T00:00:00Z";
  std::string created_by;
  std::string comment;
  bool empty_layer = false;
};

// The fields of an OCI/Docker image config that the generator sets.
struct ImageConfig {
  std::string architecture = "amd64";
  std::string os = "linux";
  std::string variant;
  std::string created = "1970-01-01T00:00:00Z";
  std::string author;
  // The runtime config ("config" object).
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  // One entry per layer plus any empty_layer entries; when empty, one entry per layer is made.
  std::vector<HistoryEntry> history;

  Platform platform() const { return {architecture, os, variant}; }
};

struct Image {
  ManifestFormat format = ManifestFormat::kOci;
  // The manifest's descriptor; platform is the config's platform.
  Descriptor manifest;
  std::string manifest_json;
  Descriptor config;
  std::string config_json;
  // Blob media types follow `format`.
  std::vector<Layer> layers;
};

struct ImageIndex {
  ManifestFormat format = ManifestFormat::kOci;
  Descriptor descriptor;
  std::string json;
  std::vector<Image> manifests;
};

// Serializes `config` with `diff_ids` as its rootfs. kInvalidArgument if a non-empty history
// does not have exactly one non-empty_layer entry per diffID.
Result<std::string> ConfigJson(const ImageConfig& config, const std::vector<Digest>& diff_ids);

// Builds the config blob and the manifest for `layers` in `format`, rewriting each layer's
// media type to match. `annotations` go into an OCI manifest (Docker schema 2 has none:
// kInvalidArgument if given). Errors from ConfigJson().
Result<Image> AssembleImage(const ImageConfig& config, std::vector<Layer> layers,
                            ManifestFormat format = ManifestFormat::kOci,
                            const std::map<std::string, std::string>& annotations = {});

// Builds an index over `images` (one per platform). kInvalidArgument if `images` is empty or
// an image's format differs from `format` (a Docker list points at Docker manifests).
Result<ImageIndex> AssembleIndex(std::vector<Image> images,
                                 ManifestFormat format = ManifestFormat::kOci);

// The descriptors a manifest or index names, parsed back from JSON (for verification).
struct ParsedManifest {
  std::string media_type;
  std::optional<Descriptor> config;   // Manifests only.
  std::vector<Descriptor> layers;     // Manifests only.
  std::vector<Descriptor> manifests;  // Indexes only.
  bool is_index() const { return config == std::nullopt; }
};

// Parses a manifest or an index. kInvalidArgument for malformed JSON, a missing field, or a
// digest that does not parse; kUnimplemented for schema versions other than 2.
Result<ParsedManifest> ParseManifest(std::string_view json);

// A ready-made image for demos and smoke tests: /etc/os-release, an executable script, a
// symlink to it and a directory, in two layers (gzip and zstd), for `platform`.
Result<Image> MakeDemoImage(ManifestFormat format = ManifestFormat::kOci,
                            Platform platform = {"amd64", "linux", ""});

}  // namespace berth::imagegen
