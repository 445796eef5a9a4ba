// End-to-end tests of the pull capability: berth::pull::Puller with a real content::Store on a
// temp dir and a real registry::CurlTransport, against real Distribution registries (every
// TestRegistry mode), the token server, FaultProxy for faults and request counting, and small
// HttpServers as mirrors and redirect targets. One test at the end drives the `berth` CLI.
//
// Each test starts the registries it needs (about 0.3 s each), so tests are independent and may
// run in any order or in parallel (ctest -j).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/base64.h"
#include "berth/base/cancel.h"
#include "berth/base/redact.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/image/platform.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "test/integration/pull_fixture.h"
#include "testing/fault_proxy.h"
#include "testing/http_fetch.h"
#include "testing/http_server.h"
#include "testing/http_wire.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "testing/token_server.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

extern char** environ;

using ::berth::testing::FailsWith;

namespace berth::pull {
namespace {

using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::FaultRule;
using berth::testing::HttpServer;
using berth::testing::HttpServerRequest;
using berth::testing::HttpServerResponse;
using berth::testing::ProxiedRequest;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using berth::testing::TestRegistryOptions;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kRepository = "demo";
constexpr int64_t kMiB = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Images

// Incompressible bytes, the same for the same seed.
std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    uint64_t value = random();
    for (size_t j = 0; j < 8 && i + j < size; ++j)
      bytes[i + j] = static_cast<char>(value >> (8 * j));
  }
  return bytes;
}

// A layer holding one file of `size` random bytes (plus a small marker naming the seed).
imagegen::Layer MakeLayer(size_t size, uint32_t seed) {
  imagegen::FileTree tree;
  tree.AddFile("data/marker-" + std::to_string(seed), std::to_string(seed) + "\n");
  tree.AddFile("data/blob-" + std::to_string(seed), RandomBytes(size, seed));
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  EXPECT_OK(layer);
  return layer ? std::move(*layer) : imagegen::Layer{};
}

// A linux image for `architecture`/`variant` over `layers`.
imagegen::Image MakeImage(std::vector<imagegen::Layer> layers, std::string architecture = "amd64",
                          std::string variant = "",
                          const std::map<std::string, std::string>& annotations = {}) {
  imagegen::ImageConfig config{
      .architecture = std::move(architecture), .variant = std::move(variant), .cmd = {"/bin/sh"}};
  Result<imagegen::Image> image = imagegen::AssembleImage(
      config, std::move(layers), imagegen::ManifestFormat::kOci, annotations);
  EXPECT_OK(image);
  return image ? std::move(*image) : imagegen::Image{};
}

// Every blob of `image`: manifest, config, layers.
std::vector<imagegen::Descriptor> BlobsOf(const imagegen::Image& image) {
  std::vector<imagegen::Descriptor> blobs = {image.manifest, image.config};
  for (const imagegen::Layer& layer : image.layers) blobs.push_back(layer.blob);
  return blobs;
}

int64_t LayerBytes(const imagegen::Image& image) {
  int64_t total = 0;
  for (const imagegen::Layer& layer : image.layers) total += layer.blob.size;
  return total;
}

// ---------------------------------------------------------------------------------------------
// Registries and servers

std::unique_ptr<TestRegistry> StartRegistry(TestRegistryOptions options = {}) {
  options.log_level = "warn";
  Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start(std::move(options));
  EXPECT_OK(registry);
  return registry ? std::move(*registry) : nullptr;
}

std::unique_ptr<FaultProxy> StartProxy(const std::string& upstream) {
  Result<std::unique_ptr<FaultProxy>> proxy = FaultProxy::Start(upstream);
  EXPECT_OK(proxy);
  return proxy ? std::move(*proxy) : nullptr;
}

std::unique_ptr<HttpServer> StartServer(berth::testing::HttpHandler handler) {
  Result<std::unique_ptr<HttpServer>> server = HttpServer::Start(std::move(handler));
  EXPECT_OK(server);
  return server ? std::move(*server) : nullptr;
}

// A push client with the registry's TLS material and (for auth modes) its credentials.
std::unique_ptr<imagegen::RegistryClient> PushClient(const TestRegistry& registry) {
  imagegen::RegistryClientOptions options{.base_url = registry.url(),
                                          .ca_file = registry.ca_file(),
                                          .client_certificate_file = registry.client_cert_file(),
                                          .client_key_file = registry.client_key_file()};
  if (registry.mode() == TestRegistryMode::kBasicAuth ||
      registry.mode() == TestRegistryMode::kTokenAuth) {
    options.username = registry.username();
    options.password = registry.password();
  }
  Result<std::unique_ptr<imagegen::RegistryClient>> client =
      imagegen::RegistryClient::Create(std::move(options));
  EXPECT_OK(client);
  return client ? std::move(*client) : nullptr;
}

template <typename ImageOrIndex>
bool Push(const TestRegistry& registry, std::string_view repository, std::string_view tag,
          const ImageOrIndex& image) {
  std::unique_ptr<imagegen::RegistryClient> client = PushClient(registry);
  if (client == nullptr) return false;
  Result<imagegen::PushedImage> pushed = imagegen::PushImage(*client, repository, tag, image);
  EXPECT_TRUE(pushed) << pushed.error().ToString() << "\n" << registry.ReadLog();
  return pushed.has_value();
}

// A port nothing listens on (a dead mirror).
std::string ClosedLoopbackHost() {
  Result<uint16_t> port = berth::testing::FreeLoopbackPort();
  EXPECT_OK(port);
  return "127.0.0.1:" + std::to_string(port ? *port : 1);
}

// Forwards TCP connections from another loopback address (127.0.0.2, ::1; the port is chosen
// by the kernel) to 127.0.0.1:`target_port`, where the test registries listen, so that a pull can
// name a registry by that address. Each connection gets a thread that copies bytes both ways
// until either side closes. It counts the connections that open with a TLS handshake record
// (0x16) and those that open with anything else (plain HTTP).
class LoopbackRelay {
 public:
  // What the relay does with a connection that opens with a TLS handshake: forward it like any
  // other, or swallow it and never answer (a plain server that waits for a request line).
  enum class TlsHandshakes { kForward, kSwallow };

  // Null when `address` cannot be bound (no IPv6, say).
  static std::unique_ptr<LoopbackRelay> Start(const std::string& address, uint16_t target_port,
                                              TlsHandshakes tls = TlsHandshakes::kForward) {
    const bool v6 = address.find(':') != std::string::npos;
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
      a->sin6_family = AF_INET6;
      if (::inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) return nullptr;
      length = sizeof(sockaddr_in6);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&storage);
      a->sin_family = AF_INET;
      if (::inet_pton(AF_INET, address.c_str(), &a->sin_addr) != 1) return nullptr;
      length = sizeof(sockaddr_in);
    }
    int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
      ::close(fd);
      return nullptr;
    }
    auto relay = std::unique_ptr<LoopbackRelay>(new LoopbackRelay(fd, target_port, tls));
    relay->port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
    relay->acceptor_ = std::thread([raw = relay.get()] { raw->Accept(); });
    return relay;
  }

  ~LoopbackRelay() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    ::close(listener_);
    std::lock_guard lock(mutex_);
    for (std::thread& pump : pumps_) pump.join();
  }

  uint16_t port() const { return port_; }
  size_t tls_connections() const { return tls_connections_.load(); }
  size_t plain_connections() const { return plain_connections_.load(); }

 private:
  LoopbackRelay(int listener, uint16_t target_port, TlsHandshakes tls)
      : listener_(listener), target_port_(target_port), tls_(tls) {}

  void Accept() {
    while (!stopping_) {
      int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EINTR) continue;
        return;
      }
      std::lock_guard lock(mutex_);
      pumps_.emplace_back([this, client] { Pump(client); });
    }
  }

  void Pump(int client) {
    pollfd first{.fd = client, .events = POLLIN, .revents = 0};
    char byte = 0;
    if (::poll(&first, 1, 5000) == 1 && ::recv(client, &byte, 1, MSG_PEEK) == 1) {
      ++(byte == '\x16' ? tls_connections_ : plain_connections_);
    }
    if (byte == '\x16' && tls_ == TlsHandshakes::kSwallow) {
      std::vector<char> sink(4096);
      while (!stopping_) {
        if (::poll(&first, 1, 100) == 1 && ::read(client, sink.data(), sink.size()) <= 0) break;
      }
      ::close(client);
      return;
    }
    int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in target{};
    target.sin_family = AF_INET;
    target.sin_port = htons(target_port_);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (upstream >= 0 &&
        ::connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof(target)) == 0) {
      pollfd fds[2] = {{.fd = client, .events = POLLIN, .revents = 0},
                       {.fd = upstream, .events = POLLIN, .revents = 0}};
      std::vector<char> buffer(64 << 10);
      bool open = true;
      while (open && !stopping_) {
        if (::poll(fds, 2, 100) <= 0) continue;
        for (int i = 0; i < 2 && open; ++i) {
          if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          ssize_t got = ::read(fds[i].fd, buffer.data(), buffer.size());
          open = got > 0 && WriteAll(fds[1 - i].fd, buffer.data(), static_cast<size_t>(got));
        }
      }
    }
    if (upstream >= 0) ::close(upstream);
    ::close(client);
  }

  static bool WriteAll(int fd, const char* data, size_t size) {
    while (size > 0) {
      ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;
      data += sent;
      size -= static_cast<size_t>(sent);
    }
    return true;
  }

  const int listener_;
  const uint16_t target_port_;
  const TlsHandshakes tls_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> tls_connections_{0};
  std::atomic<size_t> plain_connections_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::vector<std::thread> pumps_;
};

// ---------------------------------------------------------------------------------------------
// Fixture: PullFixture's store, transport and Pull, and checks of what the store holds.

class PullTest : public PullFixture {
 protected:
  // Asserts that `pulled` is `image` and that every blob of it is in the store with its size.
  void ExpectPulled(const Result<PulledImage>& pulled, const imagegen::Image& image) {
    ASSERT_OK(pulled);
    EXPECT_EQ(pulled->image_id, image.config.digest);
    EXPECT_EQ(pulled->manifest.digest, image.manifest.digest);
    ASSERT_EQ(pulled->parsed_manifest.layers.size(), image.layers.size());
    for (const imagegen::Descriptor& blob : BlobsOf(image)) {
      Result<content::BlobInfo> info = store_->Info(blob.digest);
      ASSERT_TRUE(info) << blob.digest.ToString()
                        << " missing from the store: " << info.error().ToString();
      EXPECT_EQ(info->size, blob.size) << blob.digest.ToString();
    }
  }

  // Blobs committed to the store.
  std::vector<content::BlobInfo> StoredBlobs() {
    std::vector<content::BlobInfo> blobs;
    Result<void> walked =
        store_->Walk([&](const content::BlobInfo& info) { blobs.push_back(info); });
    EXPECT_OK(walked);
    return blobs;
  }

  size_t IngestCount() {
    Result<std::vector<content::IngestInfo>> ingests = store_->ListIngests();
    EXPECT_OK(ingests);
    return ingests ? ingests->size() : 0;
  }
};

// Text of an error must not carry a credential.
void ExpectNoSecret(const Error& error, const std::string& secret) {
  ASSERT_FALSE(secret.empty());
  EXPECT_THAT(error.ToString(), Not(HasSubstr(secret))) << "credential leaked into the error";
}

// ---------------------------------------------------------------------------------------------
// 1. Anonymous plain HTTP

TEST_F(PullTest, AnonymousPlainHttpStoresEveryBlobAndSecondPullFetchesNothing) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image =
      MakeImage({MakeLayer(300 << 10, 1), MakeLayer(200 << 10, 2), MakeLayer(1000, 3)});
  ASSERT_TRUE(Push(*registry, kRepository, "v1", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  const std::string reference = proxy->host() + "/demo:v1";
  std::mutex mutex;
  std::map<std::string, BlobProgress> last_progress;  // by digest
  auto record = [&](const BlobProgress& blob) {
    std::lock_guard lock(mutex);
    last_progress[blob.digest.ToString()] = blob;
  };

  Result<PulledImage> first = MakePuller()->Pull(reference, Amd64(), record, CancelToken::Never());
  ExpectPulled(first, image);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->bytes_fetched, image.config.size + LayerBytes(image));
  EXPECT_EQ(first->content_size, image.manifest.size + image.config.size + LayerBytes(image));
  EXPECT_EQ(first->reference.ToString(), reference);
  EXPECT_EQ(first->config.architecture, "amd64");
  // config + 3 layers, each fetched exactly once.
  EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 4u) << proxy->DescribeRequests();
  EXPECT_EQ(StoredBlobs().size(), 5u);  // manifest, config, 3 layers
  EXPECT_EQ(IngestCount(), 0u);
  for (const imagegen::Layer& layer : image.layers) {
    const BlobProgress& progress = last_progress[layer.blob.digest.ToString()];
    EXPECT_TRUE(progress.complete) << layer.blob.digest.ToString();
    EXPECT_FALSE(progress.cached);
    EXPECT_EQ(progress.done, layer.blob.size);
    EXPECT_EQ(progress.total, layer.blob.size);
  }

  proxy->ResetCounters();
  last_progress.clear();
  Result<PulledImage> second = MakePuller()->Pull(reference, Amd64(), record, CancelToken::Never());
  ASSERT_OK(second);
  EXPECT_EQ(second->image_id, image.config.digest);
  EXPECT_EQ(second->bytes_fetched, 0);
  EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 0u) << proxy->DescribeRequests();
  for (const imagegen::Layer& layer : image.layers) {
    EXPECT_TRUE(last_progress[layer.blob.digest.ToString()].cached) << layer.blob.digest.ToString();
  }
}

TEST_F(PullTest, PullByDigestVerifiesAndStoresTheManifest) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  Result<imagegen::Image> demo = imagegen::MakeDemoImage();
  ASSERT_OK(demo);
  ASSERT_TRUE(Push(*registry, kRepository, "latest", *demo));

  Result<PulledImage> pulled = Pull(registry->host() + "/demo@" + demo->manifest.digest.ToString());
  ExpectPulled(pulled, *demo);
  ASSERT_TRUE(pulled);
  EXPECT_EQ(pulled->target.digest, demo->manifest.digest);
}

TEST_F(PullTest, MissingTagIsNotFound) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  Result<PulledImage> pulled = Pull(registry->host() + "/demo:absent");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(pulled.error().ToString(), HasSubstr("demo:absent"));
  EXPECT_TRUE(StoredBlobs().empty());
}

// ---------------------------------------------------------------------------------------------
// 2. TLS with a generated CA

// An https-only endpoint for a loopback registry (written without a scheme, a loopback host
// would fall back to plain http): a mirror entry naming the registry itself with https://.
config::Config HttpsConfig(const TestRegistry& registry) {
  config::Config config = config::DefaultConfig();
  config.registry.mirrors[registry.host()].endpoints = {"https://" + registry.host()};
  return config;
}

TEST_F(PullTest, TlsWithConfiguredCaSucceedsAndFailsWithoutIt) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(100 << 10, 10)});
  ASSERT_TRUE(Push(*registry, kRepository, "tls", image));
  const std::string reference = registry->host() + "/demo:tls";

  config::Config without_ca = HttpsConfig(*registry);
  Result<PulledImage> refused = Pull(without_ca, reference);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused, FailsWith(ErrorCode::kUnavailable));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("TLS"));
  EXPECT_TRUE(StoredBlobs().empty());

  config::Config with_ca = HttpsConfig(*registry);
  with_ca.registry.configs[registry->host()].tls.ca_file = registry->ca_file().string();
  ExpectPulled(Pull(with_ca, reference), image);
}

// Every loopback address is localhost (as in containerd): a plain http registry named by
// 127.0.0.2 or ::1 without a scheme is reached (https first, then plain http), not only one named
// by 127.0.0.1.
TEST_F(PullTest, EveryLoopbackAddressIsReachedOverPlainHttp) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(32 << 10, 12)});
  ASSERT_TRUE(Push(*registry, kRepository, "loop", image));

  std::unique_ptr<LoopbackRelay> v4 = LoopbackRelay::Start("127.0.0.2", registry->port());
  ASSERT_NE(v4, nullptr) << "cannot listen on 127.0.0.2";
  ExpectPulled(Pull("127.0.0.2:" + std::to_string(v4->port()) + "/demo:loop"), image);

  std::unique_ptr<LoopbackRelay> v6 = LoopbackRelay::Start("::1", registry->port());
  if (v6 == nullptr) GTEST_SKIP() << "no IPv6 loopback here; 127.0.0.2 passed";
  ExpectPulled(Pull("[::1]:" + std::to_string(v6->port()) + "/demo:loop"), image);
}

// TLS settings configured for a loopback host are accepted and mean https there (they used to be
// refused as "TLS settings for an endpoint that is not https").
TEST_F(PullTest, TlsConfiguredForALoopbackHostMeansHttps) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 13)});
  ASSERT_TRUE(Push(*registry, kRepository, "tls", image));
  config::Config config = config::DefaultConfig();
  config.registry.configs[registry->host()].tls.ca_file = registry->ca_file().string();
  ExpectPulled(Pull(config, registry->host() + "/demo:tls"), image);
}

// containerd's localhost rule: a loopback registry named without a scheme, on a port other than
// 80 and 443 and without TLS settings, is asked over https first; a plain http registry answers
// the handshake with "HTTP/1.1 400", and the pull goes on over plain http. The client remembers
// that: one TLS attempt for the whole pull (manifest, config, three layers) and none for a second
// pull through the same Puller.
TEST_F(PullTest, PlainHttpLoopbackRegistryIsPulledAfterOneHttpsAttempt) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image =
      MakeImage({MakeLayer(64 << 10, 14), MakeLayer(32 << 10, 15), MakeLayer(1000, 16)});
  ASSERT_TRUE(Push(*registry, kRepository, "fallback", image));
  ASSERT_TRUE(Push(*registry, kRepository, "again", image));
  std::unique_ptr<LoopbackRelay> relay = LoopbackRelay::Start("127.0.0.1", registry->port());
  ASSERT_NE(relay, nullptr);
  const std::string host = "127.0.0.1:" + std::to_string(relay->port());

  std::unique_ptr<Puller> puller = MakePuller();
  ExpectPulled(puller->Pull(host + "/demo:fallback", Amd64(), nullptr, CancelToken::Never()),
               image);
  EXPECT_EQ(relay->tls_connections(), 1u) << "https is tried once, then remembered as plain http";
  EXPECT_GE(relay->plain_connections(), 1u);
  ExpectPulled(puller->Pull(host + "/demo:again", Amd64(), nullptr, CancelToken::Never()), image);
  EXPECT_EQ(relay->tls_connections(), 1u) << "the second pull asks over plain http directly";
}

// containerd also falls back when the TCP connection is made but the TLS handshake times out (a
// plain server that waits for a request line and never answers the ClientHello): the transport
// repeats the exchange over http:// and says why; without the fallback the timeout is the error.
TEST_F(PullTest, TlsHandshakeTimeoutFallsBackToPlainHttp) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  std::unique_ptr<LoopbackRelay> relay =
      LoopbackRelay::Start("127.0.0.1", registry->port(), LoopbackRelay::TlsHandshakes::kSwallow);
  ASSERT_NE(relay, nullptr);
  registry::HttpRequest request{
      .url = "https://127.0.0.1:" + std::to_string(relay->port()) + "/v2/",
      .connect_timeout = std::chrono::milliseconds(700),
      .plain_http_fallback = registry::PlainHttpFallback::kWhenServerIsNotTls};

  Result<registry::HttpResponse> fell_back =
      transport_->RoundTrip(request, nullptr, CancelToken::Never());
  ASSERT_OK(fell_back);
  EXPECT_EQ(fell_back->status, 200);
  ASSERT_TRUE(fell_back->https_failure.has_value());
  EXPECT_THAT(fell_back->https_failure->message(), HasSubstr("TLS handshake timed out"));
  EXPECT_EQ(relay->tls_connections(), 1u);
  EXPECT_EQ(relay->plain_connections(), 1u);

  request.plain_http_fallback = registry::PlainHttpFallback::kNever;
  Result<registry::HttpResponse> timed_out =
      transport_->RoundTrip(request, nullptr, CancelToken::Never());
  EXPECT_THAT(timed_out, FailsWith(ErrorCode::kDeadlineExceeded));
  EXPECT_EQ(relay->plain_connections(), 1u);
}

// A TLS loopback registry whose CA is configured is reached over https only, whether the CA is
// given in configs.<host>.tls or in the host's hosts.toml (the default server, written without a
// scheme): never a plain http connection.
TEST_F(PullTest, TlsLoopbackRegistryWithItsCaIsPulledOverHttpsOnly) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(20 << 10, 17), MakeLayer(1000, 18)});
  ASSERT_TRUE(Push(*registry, kRepository, "tls", image));
  std::unique_ptr<LoopbackRelay> relay = LoopbackRelay::Start("127.0.0.1", registry->port());
  ASSERT_NE(relay, nullptr);
  const std::string host = "127.0.0.1:" + std::to_string(relay->port());

  config::Config in_configs = config::DefaultConfig();
  in_configs.registry.configs[host].tls.ca_file = registry->ca_file().string();
  ExpectPulled(Pull(in_configs, host + "/demo:tls"), image);

  // The blobs are stored now; the second pull still resolves the tag at the registry.
  const std::filesystem::path certs_d = dir_.Join("certs.d");
  std::filesystem::create_directories(certs_d / host);
  std::ofstream(certs_d / host / "hosts.toml")
      << "ca = \"" << registry->ca_file().string() << "\"\n";
  config::Config in_hosts_toml = config::DefaultConfig();
  in_hosts_toml.registry.config_path = certs_d.string();
  Result<PulledImage> pulled = Pull(in_hosts_toml, host + "/demo:tls");
  EXPECT_OK(pulled);
  EXPECT_EQ(relay->plain_connections(), 0u)
      << "a server configured for TLS is never asked over http";
  EXPECT_GE(relay->tls_connections(), 1u);  // curl may reuse one connection for both pulls
}

// A TLS loopback registry whose certificate is not trusted (no CA configured) fails the pull with
// a TLS error naming the untrusted certificate and what to configure. It is not retried over
// plain http: the server speaks TLS, and a certificate error is no reason to drop it (containerd
// falls back only when the reply to the handshake is plain HTTP, or the handshake times out).
TEST_F(PullTest, UntrustedTlsLoopbackRegistryFailsWithoutFallingBackToHttp) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 19)});
  ASSERT_TRUE(Push(*registry, kRepository, "tls", image));
  std::unique_ptr<LoopbackRelay> relay = LoopbackRelay::Start("127.0.0.1", registry->port());
  ASSERT_NE(relay, nullptr);
  const std::string host = "127.0.0.1:" + std::to_string(relay->port());

  Result<PulledImage> refused = Pull(host + "/demo:tls");
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused, FailsWith(ErrorCode::kUnavailable));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("certificate is not trusted"));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("ca_file"));
  EXPECT_EQ(relay->plain_connections(), 0u) << "no downgrade to plain http";
  EXPECT_GE(relay->tls_connections(), 1u);
  EXPECT_TRUE(StoredBlobs().empty());
}

// ---------------------------------------------------------------------------------------------
// 3. Client certificates

TEST_F(PullTest, ClientCertificateRequiredByRegistry) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTlsClientCert});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(50 << 10, 20)});
  ASSERT_TRUE(Push(*registry, kRepository, "mtls", image));
  const std::string reference = registry->host() + "/demo:mtls";

  config::Config without_cert = HttpsConfig(*registry);
  without_cert.registry.configs[registry->host()].tls.ca_file = registry->ca_file().string();
  Result<PulledImage> refused = Pull(without_cert, reference);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().code() == ErrorCode::kUnavailable ||
              refused.error().code() == ErrorCode::kAborted)
      << refused.error().ToString();
  EXPECT_TRUE(StoredBlobs().empty());

  config::Config with_cert = without_cert;
  config::TlsConfig& tls = with_cert.registry.configs[registry->host()].tls;
  tls.cert_file = registry->client_cert_file().string();
  tls.key_file = registry->client_key_file().string();
  ExpectPulled(Pull(with_cert, reference), image);
}

// With TLS 1.3 a registry that requires a client certificate and gets none rejects it with an
// alert on the first read, after the handshake looked complete (curl: CURLE_RECV_ERROR). That
// must still be reported as a TLS failure of the endpoint, pointing at the client certificate,
// and not be retried as an interrupted transfer.
TEST_F(PullTest, MissingClientCertificateIsReportedAsTlsFailure) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTlsClientCert});
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 25)});
  ASSERT_TRUE(Push(*registry, kRepository, "mtls", image));

  config::Config without_cert = HttpsConfig(*registry);
  without_cert.registry.configs[registry->host()].tls.ca_file = registry->ca_file().string();
  Result<PulledImage> refused = Pull(without_cert, registry->host() + "/demo:mtls");
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused, FailsWith(ErrorCode::kUnavailable));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("TLS"));
  EXPECT_THAT(refused.error().ToString(), HasSubstr("client certificate"));
  EXPECT_THAT(refused.error().ToString(), Not(HasSubstr("after 4 attempts")));
}

// ---------------------------------------------------------------------------------------------
// 4. Basic auth (and 16: no credential in errors)

class BasicAuthPullTest : public PullTest {
 protected:
  void SetUp() override {
    PullTest::SetUp();
    registry_ = StartRegistry({.mode = TestRegistryMode::kBasicAuth});
    ASSERT_NE(registry_, nullptr);
    image_ = MakeImage({MakeLayer(64 << 10, 30), MakeLayer(1000, 31)});
    ASSERT_TRUE(Push(*registry_, kRepository, "basic", image_));
    reference_ = registry_->host() + "/demo:basic";
  }

  std::unique_ptr<TestRegistry> registry_;
  imagegen::Image image_;
  std::string reference_;
};

TEST_F(BasicAuthPullTest, RequestCredentialsWork) {
  PullOptions options = Amd64();
  options.auth.username = registry_->username();
  options.auth.password = registry_->password();
  ExpectPulled(Pull(reference_, options), image_);
}

TEST_F(BasicAuthPullTest, Base64AuthFieldWorks) {
  PullOptions options = Amd64();
  options.auth.auth =
      Secret(Base64Encode(registry_->username() + ":" + registry_->password().reveal()));
  ExpectPulled(Pull(reference_, options), image_);
}

TEST_F(BasicAuthPullTest, WithoutCredentialsIsUnauthenticated) {
  Result<PulledImage> pulled = Pull(reference_);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  EXPECT_TRUE(StoredBlobs().empty());
}

TEST_F(BasicAuthPullTest, ConfigFileCredentialsWork) {
  config::Config config = config::DefaultConfig();
  config.registry.configs[registry_->host()].auth.username = registry_->username();
  config.registry.configs[registry_->host()].auth.password = registry_->password();
  ExpectPulled(Pull(config, reference_), image_);
}

TEST_F(BasicAuthPullTest, ConfigFileBase64AuthWorks) {
  config::Config config = config::DefaultConfig();
  config.registry.configs[registry_->host()].auth.auth =
      Secret(Base64Encode(registry_->username() + ":" + registry_->password().reveal()));
  ExpectPulled(Pull(config, reference_), image_);
}

TEST_F(BasicAuthPullTest, ConfigCredentialsForAnotherHostAreNotUsed) {
  config::Config config = config::DefaultConfig();
  config.registry.configs["other.example:5000"].auth.username = registry_->username();
  config.registry.configs["other.example:5000"].auth.password = registry_->password();
  Result<PulledImage> pulled = Pull(config, reference_);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
}

TEST_F(BasicAuthPullTest, WrongPasswordIsUnauthenticatedAndNotEchoed) {
  const std::string wrong = berth::testing::SentinelSecret("wrong-password-4c1d");
  PullOptions options = Amd64();
  options.auth.username = registry_->username();
  options.auth.password = Secret(wrong);
  Result<PulledImage> pulled = Pull(reference_, options);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  ExpectNoSecret(pulled.error(), wrong);
  ExpectNoSecret(pulled.error(), Base64Encode(registry_->username() + ":" + wrong));
  EXPECT_TRUE(StoredBlobs().empty());
}

// The errors name the challenge (scheme and realm: where to log in, no secret) and, for a
// refused login, whose credentials were refused.
TEST_F(BasicAuthPullTest, RefusedLoginNamesUserAndRealmButNotThePassword) {
  const std::string wrong = berth::testing::SentinelSecret("wrong-password-77e0");
  PullOptions options = Amd64();
  options.auth.username = registry_->username();
  options.auth.password = Secret(wrong);
  Result<PulledImage> refused = Pull(reference_, options);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused, FailsWith(ErrorCode::kUnauthenticated));
  const std::string text = refused.error().ToString();
  EXPECT_THAT(text,
              HasSubstr("registry " + registry_->host() + " refused the credentials of user \"" +
                        registry_->username() + "\""));
  EXPECT_THAT(text, HasSubstr("Basic realm=\"berth-test-registry\""));
  ExpectNoSecret(refused.error(), wrong);
  ExpectNoSecret(refused.error(), Base64Encode(registry_->username() + ":" + wrong));

  Result<PulledImage> anonymous = Pull(reference_);
  ASSERT_FALSE(anonymous);
  EXPECT_THAT(anonymous.error().ToString(),
              HasSubstr("registry " + registry_->host() +
                        " requires credentials (Basic realm=\"berth-test-registry\")"));
}

// ---------------------------------------------------------------------------------------------
// 5. Token auth (and 16)

// Asks the token server for a refresh token (OAuth2 password grant with access_type=offline).
std::string FetchRefreshToken(const TestRegistry& registry) {
  berth::testing::TokenServer& server = *registry.token_server();
  Result<berth::testing::HttpFetchResponse> response = berth::testing::HttpFetch(
      {.method = "POST",
       .url = server.realm(),
       .headers = {{"Content-Type", "application/x-www-form-urlencoded"}},
       .body = "grant_type=password&client_id=pull-test&access_type=offline&service=" +
               berth::testing::UrlEncode(server.service()) +
               "&username=" + berth::testing::UrlEncode(registry.username()) +
               "&password=" + berth::testing::UrlEncode(registry.password().reveal())});
  EXPECT_OK(response);
  if (!response) return "";
  EXPECT_EQ(response->status, 200) << response->body;
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (!body.is_object() || !body.contains("refresh_token")) {
    ADD_FAILURE() << "no refresh_token in " << response->body;
    return "";
  }
  return body["refresh_token"].get<std::string>();
}

bool Contains(const std::vector<std::string>& values, const std::string& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

class TokenAuthPullTest : public PullTest {
 protected:
  void StartTokenRegistry(bool allow_anonymous = true) {
    TestRegistryOptions options{.mode = TestRegistryMode::kTokenAuth};
    options.token.allow_anonymous = allow_anonymous;
    registry_ = StartRegistry(std::move(options));
    ASSERT_NE(registry_, nullptr);
    image_ = MakeImage({MakeLayer(64 << 10, 40), MakeLayer(32 << 10, 41), MakeLayer(1000, 42)});
    ASSERT_TRUE(Push(*registry_, "team/app", "token", image_));
    registry_->token_server()->ResetStats();
    reference_ = registry_->host() + "/team/app:token";
  }

  PullOptions WithPassword() const {
    PullOptions options = Amd64();
    options.auth.username = registry_->username();
    options.auth.password = registry_->password();
    return options;
  }

  std::unique_ptr<TestRegistry> registry_;
  imagegen::Image image_;
  std::string reference_;
};

TEST_F(TokenAuthPullTest, CredentialsGetATokenScopedToTheRepository) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  ExpectPulled(Pull(reference_, WithPassword()), image_);
  std::vector<std::string> scopes = registry_->token_server()->requested_scopes();
  EXPECT_TRUE(Contains(scopes, "repository:team/app:pull")) << ::testing::PrintToString(scopes);
  for (const std::string& scope : scopes) {
    // Pull only: berth never asks for push rights.
    EXPECT_THAT(scope, Not(HasSubstr("push"))) << scope;
  }
  berth::testing::TokenServerStats stats = registry_->token_server()->stats();
  EXPECT_GE(stats.tokens_issued, 1u);
  // One token serves the whole pull (cached per host and scope).
  EXPECT_EQ(stats.tokens_issued, 1u);
  EXPECT_EQ(stats.anonymous_requests, 0u);
}

TEST_F(TokenAuthPullTest, WithoutCredentialsIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  Result<PulledImage> pulled = Pull(reference_);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  EXPECT_TRUE(StoredBlobs().empty());
}

TEST_F(TokenAuthPullTest, TokenInvalidatedMidPullIsRefreshed) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  auto proxy = StartProxy(registry_->host());
  ASSERT_NE(proxy, nullptr);
  berth::testing::TokenServer& server = *registry_->token_server();
  // The registry's answer to an expired token, for the second blob request only.
  Result<int> rule = proxy->AddRule(
      {.method = "GET",
       .target_contains = "/blobs/",
       .first = 2,
       .count = 1,
       .action = FaultAction::Respond(
           401,
           {{"WWW-Authenticate",
             "Bearer realm=\"" + server.realm() + "\",service=\"" + server.service() +
                 "\",scope=\"repository:team/app:pull\",error=\"invalid_token\""},
            {"Content-Type", "application/json"}},
           R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})")});
  ASSERT_OK(rule);

  ExpectPulled(Pull(proxy->host() + "/team/app:token", WithPassword()), image_);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u) << proxy->DescribeRequests();
  // The first token, and the one fetched after the 401.
  EXPECT_GE(server.stats().tokens_issued, 2u);
}

TEST_F(TokenAuthPullTest, ShortLivedTokenIsRenewedBeforeLaterRequests) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  auto proxy = StartProxy(registry_->host());
  ASSERT_NE(proxy, nullptr);
  berth::testing::TokenServer& server = *registry_->token_server();
  // Tokens live 1 s (the registry still accepts them for its 60 s of clock skew, so only berth's
  // own expiry tracking can cause a new fetch). The config fetch outlives the first token.
  server.set_token_lifetime(std::chrono::seconds(1));
  Result<int> rule =
      proxy->AddRule({.method = "GET",
                      .target_contains = image_.config.digest.ToString(),
                      .action = FaultAction::Delay(std::chrono::milliseconds(1500))});
  ASSERT_OK(rule);

  ExpectPulled(Pull(proxy->host() + "/team/app:token", WithPassword()), image_);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);
  EXPECT_GE(server.stats().tokens_issued, 2u);
  // Renewed before use: the only 401 is the registry's first challenge, before berth had any
  // token; no request was refused for an expired one.
  int refused = 0;
  for (const ProxiedRequest& request : proxy->requests()) {
    if (request.status == 401) ++refused;
  }
  EXPECT_EQ(refused, 1) << proxy->DescribeRequests();
}

TEST_F(TokenAuthPullTest, IdentityTokenUsesRefreshTokenGrant) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  std::string refresh_token = FetchRefreshToken(*registry_);
  ASSERT_FALSE(refresh_token.empty());
  registry_->token_server()->ResetStats();

  PullOptions options = Amd64();
  options.auth.identity_token = Secret(refresh_token);
  ExpectPulled(Pull(reference_, options), image_);
  berth::testing::TokenServerStats stats = registry_->token_server()->stats();
  EXPECT_GT(stats.refresh_token_grants, 0u);
  EXPECT_EQ(stats.get_requests, 0u);  // no Basic/anonymous GET was needed
  EXPECT_EQ(stats.rejected_requests, 0u);
}

TEST_F(TokenAuthPullTest, IdentityTokenFromConfigFile) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  std::string refresh_token = FetchRefreshToken(*registry_);
  ASSERT_FALSE(refresh_token.empty());
  registry_->token_server()->ResetStats();

  config::Config config = config::DefaultConfig();
  config.registry.configs[registry_->host()].auth.identity_token = Secret(refresh_token);
  ExpectPulled(Pull(config, reference_), image_);
  EXPECT_GT(registry_->token_server()->stats().refresh_token_grants, 0u);
}

TEST_F(TokenAuthPullTest, UnknownIdentityTokenIsUnauthenticatedAndNotEchoed) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  const std::string bogus = berth::testing::SentinelSecret("bogus-refresh-token-8f2e61");
  PullOptions options = Amd64();
  options.auth.identity_token = Secret(bogus);
  Result<PulledImage> pulled = Pull(reference_, options);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  ExpectNoSecret(pulled.error(), bogus);
  EXPECT_GT(registry_->token_server()->stats().rejected_requests, 0u);
}

TEST_F(TokenAuthPullTest, WrongPasswordIsUnauthenticatedAndNotEchoed) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  const std::string wrong = berth::testing::SentinelSecret("wrong-password-77aa");
  PullOptions options = Amd64();
  options.auth.username = registry_->username();
  options.auth.password = Secret(wrong);
  Result<PulledImage> pulled = Pull(reference_, options);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  ExpectNoSecret(pulled.error(), wrong);
  ExpectNoSecret(pulled.error(), Base64Encode(registry_->username() + ":" + wrong));
}

TEST_F(TokenAuthPullTest, RegistryTokenIsSentAsIsAndNotEchoed) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry());
  berth::testing::TokenServer& server = *registry_->token_server();
  Result<std::string> token = server.IssueToken(
      registry_->username(), {{.type = "repository", .name = "team/app", .actions = {"pull"}}},
      std::chrono::minutes(5));
  ASSERT_OK(token);
  server.ResetStats();

  PullOptions options = Amd64();
  options.auth.registry_token = Secret(*token);
  ExpectPulled(Pull(reference_, options), image_);
  EXPECT_EQ(server.stats().get_requests, 0u);  // the token server was never asked

  // A token for another repository is refused by the registry; its value stays out of errors.
  Result<std::string> other = server.IssueToken(
      registry_->username(), {{.type = "repository", .name = "other/repo", .actions = {"pull"}}},
      std::chrono::minutes(5));
  ASSERT_OK(other);
  PullOptions wrong_scope = Amd64();
  wrong_scope.auth.registry_token = Secret(*other);
  Result<PulledImage> refused =
      Pull(registry_->host() + "/team/app@" + image_.manifest.digest.ToString(), wrong_scope);
  // The manifest is in the store already, but resolving a digest still asks the registry.
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused, FailsWith(ErrorCode::kUnauthenticated));
  ExpectNoSecret(refused.error(), *other);
}

TEST_F(TokenAuthPullTest, ServerAddressMismatchGoesAnonymous) {
  ASSERT_NO_FATAL_FAILURE(StartTokenRegistry(/*allow_anonymous=*/false));
  PullOptions options = WithPassword();
  options.auth.server_address = "other.example";
  Result<PulledImage> pulled = Pull(reference_, options);
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnauthenticated));
  EXPECT_THAT(pulled.error().ToString(), HasSubstr("anonymous"));
  ExpectNoSecret(pulled.error(), registry_->password().reveal());

  // The same credentials addressed to this registry work.
  options.auth.server_address = "http://" + registry_->host() + "/v2/";
  ExpectPulled(Pull(reference_, options), image_);
}

// ---------------------------------------------------------------------------------------------
// 6. Mirrors

TEST_F(PullTest, DeadAndEmptyMirrorsFallBackToUpstream) {
  auto upstream = StartRegistry();
  ASSERT_NE(upstream, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(64 << 10, 50), MakeLayer(1000, 51)});
  ASSERT_TRUE(Push(*upstream, kRepository, "mirrored", image));
  auto upstream_proxy = StartProxy(upstream->host());
  ASSERT_NE(upstream_proxy, nullptr);
  std::atomic<int> empty_mirror_requests{0};
  auto empty_mirror = StartServer([&](const HttpServerRequest&) {
    ++empty_mirror_requests;
    return HttpServerResponse{
        .status = 404,
        .headers = {{"Content-Type", "application/json"}},
        .body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})"};
  });
  ASSERT_NE(empty_mirror, nullptr);

  config::Config config = config::DefaultConfig();
  config.registry.mirrors[upstream_proxy->host()].endpoints = {"http://" + ClosedLoopbackHost(),
                                                               empty_mirror->url()};
  Result<PulledImage> pulled = Pull(config, upstream_proxy->host() + "/demo:mirrored");
  ExpectPulled(pulled, image);
  EXPECT_GT(empty_mirror_requests.load(), 0);
  EXPECT_EQ(upstream_proxy->RequestCount("GET", "/blobs/"), 3u)
      << upstream_proxy->DescribeRequests();
}

TEST_F(PullTest, WildcardMirrorServesThePull) {
  auto upstream = StartRegistry();  // empty: only the mirror has the image
  ASSERT_NE(upstream, nullptr);
  auto mirror = StartRegistry();
  ASSERT_NE(mirror, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(64 << 10, 60), MakeLayer(1000, 61)});
  ASSERT_TRUE(Push(*mirror, kRepository, "wild", image));
  auto upstream_proxy = StartProxy(upstream->host());
  ASSERT_NE(upstream_proxy, nullptr);
  auto mirror_proxy = StartProxy(mirror->host());
  ASSERT_NE(mirror_proxy, nullptr);

  config::Config config = config::DefaultConfig();
  config.registry.mirrors["*"].endpoints = {mirror_proxy->url()};
  ExpectPulled(Pull(config, upstream_proxy->host() + "/demo:wild"), image);
  EXPECT_EQ(mirror_proxy->RequestCount("GET", "/v2/demo/manifests/wild"), 1u)
      << mirror_proxy->DescribeRequests();
  EXPECT_EQ(mirror_proxy->RequestCount("GET", "/blobs/"), 3u) << mirror_proxy->DescribeRequests();
  EXPECT_EQ(upstream_proxy->RequestCount(), 0u) << upstream_proxy->DescribeRequests();
}

TEST_F(PullTest, FallbackNeverWithDeadMirrorFailsWithoutContactingUpstream) {
  auto upstream = StartRegistry();
  ASSERT_NE(upstream, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 70)});
  ASSERT_TRUE(Push(*upstream, kRepository, "never", image));
  auto upstream_proxy = StartProxy(upstream->host());
  ASSERT_NE(upstream_proxy, nullptr);

  config::Config config = config::DefaultConfig();
  config.registry.mirrors[upstream_proxy->host()].endpoints = {"http://" + ClosedLoopbackHost()};
  config.registry.configs[upstream_proxy->host()].fallback = config::Fallback::kNever;
  Result<PulledImage> pulled = Pull(config, upstream_proxy->host() + "/demo:never");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kUnavailable));
  EXPECT_EQ(upstream_proxy->RequestCount(), 0u) << upstream_proxy->DescribeRequests();
  EXPECT_TRUE(StoredBlobs().empty());

  // Control: the same config with fallback allowed reaches the upstream.
  config.registry.configs[upstream_proxy->host()].fallback = config::Fallback::kAlways;
  ExpectPulled(Pull(config, upstream_proxy->host() + "/demo:never"), image);
  EXPECT_GT(upstream_proxy->RequestCount(), 0u);
}

// Every request to a mirror says which registry it is for (?ns=<registry>, after the query the
// endpoint URL has of its own), as containerd's do, so a pull-through cache knows the upstream;
// requests to the registry itself carry none.
TEST_F(PullTest, MirrorRequestsSayWhichRegistryTheyAreFor) {
  auto upstream = StartRegistry();
  ASSERT_NE(upstream, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(32 << 10, 52), MakeLayer(1000, 53)});
  ASSERT_TRUE(Push(*upstream, kRepository, "ns", image));
  auto upstream_proxy = StartProxy(upstream->host());
  ASSERT_NE(upstream_proxy, nullptr);
  std::mutex mutex;
  std::vector<std::string> mirror_targets;
  auto empty_mirror = StartServer([&](const HttpServerRequest& request) {
    std::lock_guard lock(mutex);
    mirror_targets.push_back(request.target);
    return HttpServerResponse{
        .status = 404,
        .headers = {{"Content-Type", "application/json"}},
        .body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})"};
  });
  ASSERT_NE(empty_mirror, nullptr);

  config::Config config = config::DefaultConfig();
  config.registry.mirrors[upstream_proxy->host()].endpoints = {empty_mirror->url() + "/v2?key=abc"};
  ExpectPulled(Pull(config, upstream_proxy->host() + "/demo:ns"), image);

  std::string ns = "ns=" + upstream_proxy->host();
  ns.replace(ns.find(':'), 1, "%3A");
  {
    std::lock_guard lock(mutex);
    EXPECT_GE(mirror_targets.size(), 4u);  // the tag, and the config and layers by digest
    for (const std::string& target : mirror_targets) {
      EXPECT_THAT(target, HasSubstr("?key=abc&" + ns)) << target;
    }
  }
  EXPECT_GT(upstream_proxy->RequestCount(), 0u);
  for (const ProxiedRequest& request : upstream_proxy->requests()) {
    EXPECT_THAT(request.target, Not(HasSubstr("ns="))) << request.target;
  }
}

// A real registry as the mirror serves the whole pull with ns= on every request.
TEST_F(PullTest, RegistryMirrorServesRequestsCarryingNs) {
  auto mirror = StartRegistry();
  ASSERT_NE(mirror, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(32 << 10, 54)});
  ASSERT_TRUE(Push(*mirror, kRepository, "ns", image));
  auto mirror_proxy = StartProxy(mirror->host());
  ASSERT_NE(mirror_proxy, nullptr);
  const std::string upstream = "registry.invalid";

  config::Config config = config::DefaultConfig();
  config.registry.mirrors[upstream].endpoints = {mirror_proxy->url()};
  config.registry.configs[upstream].fallback = config::Fallback::kNever;
  ExpectPulled(Pull(config, upstream + "/demo:ns"), image);
  ASSERT_GT(mirror_proxy->RequestCount(), 0u);
  for (const ProxiedRequest& request : mirror_proxy->requests()) {
    EXPECT_THAT(request.target, HasSubstr("?ns=registry.invalid")) << request.target;
  }
}

// 7. A pull-only mirror (hosts.toml capabilities) is never asked to resolve a tag.
TEST_F(PullTest, PullOnlyMirrorFromHostsTomlIsNotUsedForTags) {
  auto upstream = StartRegistry();
  ASSERT_NE(upstream, nullptr);
  auto mirror = StartRegistry();
  ASSERT_NE(mirror, nullptr);
  imagegen::Image wanted = MakeImage({MakeLayer(64 << 10, 55), MakeLayer(1000, 56)});
  imagegen::Image poisoned = MakeImage({MakeLayer(1000, 57)});
  ASSERT_TRUE(Push(*upstream, kRepository, "t", wanted));
  // The mirror holds the wanted content by digest, but its tag "t" names another image: if berth
  // asked it for the tag, it would pull the wrong image.
  ASSERT_TRUE(Push(*mirror, kRepository, "", wanted));
  ASSERT_TRUE(Push(*mirror, kRepository, "t", poisoned));
  auto upstream_proxy = StartProxy(upstream->host());
  ASSERT_NE(upstream_proxy, nullptr);
  auto mirror_proxy = StartProxy(mirror->host());
  ASSERT_NE(mirror_proxy, nullptr);

  const std::filesystem::path certs_d = dir_.Join("certs.d");
  const std::filesystem::path host_dir = certs_d / upstream_proxy->host();
  std::filesystem::create_directories(host_dir);
  std::ofstream(host_dir / "hosts.toml") << "server = \"" << upstream_proxy->url() << "\"\n"
                                         << "[host.\"" << mirror_proxy->url() << "\"]\n"
                                         << "  capabilities = [\"pull\"]\n";
  config::Config config = config::DefaultConfig();
  config.registry.config_path = certs_d.string();

  ExpectPulled(Pull(config, upstream_proxy->host() + "/demo:t"), wanted);
  EXPECT_EQ(mirror_proxy->RequestCount("GET", "/manifests/t"), 0u)
      << mirror_proxy->DescribeRequests();
  EXPECT_EQ(upstream_proxy->RequestCount("GET", "/manifests/t"), 1u)
      << upstream_proxy->DescribeRequests();
  // Content by digest came from the mirror, as configured; the upstream served only the tag.
  EXPECT_EQ(mirror_proxy->RequestCount("GET", "/blobs/"), 3u) << mirror_proxy->DescribeRequests();
  EXPECT_EQ(upstream_proxy->RequestCount("GET", "/blobs/"), 0u)
      << upstream_proxy->DescribeRequests();
}

// ---------------------------------------------------------------------------------------------
// 8. Redirects carry no credentials

TEST_F(PullTest, RedirectedBlobGetsNoAuthorization) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kBasicAuth});
  ASSERT_NE(registry, nullptr);
  imagegen::Layer redirected_layer = MakeLayer(128 << 10, 80);
  imagegen::Image image = MakeImage({redirected_layer, MakeLayer(1000, 81)});
  ASSERT_TRUE(Push(*registry, kRepository, "redirect", image));
  const std::string blob_bytes = image.layers[0].bytes;
  ASSERT_EQ(static_cast<int64_t>(blob_bytes.size()), image.layers[0].blob.size);

  // "Object storage": serves the blob and records what it was sent.
  std::mutex mutex;
  std::vector<berth::testing::HeaderList> seen_headers;
  auto storage = StartServer([&](const HttpServerRequest& request) {
    {
      std::lock_guard lock(mutex);
      seen_headers.push_back(request.headers);
    }
    if (request.path != "/storage/blob") return HttpServerResponse{.status = 404};
    return HttpServerResponse{.status = 200,
                              .headers = {{"Content-Type", "application/octet-stream"}},
                              .body = blob_bytes};
  });
  ASSERT_NE(storage, nullptr);
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  Result<int> rule =
      proxy->AddRule({.method = "GET",
                      .target_contains = "/blobs/" + image.layers[0].blob.digest.ToString(),
                      .action = FaultAction::Respond(
                          307, {{"Location", storage->url() + "/storage/blob?sig=x"}})});
  ASSERT_OK(rule);

  PullOptions options = Amd64();
  options.auth.username = registry->username();
  options.auth.password = registry->password();
  ExpectPulled(Pull(proxy->host() + "/demo:redirect", options), image);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);
  std::lock_guard lock(mutex);
  ASSERT_EQ(seen_headers.size(), 1u);
  EXPECT_EQ(berth::testing::FindHeader(seen_headers[0], "Authorization"), std::nullopt);
  // The other blobs did need the credentials (the registry requires them).
  EXPECT_GT(proxy->RequestCount("GET", "/blobs/"), 1u);
}

// ---------------------------------------------------------------------------------------------
// 9. Interrupted blob resumes with Range

TEST_F(PullTest, ConnectionCutMidBlobResumesWithRange) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(4 * kMiB, 90), MakeLayer(1000, 91)});
  const imagegen::Descriptor big = image.layers[0].blob;
  ASSERT_GT(big.size, 4 * kMiB);  // random data does not compress
  ASSERT_TRUE(Push(*registry, kRepository, "big", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  const uint64_t cut_at = 1536 << 10;
  Result<int> rule = proxy->AddRule({.method = "GET",
                                     .target_contains = big.digest.ToString(),
                                     .first = 1,
                                     .count = 1,
                                     .action = FaultAction::DropAfterBytes(cut_at)});
  ASSERT_OK(rule);

  Result<PulledImage> pulled = Pull(proxy->host() + "/demo:big");
  ExpectPulled(pulled, image);
  ASSERT_TRUE(pulled);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);
  EXPECT_EQ(proxy->RequestCount("GET", big.digest.ToString()), 2u) << proxy->DescribeRequests();
  // The second request asked for the rest only: the blob crossed the wire once in total (a
  // restart from zero would have sent cut_at + size bytes).
  EXPECT_EQ(proxy->BodyBytesSent("", big.digest.ToString()), static_cast<uint64_t>(big.size))
      << proxy->DescribeRequests();
  EXPECT_EQ(pulled->bytes_fetched, image.config.size + LayerBytes(image));
  EXPECT_EQ(IngestCount(), 0u);
}

// ---------------------------------------------------------------------------------------------
// 10. Retries

TEST_F(PullTest, ServerErrorIsRetried) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(32 << 10, 100), MakeLayer(1000, 101)});
  ASSERT_TRUE(Push(*registry, kRepository, "flaky", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  Result<int> rule = proxy->AddRule({.method = "GET",
                                     .target_contains = "/blobs/",
                                     .first = 1,
                                     .count = 1,
                                     .action = FaultAction::Respond(500)});
  ASSERT_OK(rule);

  ExpectPulled(Pull(proxy->host() + "/demo:flaky"), image);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);
  // Three blobs, one of them asked for twice.
  EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 4u) << proxy->DescribeRequests();
}

TEST_F(PullTest, TooManyRequestsHonoursRetryAfter) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 110)});
  ASSERT_TRUE(Push(*registry, kRepository, "busy", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  Result<int> rule = proxy->AddRule({.method = "GET",
                                     .target_contains = "/manifests/",
                                     .first = 1,
                                     .count = 1,
                                     .action = FaultAction::RespondWithRetryAfter(429, 2)});
  ASSERT_OK(rule);

  auto started = std::chrono::steady_clock::now();
  Result<PulledImage> pulled = Pull(proxy->host() + "/demo:busy");
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ExpectPulled(pulled, image);
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);
  EXPECT_GE(seconds, 1.8);
  EXPECT_LT(seconds, 10.0);
}

// ---------------------------------------------------------------------------------------------
// 11. Corrupted bytes

TEST_F(PullTest, CorruptedLayerIsDataLossAndNotStored) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(256 << 10, 120)});
  const imagegen::Descriptor layer = image.layers[0].blob;
  ASSERT_TRUE(Push(*registry, kRepository, "corrupt", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  Result<int> rule = proxy->AddRule({.method = "GET",
                                     .target_contains = layer.digest.ToString(),
                                     .action = FaultAction::CorruptByteAt(1000)});
  ASSERT_OK(rule);

  Result<PulledImage> pulled = Pull(proxy->host() + "/demo:corrupt");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kDataLoss));
  EXPECT_THAT(pulled.error().ToString(), HasSubstr(layer.digest.ToString()));
  EXPECT_FALSE(store_->Contains(layer.digest));
  EXPECT_EQ(IngestCount(), 0u);
  EXPECT_GE(proxy->RuleHits(*rule), 1u);
}

TEST_F(PullTest, CorruptedConfigIsDataLossAndNotStored) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 125)});
  ASSERT_TRUE(Push(*registry, kRepository, "corrupt-config", image));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  ASSERT_TRUE(proxy->AddRule({.method = "GET",
                              .target_contains = image.config.digest.ToString(),
                              .action = FaultAction::CorruptByteAt(5)}));

  Result<PulledImage> pulled = Pull(proxy->host() + "/demo:corrupt-config");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kDataLoss));
  EXPECT_THAT(pulled.error().ToString(), HasSubstr(image.config.digest.ToString()));
  EXPECT_FALSE(store_->Contains(image.config.digest));
  EXPECT_FALSE(store_->Contains(image.layers[0].blob.digest));
}

// ---------------------------------------------------------------------------------------------
// 12. Oversize manifest

TEST_F(PullTest, OversizeManifestIsRefused) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image small = MakeImage({MakeLayer(1000, 130)});
  ASSERT_TRUE(Push(*registry, kRepository, "huge", small));
  // Distribution itself refuses manifest PUTs over 4 MiB ("request body too large"), so the
  // oversize manifest (a valid one, padded with a huge annotation) is served by the proxy in
  // the registry's place, with its true digest.
  imagegen::Image huge = MakeImage({MakeLayer(1000, 130)}, "amd64", "",
                                   {{"org.example.padding", std::string(4 * kMiB + 1024, 'p')}});
  ASSERT_GT(huge.manifest.size, 4 * kMiB);
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  Result<int> rule = proxy->AddRule(
      {.method = "GET",
       .target_contains = "/manifests/huge",
       .action = FaultAction::Respond(200,
                                      {{"Content-Type", huge.manifest.media_type},
                                       {"Docker-Content-Digest", huge.manifest.digest.ToString()}},
                                      huge.manifest_json)});
  ASSERT_OK(rule);

  Result<PulledImage> pulled = Pull(proxy->host() + "/demo:huge");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kResourceExhausted));
  EXPECT_EQ(proxy->RuleHits(*rule), 1u);  // refused at once, not retried
  EXPECT_EQ(proxy->RequestCount("GET", "/blobs/"), 0u) << proxy->DescribeRequests();
  EXPECT_TRUE(StoredBlobs().empty());
  EXPECT_EQ(IngestCount(), 0u);

  // Control: the registry's own (small) manifest for the same tag pulls fine.
  proxy->RemoveRule(*rule);
  ExpectPulled(Pull(proxy->host() + "/demo:huge"), small);
}

// ---------------------------------------------------------------------------------------------
// 13. Multi-platform index

TEST_F(PullTest, IndexSelectsThePlatformAskedFor) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Layer shared = MakeLayer(16 << 10, 140);
  imagegen::Image amd64 = MakeImage({shared, MakeLayer(1000, 141)}, "amd64");
  imagegen::Image arm64 = MakeImage({shared, MakeLayer(1000, 142)}, "arm64", "v8");
  imagegen::Image arm = MakeImage({shared, MakeLayer(1000, 143)}, "arm", "v7");
  Result<imagegen::ImageIndex> index = imagegen::AssembleIndex({amd64, arm64, arm});
  ASSERT_OK(index);
  ASSERT_TRUE(Push(*registry, kRepository, "multi", *index));
  const std::string reference = registry->host() + "/demo:multi";

  PullOptions options;
  Result<image::Platform> platform = image::ParsePlatform("linux/arm64");
  ASSERT_TRUE(platform);
  options.platform = *platform;
  Result<PulledImage> pulled = Pull(reference, options);
  ExpectPulled(pulled, arm64);
  ASSERT_TRUE(pulled);
  EXPECT_EQ(pulled->target.digest, index->descriptor.digest);
  EXPECT_EQ(pulled->config.architecture, "arm64");
  EXPECT_TRUE(store_->Contains(index->descriptor.digest));
  // Only the arm64 image's blobs were fetched.
  EXPECT_FALSE(store_->Contains(amd64.config.digest));
  EXPECT_FALSE(store_->Contains(arm.layers[1].blob.digest));

  Result<image::Platform> s390x = image::ParsePlatform("linux/s390x");
  ASSERT_TRUE(s390x);
  options.platform = *s390x;
  Result<PulledImage> absent = Pull(reference, options);
  ASSERT_FALSE(absent);
  EXPECT_THAT(absent, FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(absent.error().ToString(), HasSubstr("linux/s390x"));
  EXPECT_THAT(absent.error().ToString(), HasSubstr("linux/amd64"));
  EXPECT_THAT(absent.error().ToString(), HasSubstr("linux/arm64"));
  EXPECT_THAT(absent.error().ToString(), HasSubstr("linux/arm/v7"));
}

TEST_F(PullTest, SinglePlatformImageForAnotherPlatformIsNotFound) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Image image = MakeImage({MakeLayer(1000, 150)}, "arm64", "v8");
  ASSERT_TRUE(Push(*registry, kRepository, "arm-only", image));
  Result<PulledImage> pulled = Pull(registry->host() + "/demo:arm-only");  // linux/amd64
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled, FailsWith(ErrorCode::kNotFound));
  EXPECT_FALSE(store_->Contains(image.layers[0].blob.digest));
}

// ---------------------------------------------------------------------------------------------
// 15. Concurrent pulls share one download

TEST_F(PullTest, ConcurrentPullsFetchASharedLayerOnce) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  imagegen::Layer base = MakeLayer(1 * kMiB, 160);
  imagegen::Image first = MakeImage({base, MakeLayer(1000, 161)});
  imagegen::Image second = MakeImage({base, MakeLayer(1000, 162)});
  ASSERT_TRUE(Push(*registry, "one", "latest", first));
  ASSERT_TRUE(Push(*registry, "two", "latest", second));
  auto proxy = StartProxy(registry->host());
  ASSERT_NE(proxy, nullptr);
  // Hold the shared blob so that both pulls want it at the same time.
  const std::string shared = base.blob.digest.ToString();
  ASSERT_TRUE(proxy->AddRule({.method = "GET",
                              .target_contains = shared,
                              .action = FaultAction::Delay(std::chrono::milliseconds(2000))}));

  std::unique_ptr<Puller> puller = MakePuller();
  Result<PulledImage> pulled_first = Fail(ErrorCode::kInternal, "not run");
  Result<PulledImage> pulled_second = Fail(ErrorCode::kInternal, "not run");
  std::thread one([&] {
    pulled_first = puller->Pull(proxy->host() + "/one:latest", Amd64(), {}, CancelToken::Never());
  });
  std::thread two([&] {
    pulled_second = puller->Pull(proxy->host() + "/two:latest", Amd64(), {}, CancelToken::Never());
  });
  // Prove the overlap: both pulls reached their layers (each fetches its own top layer beside
  // the shared one) while the shared blob's one request was still held by the proxy.
  bool overlapped = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!overlapped && std::chrono::steady_clock::now() < deadline) {
    bool first_top = false, second_top = false, shared_pending = false;
    for (const ProxiedRequest& request : proxy->requests()) {
      if (request.target.find(first.layers[1].blob.digest.ToString()) != std::string::npos) {
        first_top = true;
      }
      if (request.target.find(second.layers[1].blob.digest.ToString()) != std::string::npos) {
        second_top = true;
      }
      if (request.target.find(shared) != std::string::npos && request.status == 0) {
        shared_pending = true;
      }
    }
    overlapped = first_top && second_top && shared_pending;
    if (!overlapped) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  one.join();
  two.join();
  EXPECT_TRUE(overlapped) << "the pulls did not overlap:\n" << proxy->DescribeRequests();

  ExpectPulled(pulled_first, first);
  ExpectPulled(pulled_second, second);
  EXPECT_EQ(proxy->RequestCount("GET", shared), 1u) << proxy->DescribeRequests();
  ASSERT_TRUE(pulled_first && pulled_second);
  // The shared layer counts towards exactly one pull's bytes.
  EXPECT_EQ(pulled_first->bytes_fetched + pulled_second->bytes_fetched,
            base.blob.size + first.layers[1].blob.size + second.layers[1].blob.size +
                first.config.size + second.config.size);
}

// ---------------------------------------------------------------------------------------------
// The CLI

// Runs the berth binary with `args`.
testing::CommandResult RunCli(const TempDir& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BERTH_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  Result<testing::CommandResult> run = testing::RunCommand(argv, dir.path());
  EXPECT_OK(run);
  return run.value_or(testing::CommandResult{});
}

TEST_F(PullTest, CliPrintsImageIdAndFailsOnBadReference) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  Result<imagegen::Image> demo = imagegen::MakeDemoImage();
  ASSERT_OK(demo);
  ASSERT_TRUE(Push(*registry, kRepository, "cli", *demo));
  // An empty config file keeps a host's /etc/berth/config.toml out of the test.
  const std::filesystem::path config_file = dir_.Join("config.toml");
  std::ofstream(config_file) << "";
  const std::string root = dir_.Join("cli-root").string();

  testing::CommandResult pulled =
      RunCli(dir_, {"--config", config_file.string(), "--root", root, "pull", "--platform",
                    "linux/amd64", registry->host() + "/demo:cli"});
  EXPECT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_EQ(pulled.out, demo->config.digest.ToString() + "\n") << pulled.err;
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(root) / "content" / "blobs" / "sha256" /
                                      demo->config.digest.encoded()));

  testing::CommandResult bad = RunCli(
      dir_, {"--config", config_file.string(), "--root", root, "pull", "Not A//Valid:Reference"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_EQ(bad.out, "");
  EXPECT_THAT(bad.err, HasSubstr("error:"));
}

}  // namespace
}  // namespace berth::pull
