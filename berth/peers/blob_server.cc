#include "berth/peers/blob_server.h"

#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <nlohmann/json.hpp>
#include <variant>
#include <vector>

#include "berth/base/log.h"
#include "berth/base/tcp_listen.h"
#include "berth/image/manifest.h"
#include "berth/reference/reference.h"
#include "berth/registry/client.h"

namespace berth::peers {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version: registry/2.0\r\n";

std::string_view Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return "Status";
}

// A response head: status line, `fields` (each ending in CRLF), the API version, Connection.
std::string ResponseHead(int status, std::string_view fields, bool keep_alive) {
  return fmt::format("HTTP/1.1 {} {}\r\n{}{}Connection: {}\r\n\r\n", status, Reason(status), fields,
                     kApiVersionHeader, keep_alive ? "keep-alive" : "close");
}

// The distribution spec's error body: {"errors":[{"code":…,"message":…,"detail":{}}]}.
std::string ErrorBody(std::string_view code, std::string_view message) {
  json body = {{"errors", json::array({{{"code", std::string(code)},
                                        {"message", std::string(message)},
                                        {"detail", json::object()}}})}};
  return body.dump();
}

// Reads all `size` bytes of `fd` from offset 0 (a manifest, bounded by the caller).
Result<std::string> ReadWhole(int fd, int64_t size) {
  std::string bytes(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got =
        ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Fail(ErrnoError(errno, "peers: read manifest"));
    if (got == 0) return Fail(ErrorCode::kDataLoss, "peers: the manifest ended early");
    done += static_cast<size_t>(got);
  }
  return bytes;
}

// What a request's path asks for.
struct Route {
  RequestKind kind = RequestKind::kOther;
  // Set for content (a blob or a manifest by digest); else, unless `probe`, the refusal: its
  // HTTP status, the distribution error code and message.
  std::optional<Digest> digest;
  std::string name;  // the repository, with a digest
  int status = 0;
  std::string code;
  std::string message;
  bool probe = false;  // /v2/
};

Route Refuse(RequestKind kind, int status, std::string_view code, std::string message) {
  return {.kind = kind, .status = status, .code = std::string(code), .message = std::move(message)};
}

// Splits /v2/<name>/<blobs|manifests>/<reference> and checks each part.
Route RouteOf(std::string_view path) {
  if (path == "/v2" || path == "/v2/") return {.probe = true};
  constexpr std::string_view kUnsupported =
      "this peer endpoint serves only /v2/<name>/blobs/<digest> and "
      "/v2/<name>/manifests/<digest>";
  if (!path.starts_with("/v2/")) {
    return Refuse(RequestKind::kOther, 404, "UNSUPPORTED", std::string(kUnsupported));
  }
  const std::string_view rest = path.substr(4);
  const size_t last_slash = rest.rfind('/');
  if (last_slash == std::string_view::npos) {
    return Refuse(RequestKind::kOther, 404, "UNSUPPORTED", std::string(kUnsupported));
  }
  const std::string_view reference = rest.substr(last_slash + 1);
  const std::string_view before = rest.substr(0, last_slash);
  const size_t type_slash = before.rfind('/');
  const std::string_view type =
      type_slash == std::string_view::npos ? before : before.substr(type_slash + 1);
  const std::string_view name =
      type_slash == std::string_view::npos ? std::string_view() : before.substr(0, type_slash);
  if (type == "uploads" && name.ends_with("/blobs")) {
    return Refuse(RequestKind::kBlob, 404, "BLOB_UPLOAD_UNKNOWN",
                  "this peer endpoint is read-only: it takes no uploads");
  }
  const RequestKind kind = type == "blobs"       ? RequestKind::kBlob
                           : type == "manifests" ? RequestKind::kManifest
                                                 : RequestKind::kOther;
  if (kind == RequestKind::kOther || name.empty()) {
    return Refuse(RequestKind::kOther, 404, "UNSUPPORTED", std::string(kUnsupported));
  }
  if (!IsRepositoryName(name)) {
    return Refuse(kind, 400, "NAME_INVALID", "invalid repository name");
  }
  if (kind == RequestKind::kManifest && reference.find(':') == std::string_view::npos) {
    return Refuse(kind, 404, "MANIFEST_UNKNOWN",
                  "a peer serves manifests by digest only; resolve tags at the registry");
  }
  Result<Digest> digest = Digest::Parse(reference);
  if (!digest) return Refuse(kind, 400, "DIGEST_INVALID", digest.error().message());
  return {.kind = kind, .digest = std::move(*digest), .name = std::string(name)};
}

}  // namespace

std::string_view RequestKindName(RequestKind kind) {
  switch (kind) {
    case RequestKind::kManifest:
      return "manifest";
    case RequestKind::kBlob:
      return "blob";
    case RequestKind::kOther:
      return "other";
  }
  return "other";
}

std::string_view MethodLabel(std::string_view method) {
  if (method == "GET") return "GET";
  if (method == "HEAD") return "HEAD";
  return "other";
}

bool IsRepositoryName(std::string_view name) {
  if (name.empty() || name.size() > Reference::kMaxPathLength) return false;
  const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           c == '/';
  });
  if (!charset_ok) return false;
  Result<Reference> parsed = Reference::ParseNormalizedNamed(name);
  return parsed && !parsed->has_tag() && !parsed->digest();
}

Result<std::string> ManifestMediaType(std::string_view document) {
  Result<image::ManifestKind> kind = image::DetectKind("", document);
  if (!kind && kind.error().code() != ErrorCode::kUnimplemented) return Fail(kind.error());
  // DetectKind parsed the document within image's limits before it could say kUnimplemented.
  const json parsed = json::parse(document, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    const auto media_type = parsed.find("mediaType");
    if (media_type != parsed.end() && media_type->is_string() &&
        !media_type->get_ref<const std::string&>().empty()) {
      return media_type->get<std::string>();
    }
  }
  if (!kind) return Fail(kind.error());
  return std::string(image::MediaTypeOf(*kind));
}

// An error or probe response: no content from the store.
struct BlobServer::Response {
  int status = 200;
  std::string fields;  // extra header fields, each ending in CRLF
  std::string content_type = "application/json";
  std::string body;
};

// One of the max_concurrent_uploads places, held while content is sent.
class BlobServer::UploadSlot {
 public:
  UploadSlot(std::atomic<int>& uploads, int limit) : uploads_(uploads) {
    taken_ = uploads_.fetch_add(1) < limit;
    if (!taken_) uploads_.fetch_sub(1);
  }
  ~UploadSlot() {
    if (taken_) uploads_.fetch_sub(1);
  }
  UploadSlot(const UploadSlot&) = delete;
  UploadSlot& operator=(const UploadSlot&) = delete;
  bool taken() const { return taken_; }

 private:
  std::atomic<int>& uploads_;
  bool taken_ = false;
};

Result<std::unique_ptr<BlobServer>> BlobServer::Start(const content::Store& store,
                                                      BlobServerOptions options) {
  UniqueSslContext tls;
  if (!options.tls.cert.empty()) {
    BERTH_ASSIGN_OR_RETURN(tls, MakeServerTlsContext(options.tls));
  }
  BERTH_ASSIGN_OR_RETURN(UniqueFd listener, ListenTcp(options.address, "peers.listen", 128));
  const uint16_t port = LocalPort(listener.get());
  const int max_connections = options.max_connections;
  std::unique_ptr<BlobServer> server(
      new BlobServer(store, std::move(options), port, std::move(tls)));
  BERTH_ASSIGN_OR_RETURN(
      server->loop_,
      AcceptLoop::Start(
          std::move(listener), max_connections,
          {.serve = [raw = server.get()](UniqueFd socket,
                                         int wake) { raw->Serve(std::move(socket), wake); },
           .refuse =
               [](int socket) {
                 const std::string busy = ResponseHead(
                     503, "Content-Length: 0\r\nRetry-After: 1\r\n", /*keep_alive=*/false);
                 [[maybe_unused]] ssize_t sent =
                     ::send(socket, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
               }}));
  return server;
}

BlobServer::BlobServer(const content::Store& store, BlobServerOptions options, uint16_t port,
                       UniqueSslContext tls)
    : store_(store), options_(std::move(options)), port_(port), tls_(std::move(tls)) {
  if (options_.max_upload_rate > 0) {
    // A burst of a quarter second's worth, at least one chunk: smooth, and a chunk never waits
    // for more than the bucket can hold.
    bucket_.emplace(TokenBucketOptions{
        .rate = options_.max_upload_rate,
        .burst = std::max<uint64_t>(options_.max_upload_rate / 4, Connection::kChunkBytes)});
  }
}

BlobServer::~BlobServer() { Stop(); }

void BlobServer::Stop() {
  if (loop_) loop_->Stop();
}

std::chrono::nanoseconds BlobServer::Pace(uint64_t bytes) {
  return bucket_ ? bucket_->Take(bytes) : std::chrono::nanoseconds(0);
}

void BlobServer::Serve(UniqueFd socket, int wake) {
  // A peer that goes away makes sendfile(2) and OpenSSL's writes raise SIGPIPE in this thread;
  // blocked here, the write's EPIPE says it instead.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);

  Result<std::unique_ptr<Connection>> connection =
      Connection::Accept(std::move(socket), wake, tls_.get(), Clock::now() + options_.read_timeout);
  if (!connection) {
    log::Debug("peers.connection_refused", {{"error", connection.error().ToString()}});
  } else {
    std::string buffered;
    std::string head;
    while (true) {
      int refusal = 0;
      if (!ReadHead(**connection, buffered, head, refusal)) break;
      if (refusal != 0) {
        Response refused{.status = refusal,
                         .body = ErrorBody("UNSUPPORTED", refusal == 431 ? "request head too large"
                                                                         : "malformed request")};
        Send(**connection, refused, "other", RequestKind::kOther, /*keep_alive=*/false);
        break;
      }
      if (!Answer(**connection, head)) break;
    }
    (*connection)
        ->Shutdown(Clock::now() +
                   std::min<Clock::duration>(options_.read_timeout, std::chrono::seconds(1)));
  }
}

bool BlobServer::ReadHead(Connection& connection, std::string& buffered, std::string& head,
                          int& refusal) {
  Clock::time_point deadline = Clock::now() + options_.idle_timeout;
  if (!buffered.empty()) deadline = Clock::now() + options_.read_timeout;
  char chunk[4096];
  while (true) {
    if (const size_t end = buffered.find("\r\n\r\n"); end != std::string::npos) {
      if (end > options_.max_request_head_bytes) break;
      head = buffered.substr(0, end);
      buffered.erase(0, end + 4);
      return true;
    }
    // A TLS ClientHello on a plain endpoint: say at once that this is HTTP (see the header).
    if (!tls() && !buffered.empty() && buffered.front() == '\x16') {
      refusal = 400;
      return true;
    }
    if (buffered.size() > options_.max_request_head_bytes) break;
    Result<size_t> got = connection.Read(chunk, deadline);
    if (!got || *got == 0) return false;
    if (buffered.empty()) deadline = Clock::now() + options_.read_timeout;
    buffered.append(chunk, *got);
  }
  refusal = 431;
  return true;
}

bool BlobServer::Answer(Connection& connection, std::string_view head_text) {
  Result<RequestHead> parsed = ParseRequestHead(head_text);
  if (!parsed) {
    Send(connection, {.status = 400, .body = ErrorBody("UNSUPPORTED", parsed.error().message())},
         "other", RequestKind::kOther, /*keep_alive=*/false);
    return false;
  }
  const RequestHead& request = *parsed;
  // A body would have to be read past; such requests (uploads) are refused and the connection
  // closed instead.
  const bool keep_alive = request.KeepAlive() && !request.HasBody();
  Route route = RouteOf(request.Path());
  if (request.method != "GET" && request.method != "HEAD") {
    return Send(connection,
                {.status = 405,
                 .fields = "Allow: GET, HEAD\r\n",
                 .body = ErrorBody("UNSUPPORTED",
                                   "this peer endpoint is read-only: GET and HEAD only")},
                request.method, route.kind, keep_alive) &&
           keep_alive;
  }
  if (route.probe) {
    return Send(connection, {.status = 200, .body = "{}"}, request.method, RequestKind::kOther,
                keep_alive) &&
           keep_alive;
  }
  if (!route.digest) {
    return Send(connection, {.status = route.status, .body = ErrorBody(route.code, route.message)},
                request.method, route.kind, keep_alive) &&
           keep_alive;
  }
  return ServeContent(connection, request, route.kind, route.name, *route.digest) && keep_alive;
}

bool BlobServer::Send(Connection& connection, const Response& response, std::string_view method,
                      RequestKind kind, bool keep_alive) {
  const bool head_only = method == "HEAD";
  std::string out =
      ResponseHead(response.status,
                   fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n{}",
                               response.content_type, response.body.size(), response.fields),
                   keep_alive);
  if (!head_only) out += response.body;
  const bool written = connection.Write(out, Clock::now() + options_.read_timeout).has_value();
  if (options_.observer != nullptr) {
    options_.observer->RequestDone(MethodLabel(method), kind, response.status, 0);
  }
  return written;
}

// 429 with Retry-After: 1 (see the header), saying `why`.
BlobServer::Response BlobServer::TooManyRequests(std::string_view why) {
  return {.status = 429,
          .fields = "Retry-After: 1\r\n",
          .body = ErrorBody("TOOMANYREQUESTS", fmt::format("{}; retry, or ask another node", why))};
}

// What the store holds under a digest, opened for a response.
struct BlobServer::Content {
  UniqueFd file;
  int64_t size = 0;
  std::string content_type;
};

std::variant<BlobServer::Content, BlobServer::Response> BlobServer::Open(const Digest& digest,
                                                                         RequestKind kind) const {
  const bool manifest = kind == RequestKind::kManifest;
  const std::string_view unknown = manifest ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN";
  Result<UniqueFd> file = store_.OpenBlob(digest);
  if (!file && file.error().code() == ErrorCode::kNotFound) {
    return Response{
        .status = 404,
        .body = ErrorBody(unknown, fmt::format("this node has no verified {}", digest.ToString()))};
  }
  struct stat st {};
  if (!file || ::fstat(file->get(), &st) != 0) {
    log::Warn("peers.read_failed", {{"digest", digest.ToString()},
                                    {"error", file ? "fstat failed" : file.error().ToString()}});
    return Response{.status = 500, .body = ErrorBody("UNKNOWN", "this node cannot read the blob")};
  }
  Content content{
      .file = std::move(*file), .size = st.st_size, .content_type = "application/octet-stream"};
  if (!manifest) return content;
  // A manifest's type is read from the document itself (bounded: image::kMaxManifestBytes).
  Result<std::string> media_type = Fail(ErrorCode::kInvalidArgument, "too large");
  if (content.size <= static_cast<int64_t>(image::kMaxManifestBytes)) {
    Result<std::string> bytes = ReadWhole(content.file.get(), content.size);
    if (bytes) media_type = ManifestMediaType(*bytes);
  }
  if (!media_type) {
    return Response{
        .status = 404,
        .body = ErrorBody(unknown, fmt::format("{} is not a manifest", digest.ToString()))};
  }
  content.content_type = std::move(*media_type);
  return content;
}

bool BlobServer::ServeContent(Connection& connection, const RequestHead& request, RequestKind kind,
                              std::string_view name, const Digest& digest) {
  const bool keep_alive = request.KeepAlive() && !request.HasBody();
  auto opened = Open(digest, kind);
  if (Response* refusal = std::get_if<Response>(&opened)) {
    if (refusal->status == 404 && kind == RequestKind::kBlob && options_.arriving != nullptr &&
        request.method == "GET") {
      return ServeArriving(connection, request, name, digest, *refusal);
    }
    return Send(connection, *refusal, request.method, kind, keep_alive);
  }
  const Content& content = std::get<Content>(opened);
  const bool manifest = kind == RequestKind::kManifest;
  const RangeAnswer range =
      manifest ? RangeAnswer{} : ResolveRange(request.Field("Range"), content.size);
  if (range.kind == RangeAnswer::Kind::kUnsatisfiable) {
    return Send(connection,
                {.status = 416,
                 .fields = fmt::format("Content-Range: bytes */{}\r\n", content.size),
                 .body = ErrorBody("UNSUPPORTED", "the range starts past the end of the blob")},
                request.method, kind, keep_alive);
  }
  const bool partial = range.kind == RangeAnswer::Kind::kPartial;
  const int64_t first = partial ? range.first : 0;
  const int64_t length = partial ? range.last - range.first + 1 : content.size;
  const int status = partial ? 206 : 200;
  std::string fields =
      fmt::format("Content-Type: {}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\n",
                  content.content_type, length, digest.ToString());
  if (!manifest) fields += "Accept-Ranges: bytes\r\n";
  if (partial) {
    fields +=
        fmt::format("Content-Range: bytes {}-{}/{}\r\n", range.first, range.last, content.size);
  }

  const bool head_only = request.method == "HEAD";
  std::optional<UploadSlot> slot;
  if (!head_only) {
    slot.emplace(uploads_, options_.max_concurrent_uploads);
    if (!slot->taken()) {
      if (options_.observer != nullptr) options_.observer->UploadRefused();
      return Send(connection, TooManyRequests("this node is sending as much as it may"),
                  request.method, kind, keep_alive);
    }
  }
  uint64_t sent = 0;
  bool written =
      connection
          .Write(ResponseHead(status, fields, keep_alive), Clock::now() + options_.read_timeout)
          .has_value();
  if (written && !head_only) {
    Result<void> streamed = connection.SendFile(
        content.file.get(), first, length, options_.read_timeout,
        [this](uint64_t bytes) { return Pace(bytes); }, sent);
    if (!streamed) {
      log::Debug("peers.send_failed",
                 {{"digest", digest.ToString()}, {"error", streamed.error().ToString()}});
      written = false;
    }
  }
  if (options_.observer != nullptr) {
    options_.observer->RequestDone(MethodLabel(request.method), kind, status, sent);
  }
  return written;
}

bool BlobServer::ServeArriving(Connection& connection, const RequestHead& request,
                               std::string_view name, const Digest& digest,
                               const Response& absent) {
  const bool keep_alive = request.KeepAlive() && !request.HasBody();
  std::optional<UploadSlot> slot(std::in_place, uploads_, options_.max_concurrent_uploads);
  if (!slot->taken()) {
    if (options_.observer != nullptr) options_.observer->UploadRefused();
    return Send(connection, TooManyRequests("this node is sending as much as it may"),
                request.method, RequestKind::kBlob, keep_alive);
  }
  Result<std::shared_ptr<ArrivingBlob>> arriving = options_.arriving->Follow(
      {.digest = digest,
       .repository = std::string(name),
       .registry = request.QueryParameter("ns").value_or(""),
       .registry_authorization = Secret(
           std::string(request.Field(registry::kRegistryAuthorizationHeader).value_or("")))});
  if (!arriving) {
    switch (arriving.error().code()) {
      case ErrorCode::kAlreadyExists:  // stored meanwhile: served as any stored blob
        slot.reset();
        return ServeContent(connection, request, RequestKind::kBlob, name, digest);
      case ErrorCode::kResourceExhausted:
        return Send(connection, TooManyRequests(arriving.error().message()), request.method,
                    RequestKind::kBlob, keep_alive);
      default:
        log::Debug("peers.not_fetched",
                   {{"digest", digest.ToString()}, {"error", arriving.error().ToString()}});
        return Send(connection, absent, request.method, RequestKind::kBlob, keep_alive);
    }
  }
  const std::string fields = fmt::format(
      "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
      "Docker-Content-Digest: {}\r\n",
      digest.ToString());
  uint64_t sent = 0;
  const bool written =
      connection.Write(ResponseHead(200, fields, keep_alive), Clock::now() + options_.read_timeout)
          .has_value() &&
      SendArriving(connection, **arriving, digest, sent);
  if (options_.observer != nullptr) {
    options_.observer->RequestDone("GET", RequestKind::kBlob, 200, sent);
  }
  return written;
}

bool BlobServer::SendArriving(Connection& connection, ArrivingBlob& blob, const Digest& digest,
                              uint64_t& sent) {
  int64_t offset = 0;
  while (!connection.Stopping()) {
    // In slices, so that a server that stops is noticed while the download is quiet.
    const ArrivingBlob::Progress progress =
        blob.WaitBeyond(offset, Clock::now() + std::chrono::milliseconds(250));
    if (progress.available > offset) {
      const int64_t length = progress.available - offset;
      Result<void> chunk =
          connection.Write(fmt::format("{:x}\r\n", length), Clock::now() + options_.read_timeout);
      if (chunk) {
        chunk = connection.SendFile(
            blob.file(), offset, length, options_.read_timeout,
            [this](uint64_t bytes) { return Pace(bytes); }, sent);
      }
      if (chunk) chunk = connection.Write("\r\n", Clock::now() + options_.read_timeout);
      if (!chunk) {
        log::Debug("peers.send_failed",
                   {{"digest", digest.ToString()}, {"error", chunk.error().ToString()}});
        return false;
      }
      offset = progress.available;
      continue;
    }
    if (progress.failed) {
      log::Info("peers.arriving_failed", {{"digest", digest.ToString()}, {"sent", offset}});
      return false;
    }
    if (progress.ended) {
      return connection.Write("0\r\n\r\n", Clock::now() + options_.read_timeout).has_value();
    }
  }
  return false;
}

}  // namespace berth::peers
