// File: tools/imagegen/schema1.h
//
// Builds Docker image manifest v2 schema 1 documents (the legacy format), unsigned or signed
// the way Docker and Distribution sign them: libtrust's "pretty signature", a JWS (ES256 with an
// ECDSA P-256 key) embedded in the manifest itself as a "signatures" array. For tests of
// berth's schema1 conversion against a real registry, which verifies the signature on PUT
// (media type application/vnd.docker.distribution.manifest.v1+prettyjws).
//
//   BERTH_ASSIGN_OR_RETURN(std::string manifest, BuildSchema1Manifest(spec));
//   BERTH_ASSIGN_OR_RETURN(Schema1Signer signer, Schema1Signer::Generate());
//   BERTH_ASSIGN_OR_RETURN(std::string signed_manifest, signer.Sign(manifest));
//   client.PutManifest("demo", "v1", kSchema1SignedMediaType, signed_manifest);
//
// The signed payload is the manifest without its signatures: the first `formatLength` bytes of
// the signed document followed by `formatTail`, both carried in each signature's protected
// header ({"formatLength": N, "formatTail": b64url(tail), "time": RFC 3339}). The signature
// covers b64url(protected) + "." + b64url(payload) and is the raw r||s pair (64 bytes).
//
// Thread safety: value types and pure functions; a Schema1Signer may be shared for signing.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/digest/digest.h"

namespace berth::imagegen {

inline constexpr std::string_view kSchema1MediaType =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view kSchema1SignedMediaType =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

// One build step of a schema1 image.
struct Schema1Step {
  // The step's layer blob (a gzip tar). Docker gave throwaway steps the empty gzip tar; the
  // blob must exist in the registry whatever the step is, because Distribution checks.
  Digest blob_sum = Digest::Sha256Of("");
  // Becomes container_config.Cmd = ["/bin/sh", "-c", created_by] (empty: no Cmd).
  std::string created_by;
  std::string created = "1970-01-01T00:00:00Z";
  std::string author;
  std::string comment;
  // The step changed no files ("throwaway": true in its v1Compatibility).
  bool throwaway = false;
};

struct Schema1Spec {
  std::string name = "demo";  // repository name, as in the manifest's "name"
  std::string tag = "latest";
  std::string architecture = "amd64";
  std::string os = "linux";
  // The runtime config, written into the newest step's v1Compatibility "config".
  std::vector<std::string> env;
  std::vector<std::string> cmd;
  std::string working_dir;
  // Oldest first (the document lists them newest first).
  std::vector<Schema1Step> steps;
};

// The unsigned manifest for `spec`, laid out as Docker wrote them (3-space indentation, fields
// in Docker's order, v1 ids chained through "parent"). kInvalidArgument without steps.
Result<std::string> BuildSchema1Manifest(const Schema1Spec& spec);

// An ECDSA P-256 key that signs schema1 manifests as libtrust does.
class Schema1Signer {
 public:
  // A fresh key from OpenSSL. kInternal if OpenSSL fails.
  static Result<Schema1Signer> Generate();
  ~Schema1Signer();
  Schema1Signer(Schema1Signer&&) noexcept;
  Schema1Signer& operator=(Schema1Signer&&) noexcept;

  // libtrust's key ID: the SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32
  // without padding, in 12 groups of 4 joined by ':'.
  const std::string& key_id() const { return key_id_; }

  // `manifest` (an unsigned JSON object, e.g. from BuildSchema1Manifest) with a "signatures"
  // array holding one signature by this key, made at `time` (RFC 3339). kInvalidArgument if
  // `manifest` is not a JSON object ending in '}'; kInternal if OpenSSL fails.
  Result<std::string> Sign(std::string_view manifest,
                           std::string_view time = "2016-01-01T00:00:00Z") const;

 private:
  struct Key;
  explicit Schema1Signer(std::unique_ptr<Key> key, std::string key_id);

  std::unique_ptr<Key> key_;
  std::string key_id_;
};

}  // namespace berth::imagegen
