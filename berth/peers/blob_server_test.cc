// BlobServer over real TCP on 127.0.0.1, serving a real content store on a temp dir: what a
// registry client sees (headers, ranges, refusals), keep-alive, the limits, TLS and mutual TLS
// with certificates from TestPki.
#include "berth/peers/blob_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "testing/http_fetch.h"
#include "testing/http_wire.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace berth::peers {
namespace {

using berth::testing::FailsWith;
using berth::testing::HttpFetch;
using berth::testing::HttpFetchResponse;
using ::testing::HasSubstr;

constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";

std::string RandomBytes(size_t size, unsigned seed) {
  std::mt19937 generator(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(generator() & 0xff);
  return bytes;
}

// Hears the server's reports.
class RecordingObserver final : public BlobServerObserver {
 public:
  struct Done {
    std::string method;
    RequestKind kind;
    int status;
    uint64_t bytes;
  };
  void RequestDone(std::string_view method, RequestKind kind, int status,
                   uint64_t body_bytes) override {
    {
      std::lock_guard lock(mutex_);
      done_.push_back({std::string(method), kind, status, body_bytes});
    }
    changed_.notify_all();
  }
  void UploadRefused() override {
    std::lock_guard lock(mutex_);
    ++refused_;
  }
  std::vector<Done> done() const {
    std::lock_guard lock(mutex_);
    return done_;
  }
  // The reports once there are `count` of them (a response is reported after its last byte is
  // written, so the client may have read it before), or those there are after 10 s.
  std::vector<Done> WaitForDone(size_t count) const {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(10), [&] { return done_.size() >= count; });
    return done_;
  }
  int refused() const {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<Done> done_;
  int refused_ = 0;
};

// A response read off a raw connection.
struct Reply {
  int status = 0;
  berth::testing::HeaderList headers;
  std::string body;
  std::optional<std::string> Header(std::string_view name) const {
    return berth::testing::FindHeader(headers, name);
  }
};

// A raw HTTP/1.1 client connection, to see exactly what the server sends and to reuse one
// connection for several requests.
class RawClient {
 public:
  static Result<RawClient> Connect(uint16_t port) {
    BERTH_ASSIGN_OR_RETURN(UniqueFd fd, berth::testing::ConnectTcp("127.0.0.1", port));
    timeval timeout{.tv_sec = 10, .tv_usec = 0};  // a broken server fails the test, not hangs it
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    return RawClient(std::move(fd));
  }

  Result<void> Send(std::string_view bytes) { return berth::testing::SendAll(fd_.get(), bytes); }

  // Sends `method target` with `extra` header lines (each ending in CRLF) and reads the reply.
  Result<Reply> Ask(std::string_view method, std::string_view target, std::string_view extra = "") {
    BERTH_RETURN_IF_ERROR(
        Send(fmt::format("{} {} HTTP/1.1\r\nHost: peer\r\n{}\r\n", method, target, extra)));
    return Read(method == "HEAD");
  }

  // Reads one response (its body unless it answers a HEAD).
  Result<Reply> Read(bool head_request = false) {
    BERTH_ASSIGN_OR_RETURN(std::optional<std::string> head, reader_.ReadHead());
    if (!head) return Fail(ErrorCode::kUnavailable, "the server closed the connection");
    BERTH_ASSIGN_OR_RETURN(berth::testing::ResponseHead parsed,
                           berth::testing::ParseResponseHead(*head));
    Reply reply{.status = parsed.status, .headers = std::move(parsed.headers)};
    BERTH_ASSIGN_OR_RETURN(std::optional<uint64_t> length,
                           berth::testing::ContentLength(reply.headers));
    if (!head_request && length) {
      BERTH_ASSIGN_OR_RETURN(reply.body, reader_.ReadExactly(*length));
    }
    return reply;
  }

  // Reads a chunked body, piece by piece, to its terminating chunk.
  Result<void> ReadChunked(const std::function<Result<void>(std::string_view)>& piece) {
    return berth::testing::ReadChunkedBody(reader_, piece);
  }

  // Whether the server closed the connection (reads until end of stream or the timeout).
  bool ClosedByServer() {
    Result<std::string> rest = reader_.ReadSome(1 << 20);
    while (rest && !rest->empty()) rest = reader_.ReadSome(1 << 20);
    return rest && rest->empty();
  }

  int fd() const { return fd_.get(); }

 private:
  explicit RawClient(UniqueFd fd) : fd_(std::move(fd)), reader_(fd_.get()) {}

  UniqueFd fd_;
  berth::testing::SocketReader reader_;
};

class BlobServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, berth::testing::TempDir::Create("peers"));
    ASSERT_OK_AND_ASSIGN(store_, content::Store::Open({.root = dir_.Join("content"),
                                                       .durability = Durability::kNone}));
    layer_ = RandomBytes(300 << 10, 1);
    layer_digest_ = Put(layer_);
    manifest_ = fmt::format(
        R"({{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}})",
        kOciManifest, layer_digest_.ToString(), layer_.size());
    manifest_digest_ = Put(manifest_);
  }

  Digest Put(std::string_view bytes) {
    const Digest digest = Digest::Sha256Of(bytes);
    EXPECT_OK(store_->WriteBlob(digest, bytes));
    return digest;
  }

  void StartServer(BlobServerOptions options = {}) {
    if (options.address.empty()) options.address = "127.0.0.1:0";
    options.observer = &observer_;
    ASSERT_OK_AND_ASSIGN(server_, BlobServer::Start(*store_, std::move(options)));
  }

  RawClient Connect() {
    Result<RawClient> client = RawClient::Connect(server_->port());
    EXPECT_OK(client);
    return std::move(*client);
  }

  std::string BlobPath(const Digest& digest, std::string_view name = "library/busybox") const {
    return fmt::format("/v2/{}/blobs/{}", name, digest.ToString());
  }
  std::string ManifestPath(std::string_view reference) const {
    return fmt::format("/v2/library/busybox/manifests/{}", reference);
  }
  std::string Url(std::string_view path, std::string_view scheme = "http") const {
    return fmt::format("{}://127.0.0.1:{}{}", scheme, server_->port(), path);
  }

  // The error code of a distribution error body.
  static std::string ErrorCodeOf(const Reply& reply) {
    const nlohmann::json body = nlohmann::json::parse(reply.body, nullptr, false);
    if (body.is_discarded() || !body.contains("errors")) return "not an error body";
    return body["errors"][0]["code"].get<std::string>();
  }

  berth::testing::TempDir dir_;
  std::unique_ptr<content::Store> store_;
  std::string layer_;
  Digest layer_digest_ = Digest::Sha256Of("");
  std::string manifest_;
  Digest manifest_digest_ = Digest::Sha256Of("");
  RecordingObserver observer_;
  std::unique_ptr<BlobServer> server_;
};

TEST_F(BlobServerTest, TheProbeAnswers200) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask("GET", "/v2/"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.Header("Docker-Distribution-API-Version"), "registry/2.0");
  EXPECT_EQ(reply.body, "{}");
}

TEST_F(BlobServerTest, GetABlobByDigestWithItsHeaders) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply,
                       client.Ask("GET", BlobPath(layer_digest_) + "?ns=registry.example"));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.Header("Content-Length"), std::to_string(layer_.size()));
  EXPECT_EQ(reply.Header("Content-Type"), "application/octet-stream");
  EXPECT_EQ(reply.Header("Docker-Content-Digest"), layer_digest_.ToString());
  EXPECT_EQ(reply.Header("Accept-Ranges"), "bytes");
  EXPECT_EQ(reply.Header("Docker-Distribution-API-Version"), "registry/2.0");
  EXPECT_TRUE(reply.body == layer_) << "the bytes differ";
  // The repository is not used to find content.
  ASSERT_OK_AND_ASSIGN(Reply other, client.Ask("GET", BlobPath(layer_digest_, "x/y/z")));
  EXPECT_EQ(other.status, 200);
  EXPECT_TRUE(other.body == layer_);

  const std::vector<RecordingObserver::Done> done = observer_.WaitForDone(2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].method, "GET");
  EXPECT_EQ(done[0].kind, RequestKind::kBlob);
  EXPECT_EQ(done[0].status, 200);
  EXPECT_EQ(done[0].bytes, layer_.size());
}

TEST_F(BlobServerTest, HeadGivesTheHeadersWithoutTheBodyAndKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply head, client.Ask("HEAD", BlobPath(layer_digest_)));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("Content-Length"), std::to_string(layer_.size()));
  EXPECT_EQ(head.Header("Docker-Content-Digest"), layer_digest_.ToString());
  // The next response on the same connection starts right after the head: no body was sent.
  ASSERT_OK_AND_ASSIGN(Reply manifest,
                       client.Ask("HEAD", ManifestPath(manifest_digest_.ToString())));
  EXPECT_EQ(manifest.status, 200);
  EXPECT_EQ(manifest.Header("Content-Type"), kOciManifest);
  EXPECT_EQ(manifest.Header("Content-Length"), std::to_string(manifest_.size()));
  EXPECT_EQ(observer_.done().at(0).bytes, 0u);
}

TEST_F(BlobServerTest, ManifestsAreServedWithTheirOwnMediaType) {
  // No mediaType: the shape says OCI manifest. An index with a Docker list's mediaType.
  const Digest bare = Put(fmt::format(
      R"({{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[]}})",
      layer_digest_.ToString()));
  const Digest list =
      Put(fmt::format(R"({{"schemaVersion":2,"mediaType":"{}","manifests":[]}})", kDockerList));
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply oci, client.Ask("GET", ManifestPath(manifest_digest_.ToString())));
  EXPECT_EQ(oci.status, 200);
  EXPECT_EQ(oci.Header("Content-Type"), kOciManifest);
  EXPECT_EQ(oci.Header("Docker-Content-Digest"), manifest_digest_.ToString());
  EXPECT_EQ(oci.body, manifest_);
  ASSERT_OK_AND_ASSIGN(Reply detected, client.Ask("GET", ManifestPath(bare.ToString())));
  EXPECT_EQ(detected.Header("Content-Type"), kOciManifest);
  ASSERT_OK_AND_ASSIGN(Reply index, client.Ask("GET", ManifestPath(list.ToString())));
  EXPECT_EQ(index.Header("Content-Type"), kDockerList);
  // A layer is not a manifest, whatever its digest.
  ASSERT_OK_AND_ASSIGN(Reply layer, client.Ask("GET", ManifestPath(layer_digest_.ToString())));
  EXPECT_EQ(layer.status, 404);
  EXPECT_EQ(ErrorCodeOf(layer), "MANIFEST_UNKNOWN");
}

TEST_F(BlobServerTest, RangesOfABlob) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  const std::string path = BlobPath(layer_digest_);
  const int64_t size = static_cast<int64_t>(layer_.size());
  struct Case {
    std::string range;
    int64_t first;
    int64_t last;
  };
  for (const Case& c : std::vector<Case>{{"bytes=0-99", 0, 99},
                                         {"bytes=1000-", 1000, size - 1},
                                         {"bytes=-500", size - 500, size - 1},
                                         {"bytes=70000-9999999", 70000, size - 1}}) {
    ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask("GET", path, "Range: " + c.range + "\r\n"));
    EXPECT_EQ(reply.status, 206) << c.range;
    EXPECT_EQ(reply.Header("Content-Range"), fmt::format("bytes {}-{}/{}", c.first, c.last, size))
        << c.range;
    EXPECT_EQ(reply.Header("Content-Length"), std::to_string(c.last - c.first + 1));
    EXPECT_TRUE(reply.body == layer_.substr(c.first, c.last - c.first + 1)) << c.range;
  }
  ASSERT_OK_AND_ASSIGN(Reply past,
                       client.Ask("GET", path, fmt::format("Range: bytes={}-\r\n", size)));
  EXPECT_EQ(past.status, 416);
  EXPECT_EQ(past.Header("Content-Range"), fmt::format("bytes */{}", size));
  ASSERT_OK_AND_ASSIGN(Reply several, client.Ask("GET", path, "Range: bytes=0-1,5-9\r\n"));
  EXPECT_EQ(several.status, 200);
  EXPECT_EQ(several.body.size(), layer_.size());
  // Manifests ignore Range.
  ASSERT_OK_AND_ASSIGN(Reply manifest, client.Ask("GET", ManifestPath(manifest_digest_.ToString()),
                                                  "Range: bytes=0-9\r\n"));
  EXPECT_EQ(manifest.status, 200);
  EXPECT_EQ(manifest.body, manifest_);
}

TEST_F(BlobServerTest, RefusesWhatIsNotContentByDigest) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  struct Case {
    std::string method;
    std::string target;
    int status;
    std::string code;
  };
  const std::string missing = Digest::Sha256Of("not here").ToString();
  for (const Case& c : std::vector<Case>{
           {"GET", ManifestPath("latest"), 404, "MANIFEST_UNKNOWN"},
           {"HEAD", ManifestPath("v1.2"), 404, "MANIFEST_UNKNOWN"},
           {"GET", ManifestPath(missing), 404, "MANIFEST_UNKNOWN"},
           {"GET", BlobPath(Digest::Sha256Of("not here")), 404, "BLOB_UNKNOWN"},
           {"GET", "/v2/_catalog", 404, "UNSUPPORTED"},
           {"GET", "/v2/library/busybox/tags/list", 404, "UNSUPPORTED"},
           {"GET", "/v2/library/busybox/blobs/uploads/1234", 404, "BLOB_UPLOAD_UNKNOWN"},
           {"GET", "/other", 404, "UNSUPPORTED"},
           {"DELETE", BlobPath(layer_digest_), 405, "UNSUPPORTED"},
           {"POST", "/v2/library/busybox/blobs/uploads/", 405, "UNSUPPORTED"},
           {"GET", BlobPath(layer_digest_, "Library/BusyBox"), 400, "NAME_INVALID"},
           {"GET", BlobPath(layer_digest_, "a//b"), 400, "NAME_INVALID"},
           {"GET", "/v2/library/busybox/blobs/sha256:abc", 400, "DIGEST_INVALID"},
           {"GET", "/v2/library/busybox/manifests/sha256:xyz", 400, "DIGEST_INVALID"},
       }) {
    ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask(c.method, c.target));
    EXPECT_EQ(reply.status, c.status) << c.method << " " << c.target;
    if (c.method != "HEAD") {
      EXPECT_EQ(ErrorCodeOf(reply), c.code) << c.method << " " << c.target;
    }
    if (c.status == 405) {
      EXPECT_EQ(reply.Header("Allow"), "GET, HEAD");
    }
    EXPECT_EQ(reply.Header("Content-Type"), "application/json");
  }
  // Every refusal kept the connection: it still serves.
  ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask("GET", BlobPath(layer_digest_)));
  EXPECT_EQ(reply.status, 200);
}

TEST_F(BlobServerTest, MalformedAndOversizedRequestsAreRefusedAndClosed) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.max_request_head_bytes = 1024}));
  {
    RawClient client = Connect();
    ASSERT_OK(client.Send("GET /v2/ HTTP/1.1\r\nNo colon here\r\n\r\n"));
    ASSERT_OK_AND_ASSIGN(Reply reply, client.Read());
    EXPECT_EQ(reply.status, 400);
    EXPECT_EQ(reply.Header("Connection"), "close");
    EXPECT_TRUE(client.ClosedByServer());
  }
  {
    RawClient client = Connect();
    ASSERT_OK(client.Send("GET /v2/ HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"));
    ASSERT_OK_AND_ASSIGN(Reply reply, client.Read());
    EXPECT_EQ(reply.status, 431);
    EXPECT_TRUE(client.ClosedByServer());
  }
  {
    // A TLS ClientHello on the plain endpoint: an HTTP answer at once, not a read timeout.
    RawClient client = Connect();
    const auto started = std::chrono::steady_clock::now();
    ASSERT_OK(client.Send(std::string("\x16\x03\x01\x00\x05hello", 10)));
    ASSERT_OK_AND_ASSIGN(Reply reply, client.Read());
    EXPECT_EQ(reply.status, 400);
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  }
}

TEST_F(BlobServerTest, KeepAliveCarriesRequestsSentTogether) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RawClient client = Connect();
  // Two requests in one write (pipelined), then a third with Connection: close.
  const std::string blob = BlobPath(layer_digest_);
  ASSERT_OK(
      client.Send(fmt::format("HEAD {0} HTTP/1.1\r\nHost: p\r\n\r\nGET {0} HTTP/1.1\r\n"
                              "Host: p\r\nRange: bytes=0-9\r\n\r\n",
                              blob)));
  ASSERT_OK_AND_ASSIGN(Reply first, client.Read(/*head_request=*/true));
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("Connection"), "keep-alive");
  ASSERT_OK_AND_ASSIGN(Reply second, client.Read());
  EXPECT_EQ(second.status, 206);
  EXPECT_EQ(second.body, layer_.substr(0, 10));
  ASSERT_OK_AND_ASSIGN(Reply last, client.Ask("GET", "/v2/", "Connection: close\r\n"));
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.Header("Connection"), "close");
  EXPECT_TRUE(client.ClosedByServer());
}

TEST_F(BlobServerTest, AnIdleConnectionIsClosed) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.idle_timeout = std::chrono::milliseconds(200)}));
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask("GET", "/v2/"));
  EXPECT_EQ(reply.status, 200);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.ClosedByServer());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(BlobServerTest, UploadsPastTheLimitAreRefusedWith429) {
  // One upload at a time, slowed to 64 KiB/s so the first is still running when the second
  // asks (its 300 KiB take seconds).
  ASSERT_NO_FATAL_FAILURE(StartServer({.max_concurrent_uploads = 1, .max_upload_rate = 64 << 10}));
  RawClient slow = Connect();
  ASSERT_OK(slow.Send(fmt::format("GET {} HTTP/1.1\r\nHost: p\r\n\r\n", BlobPath(layer_digest_))));
  // Its head arrives once the upload holds the one place.
  berth::testing::SocketReader reader(slow.fd());
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> head, reader.ReadHead());
  ASSERT_TRUE(head);
  EXPECT_THAT(*head, ::testing::StartsWith("HTTP/1.1 200"));

  RawClient second = Connect();
  ASSERT_OK_AND_ASSIGN(Reply refused, second.Ask("GET", BlobPath(layer_digest_)));
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  EXPECT_EQ(ErrorCodeOf(refused), "TOOMANYREQUESTS");
  EXPECT_EQ(observer_.refused(), 1);
  // HEAD sends no content and is not limited.
  ASSERT_OK_AND_ASSIGN(Reply head_reply, second.Ask("HEAD", BlobPath(layer_digest_)));
  EXPECT_EQ(head_reply.status, 200);

  // The slow client goes away: its place is given back and the next GET is served.
  slow = Connect();
  bool served = false;
  for (int attempt = 0; attempt < 100 && !served; ++attempt) {
    ASSERT_OK_AND_ASSIGN(Reply reply,
                         second.Ask("GET", BlobPath(layer_digest_), "Range: bytes=0-9\r\n"));
    served = reply.status == 206;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(served) << "the place of a client that went away was not given back";
}

TEST_F(BlobServerTest, AConnectionPastTheCapIsAnswered503) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.max_connections = 1}));
  RawClient first = Connect();
  ASSERT_OK_AND_ASSIGN(Reply served, first.Ask("GET", "/v2/"));
  EXPECT_EQ(served.status, 200);
  // The first connection is kept open: the second is one too many.
  RawClient second = Connect();
  ASSERT_OK_AND_ASSIGN(Reply busy, second.Read());
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.Header("Retry-After"), "1");
  EXPECT_TRUE(second.ClosedByServer());
}

TEST_F(BlobServerTest, StopEndsAPacedTransferAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.max_upload_rate = 16 << 10}));
  RawClient client = Connect();
  ASSERT_OK(
      client.Send(fmt::format("GET {} HTTP/1.1\r\nHost: p\r\n\r\n", BlobPath(layer_digest_))));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto started = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_FALSE(berth::testing::ConnectTcp("127.0.0.1", server_->port(), std::chrono::seconds(1)));
}

TEST_F(BlobServerTest, StartFailsNamingTheKey) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  EXPECT_THAT(BlobServer::Start(*store_, {.address = "127.0.0.1"}),
              FailsWith(ErrorCode::kInvalidArgument, "peers.listen"));
  const std::string taken = fmt::format("127.0.0.1:{}", server_->port());
  Result<std::unique_ptr<BlobServer>> second = BlobServer::Start(*store_, {.address = taken});
  ASSERT_FALSE(second);
  EXPECT_THAT(second.error().ToString(), HasSubstr("peers.listen " + taken));
  EXPECT_THAT(BlobServer::Start(*store_, {.address = "127.0.0.1:0",
                                          .tls = {.cert = dir_.Join("none.pem").string(),
                                                  .key = dir_.Join("none-key.pem").string()}}),
              FailsWith(ErrorCode::kInvalidArgument, "peers.tls_cert"));
}

class BlobServerTlsTest : public BlobServerTest {
 protected:
  void SetUp() override {
    BlobServerTest::SetUp();
    ASSERT_OK_AND_ASSIGN(pki_, berth::testing::TestPki::Create());
    ASSERT_OK_AND_ASSIGN(other_pki_, berth::testing::TestPki::Create());
  }

  ServerTlsFiles Files(bool mutual) const {
    return {.cert = pki_->server_cert_file().string(),
            .key = pki_->server_key_file().string(),
            .client_ca = mutual ? pki_->ca_cert_file().string() : std::string()};
  }

  Result<HttpFetchResponse> FetchBlob(const berth::testing::TestPki* client_pki) const {
    berth::testing::HttpFetchRequest request{.url = Url(BlobPath(layer_digest_), "https"),
                                             .ca_file = pki_->ca_cert_file()};
    if (client_pki != nullptr) {
      request.client_cert_file = client_pki->client_cert_file();
      request.client_key_file = client_pki->client_key_file();
    }
    return HttpFetch(request);
  }

  std::unique_ptr<berth::testing::TestPki> pki_;
  std::unique_ptr<berth::testing::TestPki> other_pki_;
};

TEST_F(BlobServerTlsTest, ServesOverTlsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = Files(/*mutual=*/false)}));
  EXPECT_TRUE(server_->tls());
  ASSERT_OK_AND_ASSIGN(HttpFetchResponse fetched, FetchBlob(nullptr));
  EXPECT_EQ(fetched.status, 200);
  EXPECT_EQ(fetched.Header("Docker-Content-Digest"), layer_digest_.ToString());
  EXPECT_TRUE(fetched.body == layer_) << "the bytes differ";
  // A range over TLS goes through the bounded buffer rather than sendfile.
  ASSERT_OK_AND_ASSIGN(HttpFetchResponse range,
                       HttpFetch({.url = Url(BlobPath(layer_digest_), "https"),
                                  .headers = {{"Range", "bytes=-100"}},
                                  .ca_file = pki_->ca_cert_file()}));
  EXPECT_EQ(range.status, 206);
  EXPECT_EQ(range.body, layer_.substr(layer_.size() - 100));
  // Plain HTTP is not answered on a TLS endpoint.
  Result<HttpFetchResponse> plain =
      HttpFetch({.url = Url("/v2/"), .timeout = std::chrono::seconds(5)});
  EXPECT_FALSE(plain && plain->status == 200);
}

TEST_F(BlobServerTlsTest, MutualTlsRequiresACertificateFromTheClusterCa) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = Files(/*mutual=*/true)}));
  ASSERT_OK_AND_ASSIGN(HttpFetchResponse fetched, FetchBlob(pki_.get()));
  EXPECT_EQ(fetched.status, 200);
  EXPECT_TRUE(fetched.body == layer_) << "the bytes differ";
  // No certificate, or one another CA signed: the handshake fails.
  EXPECT_THAT(FetchBlob(nullptr), FailsWith(ErrorCode::kUnavailable));
  EXPECT_THAT(FetchBlob(other_pki_.get()), FailsWith(ErrorCode::kUnavailable));
}

TEST_F(BlobServerTlsTest, AKeyThatIsNotTheCertificatesFailsTheStart) {
  EXPECT_THAT(BlobServer::Start(*store_, {.address = "127.0.0.1:0",
                                          .tls = {.cert = pki_->server_cert_file().string(),
                                                  .key = other_pki_->server_key_file().string()}}),
              FailsWith(ErrorCode::kInvalidArgument, "peers.tls_key"));
  EXPECT_THAT(BlobServer::Start(*store_, {.address = "127.0.0.1:0",
                                          .tls = {.cert = pki_->server_cert_file().string(),
                                                  .key = pki_->server_key_file().string(),
                                                  .client_ca = dir_.Join("none.pem").string()}}),
              FailsWith(ErrorCode::kInvalidArgument, "peers.tls_client_ca"));
}

// A download as the server sees it, driven by the test: bytes appended to a file.
class FakeArrival final : public ArrivingBlob {
 public:
  explicit FakeArrival(const std::filesystem::path& file)
      : writer_(::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600)),
        reader_(::open(file.c_str(), O_RDONLY | O_CLOEXEC)) {}

  Progress WaitBeyond(int64_t offset, Clock::time_point deadline) override {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] {
      return progress_.available > offset || progress_.ended || progress_.failed;
    });
    return progress_;
  }
  int file() const override { return reader_.get(); }

  void Append(std::string_view bytes) {
    ASSERT_EQ(::write(writer_.get(), bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
    Update([&](Progress& progress) { progress.available += static_cast<int64_t>(bytes.size()); });
  }
  void End() {
    Update([](Progress& progress) { progress.ended = true; });
  }
  void Fail() {
    Update([](Progress& progress) { progress.failed = true; });
  }

 private:
  void Update(const std::function<void(Progress&)>& change) {
    {
      std::lock_guard lock(mutex_);
      change(progress_);
    }
    changed_.notify_all();
  }

  UniqueFd writer_;
  UniqueFd reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Progress progress_;
};

// Answers Follow() as the test says, recording what was asked.
class FakeArrivingBlobs final : public ArrivingBlobs {
 public:
  Result<std::shared_ptr<ArrivingBlob>> Follow(const MissingBlob& blob) override {
    std::lock_guard lock(mutex_);
    asked_.push_back(blob);
    if (before_answer_) before_answer_();
    return answer_;
  }

  void Answer(Result<std::shared_ptr<ArrivingBlob>> answer,
              std::function<void()> before_answer = nullptr) {
    std::lock_guard lock(mutex_);
    answer_ = std::move(answer);
    before_answer_ = std::move(before_answer);
  }
  std::vector<MissingBlob> asked() {
    std::lock_guard lock(mutex_);
    return asked_;
  }

 private:
  std::mutex mutex_;
  Result<std::shared_ptr<ArrivingBlob>> answer_ = Fail(ErrorCode::kNotFound, "nothing arrives");
  std::function<void()> before_answer_;
  std::vector<MissingBlob> asked_;
};

class ArrivingBlobTest : public BlobServerTest {
 protected:
  void SetUp() override {
    BlobServerTest::SetUp();
    missing_ = RandomBytes(200 << 10, 7);
    missing_digest_ = Digest::Sha256Of(missing_);
    arrival_ = std::make_shared<FakeArrival>(dir_.Join("arriving"));
  }

  // GET of the missing blob as a peer asks for it (ns percent-encoded, as berth sends it).
  Result<Reply> AskForMissing(RawClient& client) {
    BERTH_RETURN_IF_ERROR(
        client.Send(fmt::format("GET {}?ns=127.0.0.1%3A5000 HTTP/1.1\r\nHost: peer\r\n\r\n",
                                BlobPath(missing_digest_, "team/app"))));
    return client.Read();
  }

  std::string missing_;
  Digest missing_digest_ = Digest::Sha256Of("");
  std::shared_ptr<FakeArrival> arrival_;
  FakeArrivingBlobs arriving_;
};

TEST_F(ArrivingBlobTest, ABlobTheStoreLacksIsSentAsItArrivesAndEndsOnlyWhenItsDownloadDoes) {
  arriving_.Answer(std::shared_ptr<ArrivingBlob>(arrival_));
  ASSERT_NO_FATAL_FAILURE(StartServer({.arriving = &arriving_}));
  const size_t first = 100 << 10;
  arrival_->Append(std::string_view(missing_).substr(0, first));
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply, AskForMissing(client));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.Header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(reply.Header("Content-Length"), std::nullopt);
  EXPECT_EQ(reply.Header("Docker-Content-Digest"), missing_digest_.ToString());
  ASSERT_EQ(arriving_.asked().size(), 1u);
  EXPECT_EQ(arriving_.asked()[0].digest, missing_digest_);
  EXPECT_EQ(arriving_.asked()[0].repository, "team/app");
  EXPECT_EQ(arriving_.asked()[0].registry, "127.0.0.1:5000");

  // The bytes so far come while the download still runs: only once they are here does the rest
  // arrive and the download end.
  std::string body;
  std::string before_the_end;
  ASSERT_OK(client.ReadChunked([&](std::string_view piece) -> Result<void> {
    body += piece;
    if (body.size() == first) {
      before_the_end = body;
      arrival_->Append(std::string_view(missing_).substr(first));
      arrival_->End();
    }
    return Ok();
  }));
  EXPECT_EQ(before_the_end, missing_.substr(0, first));
  EXPECT_EQ(body, missing_);
  // The connection is kept for the next request.
  ASSERT_OK_AND_ASSIGN(Reply probe, client.Ask("GET", "/v2/"));
  EXPECT_EQ(probe.status, 200);
  const std::vector<RecordingObserver::Done> done = observer_.WaitForDone(1);
  ASSERT_FALSE(done.empty());
  EXPECT_EQ(done[0].status, 200);
  EXPECT_EQ(done[0].bytes, missing_.size());
}

TEST_F(ArrivingBlobTest, ADownloadThatFailsCutsTheResponseShort) {
  arriving_.Answer(std::shared_ptr<ArrivingBlob>(arrival_));
  ASSERT_NO_FATAL_FAILURE(StartServer({.arriving = &arriving_}));
  arrival_->Append(std::string_view(missing_).substr(0, 1000));
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply, AskForMissing(client));
  EXPECT_EQ(reply.status, 200);
  std::string body;
  Result<void> read = client.ReadChunked([&](std::string_view piece) -> Result<void> {
    body += piece;
    if (body.size() == 1000) arrival_->Fail();
    return Ok();
  });
  // No terminating chunk: the connection closes, and the client sees an incomplete body.
  EXPECT_THAT(read, FailsWith(ErrorCode::kUnavailable));
  EXPECT_EQ(body, missing_.substr(0, 1000));
}

TEST_F(ArrivingBlobTest, NothingToFollowIs404ABusyFetcherIs429AndHeadStartsNothing) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.arriving = &arriving_}));
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply head, client.Ask("HEAD", BlobPath(missing_digest_)));
  EXPECT_EQ(head.status, 404);
  EXPECT_TRUE(arriving_.asked().empty()) << "a HEAD started a fetch";

  ASSERT_OK_AND_ASSIGN(Reply absent, client.Ask("GET", BlobPath(missing_digest_)));
  EXPECT_EQ(absent.status, 404);
  EXPECT_EQ(ErrorCodeOf(absent), "BLOB_UNKNOWN");
  ASSERT_EQ(arriving_.asked().size(), 1u);
  EXPECT_EQ(arriving_.asked()[0].registry, "") << "no ns= was sent";

  arriving_.Answer(Fail(ErrorCode::kResourceExhausted, "fetching 8 blobs for peers already"));
  ASSERT_OK_AND_ASSIGN(Reply busy, client.Ask("GET", BlobPath(missing_digest_)));
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(busy.Header("Retry-After"), "1");
  EXPECT_EQ(ErrorCodeOf(busy), "TOOMANYREQUESTS");
  EXPECT_THAT(busy.body, HasSubstr("fetching 8 blobs for peers already"));
}

TEST_F(ArrivingBlobTest, ABlobStoredMeanwhileIsServedFromTheStore) {
  arriving_.Answer(Fail(ErrorCode::kAlreadyExists, "stored"), [&] { Put(missing_); });
  ASSERT_NO_FATAL_FAILURE(StartServer({.max_concurrent_uploads = 1, .arriving = &arriving_}));
  RawClient client = Connect();
  ASSERT_OK_AND_ASSIGN(Reply reply, client.Ask("GET", BlobPath(missing_digest_)));
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.Header("Content-Length"), std::to_string(missing_.size()));
  EXPECT_EQ(reply.body, missing_);
}

}  // namespace
}  // namespace berth::peers
