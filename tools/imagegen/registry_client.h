// File: tools/imagegen/registry_client.h
//
// RegistryClient speaks the OCI distribution HTTP API (libcurl) to push images the generator
// built and to read them back. It is a test and tool client, deliberately independent of
// berth/registry, so a round trip through it checks berth's own code against a second
// implementation.
//
// What it does:
//   - blobs: existence check (HEAD), monolithic upload (POST, then PUT <Location>&digest=),
//     streamed upload from a file (POST, PATCH chunks read from disk by curl's read callback,
//     PUT to finish: memory use does not depend on the blob's size), cross-repository mount,
//     download with digest verification (to memory or streamed to a ByteSink);
//   - manifests: PUT by tag or digest with its Content-Type, GET with an Accept list;
//   - auth: on a 401 it reads WWW-Authenticate. `Basic` → sends the configured credentials
//     from then on. `Bearer realm=…,service=…` → gets a token from the realm (GET
//     ?service=…&scope=repository:<name>:<actions>, with Basic credentials if configured) and
//     retries with it; tokens are cached per scope;
//   - TLS: a CA file, a client certificate and key, or no verification at all.
//
// Credentials never appear in errors or logs: the password is a Secret, and tokens are held as
// Secrets too. Location URLs (which may carry upload state) are redacted by Error.
//
// Every call blocks on the network. Thread safety: one thread at a time (one curl handle, whose
// connections are reused across calls).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/redact.h"
#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "tools/imagegen/byte_sink.h"

namespace berth::imagegen {

enum class TlsVerification {
  kVerify,  // Check the server certificate against the system store or `ca_file`.
  kSkip,    // Accept any certificate ("insecure").
};

struct RegistryClientOptions {
  // Scheme, host and port: "http://127.0.0.1:5000", "https://registry.example.com".
  std::string base_url;
  // PEM CA bundle to trust instead of the system store; empty = system store.
  std::filesystem::path ca_file;
  // PEM client certificate and key for registries that require mutual TLS.
  std::filesystem::path client_certificate_file;
  std::filesystem::path client_key_file;
  TlsVerification tls_verification = TlsVerification::kVerify;
  // Credentials for Basic auth and for token requests; empty username = anonymous.
  std::string username;
  Secret password;
  // Per-request limit on the whole exchange.
  long timeout_seconds = 600;
  // File uploads send PATCH requests of at most this many bytes; 0 = one PATCH for the file.
  uint64_t upload_chunk_bytes = 0;
};

// Resolves a Location header against the URL of the request that returned it: absolute URLs
// stay, "/path" keeps the request's scheme and host, anything else is relative to the
// request's directory.
std::string ResolveLocation(std::string_view request_url, std::string_view location);

// Appends "key=value" (value URL-encoded) with '?' or '&' as `url` needs.
std::string AppendQuery(std::string_view url, std::string_view key, std::string_view value);

struct FetchedManifest {
  std::string media_type;  // The response's Content-Type.
  std::string bytes;
  Digest digest = Digest::Sha256Of("");  // sha256 of `bytes`.
};

class RegistryClient {
 public:
  // kInvalidArgument if base_url is not http(s)://; kInternal if curl cannot start.
  // Does not touch the network.
  static Result<std::unique_ptr<RegistryClient>> Create(RegistryClientOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // Errors common to every call: kUnavailable (connection failed, 5xx), kDeadlineExceeded,
  // kUnauthenticated (401 after auth), kPermissionDenied (403), kNotFound (404, with the
  // registry's error code), kResourceExhausted (429), kInternal (TLS setup, other statuses).

  // HEAD /v2/<repository>/blobs/<digest>: true if the registry has the blob.
  Result<bool> BlobExists(std::string_view repository, const Digest& digest);

  // Uploads `bytes` in one PUT. kDataLoss if the registry reports a different digest.
  Result<void> PushBlob(std::string_view repository, const Digest& digest, std::string_view bytes);

  // Uploads the file at `path`, streaming it from disk in PATCH requests (see
  // upload_chunk_bytes). The file must not change during the upload.
  Result<void> PushBlobFile(std::string_view repository, const Digest& digest,
                            const std::filesystem::path& path);

  // Asks the registry to mount `digest` from `from_repository`. True if it did (201); false
  // if it started an ordinary upload instead (202), which this call then cancels.
  Result<bool> MountBlob(std::string_view repository, const Digest& digest,
                         std::string_view from_repository);

  // PUT /v2/<repository>/manifests/<reference> (a tag or a digest) with Content-Type
  // `media_type`. Returns the manifest's digest; kDataLoss if the registry reports another.
  Result<Digest> PutManifest(std::string_view repository, std::string_view reference,
                             std::string_view media_type, std::string_view bytes);

  // GET /v2/<repository>/manifests/<reference>, accepting `accept` (every OCI and Docker
  // manifest and index type when empty). If `reference` is a digest, kDataLoss unless the
  // bytes match it; a Docker-Content-Digest header is checked too.
  Result<FetchedManifest> GetManifest(std::string_view repository, std::string_view reference,
                                      std::span<const std::string_view> accept = {});

  // Downloads a blob into memory and verifies it. kResourceExhausted above `max_bytes`,
  // kDataLoss if its digest differs.
  Result<std::string> GetBlob(std::string_view repository, const Digest& digest,
                              uint64_t max_bytes = 64 << 20);

  // Streams a blob into `out` (finished on success) and returns its size. `out` sees the bytes
  // before they are verified: on kDataLoss, discard what it received.
  Result<uint64_t> GetBlob(std::string_view repository, const Digest& digest, ByteSink& out);

  const RegistryClientOptions& options() const { return options_; }

 private:
  struct Request;
  struct Response;
  class Impl;

  explicit RegistryClient(RegistryClientOptions options);
  // Sends `request`, answering one auth challenge if the registry raises one.
  Result<Response> Send(const Request& request);
  Result<Response> Perform(const Request& request, const std::string* authorization);
  Result<void> Authorize(const Request& request, const Response& challenge_response);
  Result<std::string> StartUpload(std::string_view repository);
  std::string RepositoryUrl(std::string_view repository) const;

  RegistryClientOptions options_;
  std::unique_ptr<Impl> impl_;
  // After a Basic challenge, credentials go with every request.
  bool send_basic_ = false;
  // Bearer tokens by scope ("repository:<name>:pull,push").
  std::map<std::string, Secret> tokens_;
};

}  // namespace berth::imagegen
