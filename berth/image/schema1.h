// File: berth/image/schema1.h
//
// Docker image manifest v2, schema 1 (legacy): decoding, and the pure JSON half of converting a
// schema1 image into a Docker schema2 image as containerd 1.x does on pull. The half that needs
// the layers' bytes (fetching blobs and hashing their uncompressed contents into diffIDs) lives
// in berth/pull/schema1_converter.h.
//
// A schema1 manifest looks like
//
//   {"schemaVersion": 1, "name": "library/x", "tag": "latest", "architecture": "amd64",
//    "fsLayers": [{"blobSum": "sha256:…"}, …],               newest first
//    "history": [{"v1Compatibility": "<a JSON object, as a string>"}, …],   newest first, 1:1
//    "signatures": [ … ]}                                        JWS (libtrust), optional
//
// fsLayers[i] and history[i] describe the same step. history[0].v1Compatibility is the newest
// v1 image JSON, which is close to a schema2 config: the conversion keeps it, drops the v1
// bookkeeping fields (id, parent, Size, parent_id, layer_id, throwaway) and adds rootfs and
// history. A step whose v1Compatibility says "throwaway": true (or, lacking that, "Size": 0,
// as containerd reads it) made no filesystem change: its blob is neither fetched nor listed in
// rootfs, and its history entry gets "empty_layer": true.
//
// Signatures are not verified (neither does containerd: a schema1 image is identified by the
// generated config, and no repo digest is recorded for it).
//
// Limits (hostile input): the manifest is at most kMaxManifestBytes, nests at most
// kMaxJsonDepth (each v1Compatibility document too), and lists at most kMaxLayers fsLayers.
//
// Thread safety: pure functions over value types.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "berth/image/descriptor.h"

namespace berth::image {

// One step of a schema1 image: an fsLayers entry and the history entry beside it.
struct Schema1Layer {
  Digest blob_sum = Digest::Sha256Of("");  // the layer blob (gzip tar)
  std::string v1_compatibility;            // the step's v1 image JSON, as served
  // The step made no filesystem change ("throwaway": true, or "Size": 0 without "throwaway"):
  // its blob is not part of the image.
  bool empty = false;
  // From v1_compatibility, for the converted config's history.
  std::string created;     // "created", as written (RFC 3339); empty when absent
  std::string created_by;  // container_config.Cmd joined by spaces
  std::string author;
  std::string comment;

  friend bool operator==(const Schema1Layer&, const Schema1Layer&) = default;
};

struct Schema1Manifest {
  std::string name;
  std::string tag;
  std::string architecture;
  // Oldest (base) layer first: the reverse of the document's fsLayers/history order.
  std::vector<Schema1Layer> layers;
  bool has_signatures = false;  // a non-empty "signatures" array was present (not verified)
};

// Decodes a schema1 manifest, signed (prettyjws) or not. kInvalidArgument when malformed (not
// schemaVersion 1, no fsLayers, fsLayers and history of different lengths, a blobSum that is
// not a digest, a v1Compatibility that is not a JSON object); kResourceExhausted over the limits.
Result<Schema1Manifest> ParseSchema1Manifest(std::string_view document);

// The payload a signed (libtrust "prettyjws") schema1 manifest's digest covers: the document
// without its signatures, rebuilt from the first signature's protected header as the first
// `formatLength` bytes of `document` followed by base64url-decoded `formatTail`. Registries name
// signed schema1 manifests by the digest of this payload. kInvalidArgument when the document has
// no signature or the protected header does not describe a prefix of it.
Result<std::string> Schema1SignedPayload(std::string_view document);

// The non-empty layers of `manifest`, oldest first: the ones a converted image consists of (a
// blob may appear more than once, as in the original).
std::vector<const Schema1Layer*> NonEmptyLayers(const Schema1Manifest& manifest);

// Builds the Docker image config (application/vnd.docker.container.image.v1+json) of the
// converted image from the newest v1Compatibility: that object minus id, parent, Size,
// parent_id, layer_id and throwaway, with "architecture" taken from the manifest when the
// object has none, plus
//   "rootfs": {"type": "layers", "diff_ids": diff_ids}
//   "history": [{created, created_by, author, comment, empty_layer}, …]  oldest first
// `diff_ids` are the uncompressed digests of NonEmptyLayers(manifest), in that order. The JSON
// is compact with sorted keys, so the same input always gives the same config digest (the
// image ID). kInvalidArgument if the number of diff_ids does not match.
Result<std::string> BuildSchema1Config(const Schema1Manifest& manifest,
                                       std::span<const Digest> diff_ids);

// Builds the Docker schema2 manifest (application/vnd.docker.distribution.manifest.v2+json)
// naming `config` and `layers` (oldest first). Compact JSON with sorted keys.
std::string BuildDockerManifest(const Descriptor& config, std::span<const Descriptor> layers);

}  // namespace berth::image
