#include "berth/registry/hosts.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::registry {
namespace {

using ::berth::testing::TempDir;

std::vector<std::string> Urls(const std::vector<RegistryEndpoint>& endpoints) {
  std::vector<std::string> out;
  for (const auto& endpoint : endpoints) out.push_back(endpoint.BaseUrl());
  return out;
}

TEST(HostsTest, DefaultsWithoutConfig) {
  config::RegistryConfig registry;
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "docker.io").value()),
            std::vector<std::string>{"https://registry-1.docker.io/v2"});
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "quay.io").value()),
            std::vector<std::string>{"https://quay.io/v2"});
  EXPECT_EQ(ResolveEndpoints(registry, "quay.io").value()[0].plain_http_fallback,
            PlainHttpFallback::kNever);
  EXPECT_EQ(DefaultSchemeFor("128.0.0.1:5000"), "https");
}

// containerd's localhost rule (core/remotes/docker/config/hosts.go): on a port other than 80 and
// 443, https first and plain http when the server does not speak TLS; port 80 is plain http; no
// port or 443 is https only.
TEST(HostsTest, LoopbackHostsTryHttpsThenPlainHttpOnAnAmbiguousPort) {
  config::RegistryConfig registry;
  for (std::string local : {"localhost:5000", "127.0.0.1:5000", "[::1]:5000", "127.0.0.2:8443",
                            "[::ffff:127.0.0.9]:5000"}) {
    auto endpoints = ResolveEndpoints(registry, local).value();
    ASSERT_EQ(endpoints.size(), 1u) << local;
    EXPECT_EQ(endpoints[0].scheme, "https") << local;
    EXPECT_EQ(endpoints[0].host, local);
    EXPECT_EQ(endpoints[0].plain_http_fallback, PlainHttpFallback::kWhenServerIsNotTls) << local;
    EXPECT_EQ(DefaultSchemeFor(local), "https") << local;
  }
  for (std::string https_only : {"localhost", "127.0.0.1", "127.0.0.1:443", "[::1]:443", "::1"}) {
    auto endpoints = ResolveEndpoints(registry, https_only).value();
    EXPECT_EQ(endpoints[0].scheme, "https") << https_only;
    EXPECT_EQ(endpoints[0].plain_http_fallback, PlainHttpFallback::kNever) << https_only;
  }
  for (std::string http_only : {"localhost:80", "127.0.0.3:80", "[::1]:80"}) {
    auto endpoints = ResolveEndpoints(registry, http_only).value();
    EXPECT_EQ(endpoints[0].scheme, "http") << http_only;
    EXPECT_EQ(endpoints[0].plain_http_fallback, PlainHttpFallback::kNever) << http_only;
    EXPECT_EQ(DefaultSchemeFor(http_only), "http") << http_only;
  }
  // A mirror written without a scheme gets the same rule; one written with a scheme is used as
  // written, without a fallback.
  registry.mirrors["docker.io"].endpoints = {"127.0.0.1:5001", "http://127.0.0.1:5002",
                                             "https://127.0.0.1:5003"};
  auto mirrored = ResolveEndpoints(registry, "docker.io").value();
  ASSERT_EQ(mirrored.size(), 4u);
  EXPECT_EQ(mirrored[0].BaseUrl(), "https://127.0.0.1:5001/v2");
  EXPECT_EQ(mirrored[0].plain_http_fallback, PlainHttpFallback::kWhenServerIsNotTls);
  EXPECT_EQ(mirrored[1].BaseUrl(), "http://127.0.0.1:5002/v2");
  EXPECT_EQ(mirrored[1].plain_http_fallback, PlainHttpFallback::kNever);
  EXPECT_EQ(mirrored[2].BaseUrl(), "https://127.0.0.1:5003/v2");
  EXPECT_EQ(mirrored[2].plain_http_fallback, PlainHttpFallback::kNever);
  EXPECT_EQ(mirrored[3].plain_http_fallback, PlainHttpFallback::kNever);  // docker.io itself
}

TEST(HostsTest, EveryLoopbackAddressIsLocalhost) {
  for (std::string local : {"127.0.0.2:5000", "127.1.2.3", "127.255.255.254:443", "[::1]", "::1",
                            "[::ffff:127.0.0.9]:5000", "localhost:80"}) {
    EXPECT_TRUE(IsLoopbackHost(local)) << local;
  }
  for (std::string remote : {"128.0.0.1", "10.127.0.1:5000", "[::2]:5000", "localhost.example",
                             "127.example", "[::ffff:10.0.0.1]", "10.0.0.1:80"}) {
    EXPECT_FALSE(IsLoopbackHost(remote)) << remote;
    EXPECT_EQ(DefaultSchemeFor(remote), "https") << remote;
  }
  config::RegistryConfig registry;
  auto endpoints = ResolveEndpoints(registry, "127.0.0.2:5000").value();
  EXPECT_EQ(Urls(endpoints), std::vector<std::string>{"https://127.0.0.2:5000/v2"});
  EXPECT_EQ(endpoints[0].plain_http_fallback, PlainHttpFallback::kWhenServerIsNotTls);
}

TEST(HostsTest, TlsSettingsForALoopbackHostMeanHttps) {
  config::RegistryConfig registry;
  registry.configs["127.0.0.2:5000"].tls.insecure_skip_verify = true;
  auto endpoints = ResolveEndpoints(registry, "127.0.0.2:5000");
  ASSERT_TRUE(endpoints) << endpoints.error().ToString();
  EXPECT_EQ(Urls(*endpoints), std::vector<std::string>{"https://127.0.0.2:5000/v2"});
  EXPECT_TRUE((*endpoints)[0].tls.insecure_skip_verify);
  EXPECT_EQ((*endpoints)[0].plain_http_fallback, PlainHttpFallback::kNever) << "https only";
  // Written out as http, the endpoint keeps its scheme, and the TLS settings do not fit it.
  registry.mirrors["127.0.0.2:5000"].endpoints = {"http://127.0.0.2:5000"};
  auto explicit_http = ResolveEndpoints(registry, "127.0.0.2:5000");
  ASSERT_FALSE(explicit_http);
  EXPECT_NE(explicit_http.error().message().find("not https"), std::string::npos);
}

TEST(HostsTest, MirrorsSayWhichRegistryTheyServe) {
  config::RegistryConfig registry;
  registry.mirrors["docker.io"].endpoints = {"https://m.test", "https://k.test/cache?key=abc",
                                             "https://registry-1.docker.io"};
  auto endpoints = ResolveEndpoints(registry, "docker.io").value();
  ASSERT_EQ(endpoints.size(), 3u);
  EXPECT_EQ(endpoints[0].mirror_of, "docker.io");
  EXPECT_EQ(endpoints[0].UrlFor("/library/a/manifests/v1"),
            "https://m.test/v2/library/a/manifests/v1?ns=docker.io");
  EXPECT_EQ(endpoints[1].BaseUrl(), "https://k.test/cache");
  EXPECT_EQ(endpoints[1].query, "key=abc");
  EXPECT_EQ(endpoints[1].UrlFor("/library/a/blobs/sha256:1"),
            "https://k.test/cache/library/a/blobs/sha256:1?key=abc&ns=docker.io");
  EXPECT_EQ(endpoints[2].mirror_of, "");
  EXPECT_EQ(endpoints[2].UrlFor("/x"), "https://registry-1.docker.io/v2/x");

  config::RegistryConfig local;
  local.mirrors["*"].endpoints = {"http://127.0.0.1:9?"};
  auto for_local = ResolveEndpoints(local, "127.0.0.1:5000").value();
  ASSERT_EQ(for_local.size(), 2u);
  EXPECT_EQ(for_local[0].UrlFor("/a"), "http://127.0.0.1:9/v2/a?ns=127.0.0.1%3A5000");
  EXPECT_EQ(for_local[1].UrlFor("/a"), "https://127.0.0.1:5000/v2/a");  // then plain http
}

TEST(HostsTest, MirrorsThenDefault) {
  config::RegistryConfig registry;
  registry.mirrors["docker.io"].endpoints = {"https://mirror-a.test",
                                             "http://mirror-b.test:5000/custom"};
  auto endpoints = ResolveEndpoints(registry, "docker.io").value();
  EXPECT_EQ(Urls(endpoints), (std::vector<std::string>{"https://mirror-a.test/v2",
                                                       "http://mirror-b.test:5000/custom",
                                                       "https://registry-1.docker.io/v2"}));
  EXPECT_TRUE(endpoints[0].is_mirror);
  EXPECT_FALSE(endpoints[2].is_mirror);
}

TEST(HostsTest, MirrorNamingTheHostIsNotDuplicated) {
  config::RegistryConfig registry;
  registry.mirrors["docker.io"].endpoints = {"https://registry-1.docker.io", "https://m.test"};
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "docker.io").value()),
            (std::vector<std::string>{"https://registry-1.docker.io/v2", "https://m.test/v2"}));
}

TEST(HostsTest, WildcardMirrorAppliesToOtherHosts) {
  config::RegistryConfig registry;
  registry.mirrors["*"].endpoints = {"https://any.test"};
  registry.mirrors["quay.io"].endpoints = {"https://quay-mirror.test"};
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "ghcr.io").value()),
            (std::vector<std::string>{"https://any.test/v2", "https://ghcr.io/v2"}));
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "quay.io").value()),
            (std::vector<std::string>{"https://quay-mirror.test/v2", "https://quay.io/v2"}));
}

TEST(HostsTest, FallbackNever) {
  config::RegistryConfig registry;
  registry.configs["ghcr.io"].fallback = config::Fallback::kNever;
  registry.mirrors["ghcr.io"].endpoints = {"https://m.test"};
  EXPECT_EQ(Urls(ResolveEndpoints(registry, "ghcr.io").value()),
            std::vector<std::string>{"https://m.test/v2"});
  registry.mirrors.clear();
  auto none = ResolveEndpoints(registry, "ghcr.io");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kFailedPrecondition);
}

TEST(HostsTest, TlsSettings) {
  config::RegistryConfig registry;
  registry.configs["secure.test"].tls.insecure_skip_verify = true;
  auto endpoints = ResolveEndpoints(registry, "secure.test").value();
  EXPECT_TRUE(endpoints[0].tls.insecure_skip_verify);

  registry.configs["127.0.0.1:5000"].tls.insecure_skip_verify = true;
  registry.mirrors["127.0.0.1:5000"].endpoints = {"http://127.0.0.1:5000"};
  auto http_with_tls = ResolveEndpoints(registry, "127.0.0.1:5000");
  ASSERT_FALSE(http_with_tls);
  EXPECT_NE(http_with_tls.error().message().find("not https"), std::string::npos);

  registry.configs["c.test"].tls.cert_file = "/nonexistent/client.pem";
  auto half_pair = ResolveEndpoints(registry, "c.test");
  ASSERT_FALSE(half_pair);
  EXPECT_NE(half_pair.error().message().find("/nonexistent/client.pem"), std::string::npos);

  registry.configs["d.test"].tls.ca_file = "/nonexistent/ca.pem";
  auto missing_ca = ResolveEndpoints(registry, "d.test");
  ASSERT_FALSE(missing_ca);
  EXPECT_NE(missing_ca.error().message().find("/nonexistent/ca.pem"), std::string::npos);
}

TEST(HostsTest, HeadersGoToEveryEndpoint) {
  config::RegistryConfig registry;
  registry.headers["X-Meta"] = {"a", "b"};
  auto endpoints = ResolveEndpoints(registry, "quay.io").value();
  EXPECT_EQ(endpoints[0].headers.size(), 2u);
}

}  // namespace
}  // namespace berth::registry

namespace berth::registry {
namespace {

class HostsDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(temp_, TempDir::Create("hosts"));
    dir_ = temp_.path();
  }
  void Write(const std::string& relative, const std::string& text) {
    std::filesystem::create_directories((dir_ / relative).parent_path());
    std::ofstream(dir_ / relative) << text;
  }
  TempDir temp_;
  std::filesystem::path dir_;
};

TEST_F(HostsDirTest, MirrorsInFileOrderWithCapabilities) {
  Write("docker.io/ca.pem", "not read here");
  Write("docker.io/hosts.toml", R"(server = "https://registry-1.docker.io"
[host."https://zz-mirror.test"]
  capabilities = ["pull"]
  ca = "ca.pem"
[host."https://aa-mirror.test/cache"]
  capabilities = ["pull", "resolve"]
  [host."https://aa-mirror.test/cache".header]
    x-tenant = "blue"
[host."http://raw.test/api"]
  override_path = true
)");
  config::RegistryConfig registry{.config_path = dir_.string()};
  auto endpoints = ResolveEndpoints(registry, "docker.io");
  ASSERT_TRUE(endpoints) << endpoints.error().ToString();
  ASSERT_EQ(endpoints->size(), 4u);
  EXPECT_EQ((*endpoints)[0].BaseUrl(), "https://zz-mirror.test/v2");
  EXPECT_EQ((*endpoints)[0].capabilities, unsigned{kCapabilityPull});
  ASSERT_EQ((*endpoints)[0].tls.ca_files.size(), 1u);
  EXPECT_EQ((*endpoints)[0].tls.ca_files[0], (dir_ / "docker.io/ca.pem").string());
  EXPECT_EQ((*endpoints)[1].BaseUrl(), "https://aa-mirror.test/cache/v2");
  EXPECT_TRUE((*endpoints)[1].Can(kCapabilityResolve));
  ASSERT_EQ((*endpoints)[1].headers.size(), 1u);
  EXPECT_EQ((*endpoints)[1].headers[0].second, "blue");
  EXPECT_EQ((*endpoints)[2].BaseUrl(), "http://raw.test/api");
  EXPECT_EQ((*endpoints)[3].BaseUrl(), "https://registry-1.docker.io/v2");
  EXPECT_FALSE((*endpoints)[3].is_mirror);
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*endpoints)[i].mirror_of, "docker.io") << i;
  EXPECT_EQ((*endpoints)[3].mirror_of, "");
}

TEST_F(HostsDirTest, DefaultDirectoryAndFallbackNever) {
  Write("_default/hosts.toml", R"([host."https://everything.test"]
)");
  config::RegistryConfig registry{.config_path = dir_.string()};
  auto endpoints = ResolveEndpoints(registry, "quay.io");
  ASSERT_TRUE(endpoints) << endpoints.error().ToString();
  ASSERT_EQ(endpoints->size(), 2u);
  EXPECT_EQ((*endpoints)[1].BaseUrl(), "https://quay.io/v2");
  registry.configs["quay.io"].fallback = config::Fallback::kNever;
  endpoints = ResolveEndpoints(registry, "quay.io");
  ASSERT_TRUE(endpoints);
  ASSERT_EQ(endpoints->size(), 1u);
  EXPECT_EQ((*endpoints)[0].BaseUrl(), "https://everything.test/v2");
}

TEST_F(HostsDirTest, LocalhostServerTriesHttpsThenHttpAndMissingCaIsNamed) {
  Write("127.0.0.1:5000/hosts.toml", R"([host."https://m.test"]
  ca = "/nonexistent/ca.pem"
)");
  config::RegistryConfig registry{.config_path = dir_.string()};
  auto endpoints = ResolveEndpoints(registry, "127.0.0.1:5000");
  ASSERT_FALSE(endpoints);
  EXPECT_NE(endpoints.error().ToString().find("/nonexistent/ca.pem"), std::string::npos);
  Write("127.0.0.1:5000/hosts.toml", R"([host."https://m.test"]
)");
  endpoints = ResolveEndpoints(registry, "127.0.0.1:5000");
  ASSERT_TRUE(endpoints) << endpoints.error().ToString();
  EXPECT_EQ(endpoints->back().BaseUrl(), "https://127.0.0.1:5000/v2");
  EXPECT_EQ(endpoints->back().plain_http_fallback, PlainHttpFallback::kWhenServerIsNotTls);
  EXPECT_EQ(endpoints->front().plain_http_fallback, PlainHttpFallback::kNever);  // https://m.test
}

TEST_F(HostsDirTest, NoHostsFileMeansDefaults) {
  config::RegistryConfig registry{.config_path = dir_.string()};
  auto endpoints = ResolveEndpoints(registry, "ghcr.io");
  ASSERT_TRUE(endpoints);
  ASSERT_EQ(endpoints->size(), 1u);
  EXPECT_EQ((*endpoints)[0].BaseUrl(), "https://ghcr.io/v2");
}

}  // namespace
}  // namespace berth::registry
