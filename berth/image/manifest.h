// File: berth/image/manifest.h
//
// Decoding of the documents a registry serves for an image: OCI image manifests and indexes,
// Docker schema2 manifests and manifest lists, and image configs. Decoders never throw; every
// malformed, oversized or hostile document is an Error (kInvalidArgument for malformed,
// kResourceExhausted for over-limit, kUnimplemented for a format berth does not handle) whose
// message names the field at fault.
//
// Limits (hostile input): a document over kMaxManifestBytes, nested deeper than kMaxJsonDepth, or
// listing more than kMaxLayers layers / kMaxIndexEntries manifests is refused before decoding.
//
// Thread safety: pure functions over value types.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/image/descriptor.h"
#include "berth/image/platform.h"

namespace berth::image {

inline constexpr size_t kMaxManifestBytes = 4 << 20;  // manifests, indexes and configs
inline constexpr int kMaxJsonDepth = 64;
inline constexpr size_t kMaxLayers = 1000;
inline constexpr size_t kMaxIndexEntries = 10000;

enum class ManifestKind {
  kOciManifest,
  kDockerManifest,
  kOciIndex,
  kDockerManifestList,
  kDockerSchema1,
};

// True for the two index kinds (OCI index, Docker manifest list).
bool IsIndex(ManifestKind kind);
// The media type of `kind` (for schema1, the signed variant).
std::string_view MediaTypeOf(ManifestKind kind);
// The kind named by a media type, or kUnimplemented.
Result<ManifestKind> KindOfMediaType(std::string_view media_type);

// Works out what a fetched document is, from the response's Content-Type and the document's
// own `mediaType` / `schemaVersion` / shape (registries are not always precise about the
// Content-Type: "application/json" and "text/plain" are common).
Result<ManifestKind> DetectKind(std::string_view content_type, std::string_view document);

struct Manifest {
  ManifestKind kind = ManifestKind::kOciManifest;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

struct Index {
  ManifestKind kind = ManifestKind::kOciIndex;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Decodes an OCI image manifest or a Docker schema2 manifest.
Result<Manifest> ParseManifest(std::string_view document);
// Decodes an OCI index or a Docker manifest list.
Result<Index> ParseIndex(std::string_view document);

// Chooses the manifest of `index` that best serves `platform` (exact variant first, then
// compatible ones, index order breaking ties). kNotFound naming the platforms on offer otherwise.
Result<Descriptor> SelectManifest(const Index& index, const Platform& platform);

struct ImageConfig {
  std::string architecture;
  std::string os;
  std::string variant;
  std::string created;
  std::string user;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::vector<Digest> diff_ids;
};

// Decodes an image config (OCI or Docker; the fields berth uses). rootfs.type must be "layers".
Result<ImageConfig> ParseImageConfig(std::string_view document);

// chainID of each prefix of `diff_ids`, per the OCI image spec:
// chain[0] = diff_ids[0], chain[i] = sha256(chain[i-1] + " " + diff_ids[i]).
std::vector<Digest> ChainIds(std::span<const Digest> diff_ids);

}  // namespace berth::image
