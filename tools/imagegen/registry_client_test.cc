#include "tools/imagegen/registry_client.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>

#include "berth/base/base64.h"
#include "berth/base/file_util.h"
#include "testing/http_server.h"
#include "testing/temp_dir.h"

namespace berth::imagegen {
namespace {

using berth::testing::HttpServer;
using berth::testing::HttpServerRequest;
using berth::testing::HttpServerResponse;

TEST(ResolveLocationTest, AbsoluteRootedAndRelative) {
  std::string request = "http://127.0.0.1:5000/v2/repo/blobs/uploads/";
  EXPECT_EQ(ResolveLocation(request, "https://other:9/upload?x=1"), "https://other:9/upload?x=1");
  EXPECT_EQ(ResolveLocation(request, "/v2/repo/blobs/uploads/u1?_state=s"),
            "http://127.0.0.1:5000/v2/repo/blobs/uploads/u1?_state=s");
  EXPECT_EQ(ResolveLocation(request, "u2"), "http://127.0.0.1:5000/v2/repo/blobs/uploads/u2");
  EXPECT_EQ(ResolveLocation("http://h/v2/r/blobs/uploads/u1?_state=a/b", "u3"),
            "http://h/v2/r/blobs/uploads/u3");
  EXPECT_EQ(ResolveLocation(request, "//cdn.example/x"), "http://cdn.example/x");
}

TEST(AppendQueryTest, ChoosesSeparatorAndEncodes) {
  EXPECT_EQ(AppendQuery("http://h/u", "digest", "sha256:ab"), "http://h/u?digest=sha256%3Aab");
  EXPECT_EQ(AppendQuery("http://h/u?_state=x", "digest", "sha256:ab"),
            "http://h/u?_state=x&digest=sha256%3Aab");
  EXPECT_EQ(AppendQuery("http://h/t", "scope", "repository:a/b:pull,push"),
            "http://h/t?scope=repository%3Aa%2Fb%3Apull%2Cpush");
}

TEST(RegistryClientTest, CreateRejectsNonHttpUrls) {
  Result<std::unique_ptr<RegistryClient>> client = RegistryClient::Create({.base_url = "ftp://x"});
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().code(), ErrorCode::kInvalidArgument);
}

// A scripted registry on loopback: records every request and answers from a handler.
class FakeRegistry {
 public:
  using Handler = std::function<HttpServerResponse(const HttpServerRequest&)>;
  explicit FakeRegistry(Handler handler) : handler_(std::move(handler)) {
    auto server = HttpServer::Start([this](const HttpServerRequest& request) {
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
      return handler_(request);
    });
    EXPECT_TRUE(server.has_value());
    server_ = std::move(*server);
  }
  std::string url() const { return server_->url(); }
  std::vector<HttpServerRequest> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  Handler handler_;
  std::mutex mutex_;
  std::vector<HttpServerRequest> requests_;
  std::unique_ptr<HttpServer> server_;
};

std::unique_ptr<RegistryClient> ClientFor(const std::string& url, RegistryClientOptions options) {
  options.base_url = url;
  Result<std::unique_ptr<RegistryClient>> client = RegistryClient::Create(std::move(options));
  EXPECT_TRUE(client.has_value());
  return std::move(*client);
}

TEST(RegistryClientTest, RelativeLocationWithQueryAndChunkedFileUpload) {
  std::mutex mutex;
  std::string received;
  FakeRegistry registry([&](const HttpServerRequest& request) -> HttpServerResponse {
    if (request.method == "POST") {
      return {.status = 202, .headers = {{"Location", "session1?_state=one"}}};
    }
    if (request.method == "PATCH") {
      std::lock_guard lock(mutex);
      received += request.body;
      return {.status = 202,
              .headers = {{"Location", "/v2/repo/blobs/uploads/session1?_state=" +
                                           std::to_string(received.size())}}};
    }
    if (request.method == "PUT") return {.status = 201};
    return {.status = 500};
  });
  Result<berth::testing::TempDir> dir = berth::testing::TempDir::Create("imagegen");
  ASSERT_TRUE(dir.has_value());
  std::string content(2500, 'q');
  content[1234] = '!';
  ASSERT_TRUE(WriteFileAtomically(dir->Join("blob"), content).has_value());

  auto client = ClientFor(registry.url(), {.upload_chunk_bytes = 1000});
  Digest digest = Digest::Sha256Of(content);
  Result<void> pushed = client->PushBlobFile("repo", digest, dir->Join("blob"));
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString();
  EXPECT_EQ(received, content);

  std::vector<HttpServerRequest> requests = registry.requests();
  ASSERT_EQ(requests.size(), 5u);
  EXPECT_EQ(requests[0].target, "/v2/repo/blobs/uploads/");
  EXPECT_EQ(requests[1].target, "/v2/repo/blobs/uploads/session1?_state=one");
  EXPECT_EQ(requests[1].Header("Content-Range"), "0-999");
  EXPECT_EQ(requests[2].target, "/v2/repo/blobs/uploads/session1?_state=1000");
  EXPECT_EQ(requests[3].Header("Content-Range"), "2000-2499");
  EXPECT_EQ(requests[4].method, "PUT");
  EXPECT_EQ(requests[4].target,
            "/v2/repo/blobs/uploads/session1?_state=2500&digest=sha256%3A" + digest.encoded());
  EXPECT_TRUE(requests[4].body.empty());
}

TEST(RegistryClientTest, BearerChallengeFetchesAndCachesAToken) {
  std::string token_url;
  FakeRegistry registry([&](const HttpServerRequest& request) -> HttpServerResponse {
    if (request.path == "/token") {
      if (request.Header("Authorization") != "Basic " + Base64Encode("alice:s3cret")) {
        return {.status = 401};
      }
      if (request.QueryValue("service") != "fake" ||
          request.QueryValue("scope") != "repository:team/app:pull") {
        return {.status = 400};
      }
      return {.status = 200, .body = R"({"token":"tok-123","expires_in":300})"};
    }
    if (request.Header("Authorization") != "Bearer tok-123") {
      return {
          .status = 401,
          .headers = {{"WWW-Authenticate", "Bearer realm=\"" + token_url + "\",service=\"fake\""}},
          .body = R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})"};
    }
    return {.status = 200,
            .headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}},
            .body = "{}"};
  });
  token_url = registry.url() + "/token";

  auto client = ClientFor(registry.url(), {.username = "alice", .password = Secret("s3cret")});
  for (int i = 0; i < 2; ++i) {
    Result<FetchedManifest> manifest = client->GetManifest("team/app", "latest");
    ASSERT_TRUE(manifest.has_value()) << manifest.error().ToString();
    EXPECT_EQ(manifest->bytes, "{}");
    EXPECT_EQ(manifest->media_type, "application/vnd.oci.image.manifest.v1+json");
  }
  int token_requests = 0;
  for (const auto& request : registry.requests()) token_requests += request.path == "/token";
  EXPECT_EQ(token_requests, 1) << "the token must be cached per scope";
  // 401, token, retry, then the cached token straight away.
  EXPECT_EQ(registry.requests().size(), 4u);
}

TEST(RegistryClientTest, RejectedCredentialsAreUnauthenticatedAndNotLeaked) {
  FakeRegistry registry([](const HttpServerRequest&) -> HttpServerResponse {
    return {.status = 401, .headers = {{"WWW-Authenticate", "Basic realm=\"fake\""}}};
  });
  auto client = ClientFor(registry.url(), {.username = "bob", .password = Secret("hunter2-pw")});
  Result<bool> exists = client->BlobExists("r", Digest::Sha256Of("x"));
  ASSERT_FALSE(exists.has_value());
  EXPECT_EQ(exists.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(exists.error().ToString().find("hunter2-pw"), std::string::npos);
  EXPECT_EQ(exists.error().ToString().find(Base64Encode("bob:hunter2-pw")), std::string::npos);
  std::vector<HttpServerRequest> requests = registry.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_FALSE(requests[0].Header("Authorization").has_value());
  EXPECT_EQ(requests[1].Header("Authorization"), "Basic " + Base64Encode("bob:hunter2-pw"));

  auto anonymous = ClientFor(registry.url(), {});
  Result<bool> denied = anonymous->BlobExists("r", Digest::Sha256Of("x"));
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), ErrorCode::kUnauthenticated);
}

TEST(RegistryClientTest, BlobWithWrongContentIsDataLoss) {
  FakeRegistry registry([](const HttpServerRequest&) -> HttpServerResponse {
    return {.status = 200, .body = "tampered"};
  });
  auto client = ClientFor(registry.url(), {});
  Result<std::string> blob = client->GetBlob("r", Digest::Sha256Of("original"));
  ASSERT_FALSE(blob.has_value());
  EXPECT_EQ(blob.error().code(), ErrorCode::kDataLoss);
  Result<FetchedManifest> manifest =
      client->GetManifest("r", Digest::Sha256Of("original").ToString());
  ASSERT_FALSE(manifest.has_value());
  EXPECT_EQ(manifest.error().code(), ErrorCode::kDataLoss);
}

TEST(RegistryClientTest, StatusCodesMapToErrorCodes) {
  FakeRegistry registry([](const HttpServerRequest& request) -> HttpServerResponse {
    if (request.path.find("missing") != std::string::npos) {
      return {.status = 404,
              .body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})"};
    }
    return {.status = 503};
  });
  auto client = ClientFor(registry.url(), {});
  Result<FetchedManifest> missing = client->GetManifest("missing", "latest");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().ToString().find("MANIFEST_UNKNOWN"), std::string::npos);
  Result<bool> unavailable = client->BlobExists("busy", Digest::Sha256Of(""));
  ASSERT_FALSE(unavailable.has_value());
  EXPECT_EQ(unavailable.error().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace berth::imagegen
