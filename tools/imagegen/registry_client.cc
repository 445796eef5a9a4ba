#include "tools/imagegen/registry_client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "berth/base/base64.h"
#include "berth/base/c_handle.h"
#include "berth/base/unique_fd.h"
#include "berth/image/media_types.h"
#include "tools/imagegen/http_parse.h"

namespace berth::imagegen {
namespace {

using UniqueCurl = UniqueHandle<CURL, curl_easy_cleanup>;
using UniqueSlist = UniqueHandle<curl_slist, curl_slist_free_all>;

// Bodies of error responses and token responses are kept up to this size.
constexpr uint64_t kMaxSmallBody = 1 << 20;

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

// The registry's own explanation, from a distribution error body
// ({"errors":[{"code":"BLOB_UNKNOWN","message":"…"}]}), or the start of any other body.
std::string DescribeBody(std::string_view body) {
  auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_discarded() && json.is_object() && json.contains("errors") &&
      json["errors"].is_array()) {
    std::string out;
    for (const auto& error : json["errors"]) {
      if (!error.is_object()) continue;
      if (!out.empty()) out += "; ";
      out += error.value("code", "?");
      std::string message = error.value("message", "");
      if (!message.empty()) out += ": " + message;
    }
    return out;
  }
  std::string text(Trim(body.substr(0, 200)));
  return text;
}

ErrorCode CodeForStatus(long status) {
  switch (status) {
    case 400:
      return ErrorCode::kInvalidArgument;
    case 401:
      return ErrorCode::kUnauthenticated;
    case 403:
      return ErrorCode::kPermissionDenied;
    case 404:
      return ErrorCode::kNotFound;
    case 408:
      return ErrorCode::kDeadlineExceeded;
    case 409:
      return ErrorCode::kAlreadyExists;
    case 416:
      return ErrorCode::kOutOfRange;
    case 429:
      return ErrorCode::kResourceExhausted;
    default:
      return status >= 500 ? ErrorCode::kUnavailable : ErrorCode::kInternal;
  }
}

ErrorCode CodeForCurl(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return ErrorCode::kDeadlineExceeded;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
      return ErrorCode::kUnavailable;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kInternal;
  }
}

// A sink that keeps at most `limit` bytes in a string.
class BoundedStringSink final : public ByteSink {
 public:
  BoundedStringSink(std::string* out, uint64_t limit) : out_(out), limit_(limit) {}
  Result<void> Write(std::string_view data) override {
    if (out_->size() + data.size() > limit_) {
      return Fail(ErrorCode::kResourceExhausted,
                  fmt::format("blob is larger than the {} bytes allowed in memory; stream it "
                              "to a ByteSink instead",
                              limit_));
    }
    out_->append(data);
    return Ok();
  }

 private:
  std::string* out_;
  uint64_t limit_;
};

std::once_flag curl_init_once;

}  // namespace

std::string ResolveLocation(std::string_view request_url, std::string_view location) {
  std::optional<ParsedUrl> base = ParseHttpUrl(request_url);
  if (!base) return std::string(location);
  std::optional<ParsedUrl> resolved = ResolveReference(*base, location);
  return resolved ? resolved->ToString() : std::string(location);
}

std::string AppendQuery(std::string_view url, std::string_view key, std::string_view value) {
  char separator = url.find('?') == std::string_view::npos ? '?' : '&';
  return fmt::format("{}{}{}={}", url, separator, key, PercentEncode(value));
}

struct RegistryClient::Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  // Body from memory…
  std::string_view body;
  // …or from a file: `body_length` bytes at `body_offset` of `body_fd`.
  int body_fd = -1;
  uint64_t body_offset = 0;
  uint64_t body_length = 0;
  // Where a 2xx response body goes; null keeps it in Response::body (up to kMaxSmallBody).
  ByteSink* sink = nullptr;
  // Auth scopes the request needs ("repository:<name>:pull").
  std::vector<std::string> scopes;
  bool follow_redirects = false;
};

struct RegistryClient::Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // Lowercase names.
  std::string body;

  std::string Header(std::string_view name) const {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? std::string() : it->second;
  }
};

class RegistryClient::Impl {
 public:
  UniqueCurl curl;
};

namespace {

// Per-transfer state for curl's callbacks.
struct Transfer {
  ByteSink* sink = nullptr;
  long status = 0;
  std::map<std::string, std::string>* headers = nullptr;
  std::string* body = nullptr;
  bool body_too_large = false;
  std::optional<Error> sink_error;
  // Upload source.
  std::string_view memory_body;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t sent = 0;
  std::optional<Error> read_error;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.substr(0, 5) == "HTTP/") {
    // A new response (after a redirect or 100 Continue): start over.
    transfer->headers->clear();
    size_t space = line.find(' ');
    transfer->status =
        space == std::string_view::npos
            ? 0
            : std::strtol(std::string(line.substr(space + 1, 3)).c_str(), nullptr, 10);
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    (*transfer->headers)[Lowercase(Trim(line.substr(0, colon)))] =
        std::string(Trim(line.substr(colon + 1)));
  }
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::string_view chunk(data, size * count);
  if (transfer->sink != nullptr && transfer->status >= 200 && transfer->status < 300) {
    Result<void> written = transfer->sink->Write(chunk);
    if (!written) {
      transfer->sink_error = std::move(written).error();
      return 0;  // Aborts the transfer with CURLE_WRITE_ERROR.
    }
    return chunk.size();
  }
  if (transfer->body->size() + chunk.size() > kMaxSmallBody) {
    transfer->body_too_large = true;
    return 0;
  }
  transfer->body->append(chunk);
  return chunk.size();
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  uint64_t want = std::min<uint64_t>(size * count, transfer->length - transfer->sent);
  if (want == 0) return 0;
  if (transfer->fd < 0) {
    std::memcpy(buffer, transfer->memory_body.data() + transfer->sent, want);
    transfer->sent += want;
    return want;
  }
  while (true) {
    ssize_t got =
        ::pread(transfer->fd, buffer, want, static_cast<off_t>(transfer->offset + transfer->sent));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      transfer->read_error =
          got < 0 ? ErrnoError(errno, "read upload body")
                  : Error(ErrorCode::kAborted, "upload file shrank while it was sent");
      return CURL_READFUNC_ABORT;
    }
    transfer->sent += static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
}

// curl rewinds the body when it must resend it (e.g. after a redirect).
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* transfer = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > transfer->length) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  transfer->sent = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

}  // namespace

RegistryClient::RegistryClient(RegistryClientOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

RegistryClient::~RegistryClient() = default;

Result<std::unique_ptr<RegistryClient>> RegistryClient::Create(RegistryClientOptions options) {
  std::string_view url = options.base_url;
  if (url.substr(0, 7) != "http://" && url.substr(0, 8) != "https://") {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("registry base URL {:?} must start with http:// or https://", url));
  }
  while (!options.base_url.empty() && options.base_url.back() == '/') options.base_url.pop_back();
  std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<RegistryClient> client(new RegistryClient(std::move(options)));
  client->impl_->curl.reset(curl_easy_init());
  if (client->impl_->curl == nullptr) return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  return client;
}

std::string RegistryClient::RepositoryUrl(std::string_view repository) const {
  return fmt::format("{}/v2/{}", options_.base_url, repository);
}

Result<RegistryClient::Response> RegistryClient::Perform(const Request& request,
                                                         const std::string* authorization) {
  CURL* curl = impl_->curl.get();
  curl_easy_reset(curl);  // Keeps the connection cache.
  Response response;
  Transfer transfer;
  transfer.sink = request.sink;
  transfer.headers = &response.headers;
  transfer.body = &response.body;
  transfer.memory_body = request.body;
  transfer.fd = request.body_fd;
  transfer.offset = request.body_offset;
  transfer.length = request.body_fd >= 0 ? request.body_length : request.body.size();

  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, options_.timeout_seconds);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  if (request.follow_redirects) {
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  }
  if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.client_certificate_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, options_.client_certificate_file.c_str());
  }
  if (!options_.client_key_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLKEY, options_.client_key_file.c_str());
  }
  if (options_.tls_verification == TlsVerification::kSkip) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }

  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data() ? request.body.data() : "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  } else if (request.method == "PUT" || request.method == "PATCH") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(transfer.length));
    if (request.method == "PATCH") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PATCH");
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  UniqueSlist headers;
  auto add_header = [&](const std::string& header) {
    curl_slist* list = curl_slist_append(headers.get(), header.c_str());
    if (list != nullptr) {
      (void)headers.release();
      headers.reset(list);
    }
  };
  // Registries answer at once; waiting for "100 Continue" only adds a round trip.
  add_header("Expect:");
  for (const std::string& header : request.headers) add_header(header);
  if (authorization != nullptr) add_header("Authorization: " + *authorization);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());

  CURLcode code = curl_easy_perform(curl);
  // The Authorization header text holds a credential; wipe the list's copy before freeing.
  for (curl_slist* item = headers.get(); item != nullptr; item = item->next) {
    std::string_view header(item->data);
    if (header.substr(0, 14) == "Authorization:") {
      std::fill(item->data, item->data + header.size(), '\0');
    }
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);

  std::string what = fmt::format("{} {}", request.method, request.url);
  if (transfer.sink_error) return Fail(std::move(*transfer.sink_error).WithContext(what));
  if (transfer.read_error) return Fail(std::move(*transfer.read_error).WithContext(what));
  if (transfer.body_too_large) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("{}: response body larger than {} bytes", what, kMaxSmallBody));
  }
  if (code != CURLE_OK) {
    return Fail(CodeForCurl(code),
                fmt::format("{}: {}", what,
                            error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code)));
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

Result<RegistryClient::Response> RegistryClient::Send(const Request& request) {
  for (int attempt = 0;; ++attempt) {
    std::string authorization;
    std::string scope_key = fmt::format("{}", fmt::join(request.scopes, " "));
    if (auto it = tokens_.find(scope_key); it != tokens_.end()) {
      authorization = "Bearer " + it->second.reveal();
    } else if (send_basic_ && !options_.username.empty()) {
      authorization = "Basic " + Base64Encode(options_.username + ":" + options_.password.reveal());
    }
    BERTH_ASSIGN_OR_RETURN(Response response,
                           Perform(request, authorization.empty() ? nullptr : &authorization));
    std::fill(authorization.begin(), authorization.end(), '\0');
    if (response.status != 401 || attempt > 0) return response;
    BERTH_RETURN_IF_ERROR(Authorize(request, response));
  }
}

Result<void> RegistryClient::Authorize(const Request& request, const Response& response) {
  std::string header = response.Header("www-authenticate");
  std::string what = fmt::format("{} {}", request.method, request.url);
  if (header.empty()) {
    return Fail(ErrorCode::kUnauthenticated,
                fmt::format("{}: 401 without a WWW-Authenticate challenge", what));
  }
  std::optional<std::vector<AuthChallenge>> challenges = ParseAuthChallenges(header);
  if (!challenges) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: malformed WWW-Authenticate challenge", what));
  }
  const AuthChallenge* bearer = nullptr;
  const AuthChallenge* basic = nullptr;
  for (const AuthChallenge& challenge : *challenges) {
    if (challenge.scheme == "bearer" && bearer == nullptr) bearer = &challenge;
    if (challenge.scheme == "basic" && basic == nullptr) basic = &challenge;
  }

  if (bearer != nullptr) {
    auto realm = bearer->params.find("realm");
    if (realm == bearer->params.end() || realm->second.empty()) {
      return Fail(ErrorCode::kUnauthenticated,
                  fmt::format("{}: Bearer challenge without a realm", what));
    }
    std::string url = realm->second;
    if (auto service = bearer->params.find("service"); service != bearer->params.end()) {
      url = AppendQuery(url, "service", service->second);
    }
    std::vector<std::string> scopes = request.scopes;
    if (scopes.empty()) {
      if (auto scope = bearer->params.find("scope"); scope != bearer->params.end()) {
        scopes.push_back(scope->second);
      }
    }
    for (const std::string& scope : scopes) url = AppendQuery(url, "scope", scope);

    Request token_request{.method = "GET", .url = url, .follow_redirects = true};
    std::string basic_authorization;
    if (!options_.username.empty()) {
      basic_authorization =
          "Basic " + Base64Encode(options_.username + ":" + options_.password.reveal());
    }
    Result<Response> token_response =
        Perform(token_request, basic_authorization.empty() ? nullptr : &basic_authorization);
    std::fill(basic_authorization.begin(), basic_authorization.end(), '\0');
    if (!token_response) return Fail(std::move(token_response).error().WithContext(what));
    if (token_response->status != 200) {
      return Fail(token_response->status == 401 || token_response->status == 403
                      ? ErrorCode::kUnauthenticated
                      : CodeForStatus(token_response->status),
                  fmt::format("{}: token server {} answered HTTP {} for user {:?}: {}", what,
                              realm->second, token_response->status, options_.username,
                              DescribeBody(token_response->body)));
    }
    auto json = nlohmann::json::parse(token_response->body, nullptr, false);
    std::string token;
    if (!json.is_discarded() && json.is_object()) {
      if (json.contains("token") && json["token"].is_string()) {
        token = json["token"].get<std::string>();
      } else if (json.contains("access_token") && json["access_token"].is_string()) {
        token = json["access_token"].get<std::string>();
      }
    }
    if (token.empty()) {
      return Fail(ErrorCode::kUnauthenticated,
                  fmt::format("{}: token server {} returned no token", what, realm->second));
    }
    tokens_[fmt::format("{}", fmt::join(request.scopes, " "))] = Secret(std::move(token));
    return Ok();
  }

  if (basic != nullptr) {
    if (options_.username.empty()) {
      return Fail(ErrorCode::kUnauthenticated,
                  fmt::format("{}: the registry requires Basic credentials; set "
                              "RegistryClientOptions.username and password",
                              what));
    }
    if (send_basic_) {
      return Fail(ErrorCode::kUnauthenticated,
                  fmt::format("{}: the registry rejected the credentials of user {:?}", what,
                              options_.username));
    }
    send_basic_ = true;
    return Ok();
  }
  return Fail(ErrorCode::kUnimplemented,
              fmt::format("{}: no supported auth scheme in the challenge", what));
}

namespace {

Error StatusError(std::string_view method, std::string_view url, long status,
                  std::string_view body) {
  std::string detail = DescribeBody(body);
  return Error(CodeForStatus(status), fmt::format("{} {}: HTTP {}{}{}", method, url, status,
                                                  detail.empty() ? "" : ": ", detail));
}

std::string PullScope(std::string_view repository) {
  return fmt::format("repository:{}:pull", repository);
}
std::string PushScope(std::string_view repository) {
  return fmt::format("repository:{}:pull,push", repository);
}

// Checks a Docker-Content-Digest header against the digest we expect, when there is one.
Result<void> CheckDigestHeader(const std::string& header, const Digest& expected,
                               std::string_view what) {
  if (header.empty()) return Ok();
  if (header != expected.ToString()) {
    return Fail(ErrorCode::kDataLoss,
                fmt::format("{}: registry reports digest {}, expected {}", what, header, expected));
  }
  return Ok();
}

}  // namespace

Result<bool> RegistryClient::BlobExists(std::string_view repository, const Digest& digest) {
  Request request{.method = "HEAD",
                  .url = fmt::format("{}/blobs/{}", RepositoryUrl(repository), digest),
                  .scopes = {PullScope(repository)},
                  .follow_redirects = true};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status == 200) return true;
  if (response.status == 404) return false;
  return Fail(StatusError(request.method, request.url, response.status, response.body));
}

Result<std::string> RegistryClient::StartUpload(std::string_view repository) {
  Request request{.method = "POST",
                  .url = fmt::format("{}/blobs/uploads/", RepositoryUrl(repository)),
                  .scopes = {PushScope(repository)}};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status != 202) {
    return Fail(StatusError(request.method, request.url, response.status, response.body));
  }
  std::string location = response.Header("location");
  if (location.empty()) {
    return Fail(ErrorCode::kInternal,
                fmt::format("POST {}: 202 without a Location header", request.url));
  }
  return ResolveLocation(request.url, location);
}

Result<void> RegistryClient::PushBlob(std::string_view repository, const Digest& digest,
                                      std::string_view bytes) {
  BERTH_ASSIGN_OR_RETURN(std::string location, StartUpload(repository));
  Request request{.method = "PUT",
                  .url = AppendQuery(location, "digest", digest.ToString()),
                  .headers = {"Content-Type: application/octet-stream"},
                  .body = bytes,
                  .scopes = {PushScope(repository)}};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status != 201) {
    return Fail(StatusError(request.method, request.url, response.status, response.body));
  }
  return CheckDigestHeader(response.Header("docker-content-digest"), digest,
                           fmt::format("push blob {}", digest));
}

Result<void> RegistryClient::PushBlobFile(std::string_view repository, const Digest& digest,
                                          const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail(ErrnoError(errno, "open blob file " + path.string()));
  struct stat info;
  if (::fstat(fd.get(), &info) != 0) return Fail(ErrnoError(errno, "stat " + path.string()));
  uint64_t size = static_cast<uint64_t>(info.st_size);

  BERTH_ASSIGN_OR_RETURN(std::string location, StartUpload(repository));
  uint64_t chunk = options_.upload_chunk_bytes == 0 ? size : options_.upload_chunk_bytes;
  for (uint64_t offset = 0; offset < size;) {
    uint64_t length = std::min(chunk, size - offset);
    Request request{.method = "PATCH",
                    .url = location,
                    .headers = {"Content-Type: application/octet-stream",
                                fmt::format("Content-Range: {}-{}", offset, offset + length - 1)},
                    .body_fd = fd.get(),
                    .body_offset = offset,
                    .body_length = length,
                    .scopes = {PushScope(repository)}};
    BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
    if (response.status != 202) {
      return Fail(StatusError(request.method, request.url, response.status, response.body));
    }
    std::string next = response.Header("location");
    if (!next.empty()) location = ResolveLocation(request.url, next);
    offset += length;
  }
  Request finish{.method = "PUT",
                 .url = AppendQuery(location, "digest", digest.ToString()),
                 .headers = {"Content-Type: application/octet-stream"},
                 .scopes = {PushScope(repository)}};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(finish));
  if (response.status != 201) {
    return Fail(StatusError(finish.method, finish.url, response.status, response.body));
  }
  return CheckDigestHeader(response.Header("docker-content-digest"), digest,
                           fmt::format("push blob {}", digest));
}

Result<bool> RegistryClient::MountBlob(std::string_view repository, const Digest& digest,
                                       std::string_view from_repository) {
  std::string url = fmt::format("{}/blobs/uploads/", RepositoryUrl(repository));
  url = AppendQuery(url, "mount", digest.ToString());
  url = AppendQuery(url, "from", from_repository);
  Request request{
      .method = "POST", .url = url, .scopes = {PushScope(repository), PullScope(from_repository)}};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status == 201) return true;
  if (response.status == 202) {
    // The registry opened an ordinary upload session instead; close it, best effort.
    std::string location = response.Header("location");
    if (!location.empty()) {
      Request cancel{.method = "DELETE",
                     .url = ResolveLocation(request.url, location),
                     .scopes = request.scopes};
      (void)Send(cancel);
    }
    return false;
  }
  return Fail(StatusError(request.method, request.url, response.status, response.body));
}

Result<Digest> RegistryClient::PutManifest(std::string_view repository, std::string_view reference,
                                           std::string_view media_type, std::string_view bytes) {
  Digest digest = Digest::Sha256Of(bytes);
  Request request{.method = "PUT",
                  .url = fmt::format("{}/manifests/{}", RepositoryUrl(repository), reference),
                  .headers = {fmt::format("Content-Type: {}", media_type)},
                  .body = bytes,
                  .scopes = {PushScope(repository)}};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status != 201) {
    return Fail(StatusError(request.method, request.url, response.status, response.body));
  }
  BERTH_RETURN_IF_ERROR(CheckDigestHeader(response.Header("docker-content-digest"), digest,
                                          fmt::format("put manifest {}", reference)));
  return digest;
}

Result<FetchedManifest> RegistryClient::GetManifest(std::string_view repository,
                                                    std::string_view reference,
                                                    std::span<const std::string_view> accept) {
  static constexpr std::string_view kAllManifestTypes[] = {
      media_types::kOciIndex, media_types::kOciManifest, media_types::kDockerManifestList,
      media_types::kDockerManifest};
  if (accept.empty()) accept = kAllManifestTypes;
  Request request{.method = "GET",
                  .url = fmt::format("{}/manifests/{}", RepositoryUrl(repository), reference),
                  .headers = {fmt::format("Accept: {}", fmt::join(accept, ", "))},
                  .scopes = {PullScope(repository)},
                  .follow_redirects = true};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status != 200) {
    return Fail(StatusError(request.method, request.url, response.status, response.body));
  }
  FetchedManifest manifest;
  manifest.media_type = response.Header("content-type");
  manifest.digest = Digest::Sha256Of(response.body);
  manifest.bytes = std::move(response.body);
  std::string what = fmt::format("get manifest {}", reference);
  if (Result<Digest> pinned = Digest::Parse(reference); pinned) {
    if (*pinned != manifest.digest) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("{}: content has digest {}", what, manifest.digest));
    }
  }
  BERTH_RETURN_IF_ERROR(
      CheckDigestHeader(response.Header("docker-content-digest"), manifest.digest, what));
  return manifest;
}

Result<uint64_t> RegistryClient::GetBlob(std::string_view repository, const Digest& digest,
                                         ByteSink& out) {
  if (digest.algorithm() != DigestAlgorithm::kSha256) {
    return Fail(ErrorCode::kUnimplemented,
                fmt::format("blob {}: only sha256 blobs can be verified", digest));
  }
  HashingSink hashing(out);
  Request request{.method = "GET",
                  .url = fmt::format("{}/blobs/{}", RepositoryUrl(repository), digest),
                  .sink = &hashing,
                  .scopes = {PullScope(repository)},
                  .follow_redirects = true};
  BERTH_ASSIGN_OR_RETURN(Response response, Send(request));
  if (response.status != 200) {
    return Fail(StatusError(request.method, request.url, response.status, response.body));
  }
  BERTH_RETURN_IF_ERROR(hashing.Finish());
  if (hashing.digest() != digest) {
    return Fail(ErrorCode::kDataLoss, fmt::format("blob {}: downloaded {} bytes with digest {}",
                                                  digest, hashing.size(), hashing.digest()));
  }
  return hashing.size();
}

Result<std::string> RegistryClient::GetBlob(std::string_view repository, const Digest& digest,
                                            uint64_t max_bytes) {
  std::string bytes;
  BoundedStringSink sink(&bytes, max_bytes);
  BERTH_RETURN_IF_ERROR(GetBlob(repository, digest, sink));
  return bytes;
}

}  // namespace berth::imagegen
