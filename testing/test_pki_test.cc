#include "testing/test_pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>

#include "berth/base/c_handle.h"

namespace berth::testing {
namespace {

using UniqueX509 = UniqueHandle<X509, X509_free>;
using UniqueStore = UniqueHandle<X509_STORE, X509_STORE_free>;
using UniqueStoreContext = UniqueHandle<X509_STORE_CTX, X509_STORE_CTX_free>;

UniqueX509 LoadCert(const std::filesystem::path& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  EXPECT_NE(file, nullptr) << path;
  if (file == nullptr) return nullptr;
  UniqueX509 cert(PEM_read_X509(file, nullptr, nullptr, nullptr));
  std::fclose(file);
  return cert;
}

// Verifies `cert` against `ca` for `purpose` (X509_PURPOSE_SSL_SERVER / _CLIENT).
bool Verifies(X509* cert, X509* ca, int purpose) {
  UniqueStore store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca);
  UniqueStoreContext context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), store.get(), cert, nullptr);
  X509_STORE_CTX_set_purpose(context.get(), purpose);
  return X509_verify_cert(context.get()) == 1;
}

TEST(TestPkiTest, IssuesAChainForServerAndClient) {
  Result<std::unique_ptr<TestPki>> pki = TestPki::Create();
  ASSERT_TRUE(pki) << pki.error().ToString();
  UniqueX509 ca = LoadCert((*pki)->ca_cert_file());
  UniqueX509 server = LoadCert((*pki)->server_cert_file());
  UniqueX509 client = LoadCert((*pki)->client_cert_file());
  UniqueX509 token = LoadCert((*pki)->token_cert_file());
  ASSERT_TRUE(ca && server && client && token);

  EXPECT_TRUE(Verifies(server.get(), ca.get(), X509_PURPOSE_SSL_SERVER));
  EXPECT_TRUE(Verifies(client.get(), ca.get(), X509_PURPOSE_SSL_CLIENT));
  EXPECT_FALSE(Verifies(client.get(), ca.get(), X509_PURPOSE_SSL_SERVER));
  EXPECT_FALSE(Verifies(token.get(), ca.get(), X509_PURPOSE_ANY)) << "token cert is self-signed";

  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(server.get(), "example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(token.get())), EVP_PKEY_RSA);

  EXPECT_TRUE(std::filesystem::exists((*pki)->server_key_file()));
  auto key_perms = std::filesystem::status((*pki)->server_key_file()).permissions();
  EXPECT_EQ(key_perms & std::filesystem::perms::others_read, std::filesystem::perms::none);
}

TEST(TestPkiTest, EachPkiIsIndependent) {
  Result<std::unique_ptr<TestPki>> first = TestPki::Create();
  Result<std::unique_ptr<TestPki>> second =
      TestPki::Create({.server_dns_names = {"registry.test"}});
  ASSERT_TRUE(first && second);
  UniqueX509 first_ca = LoadCert((*first)->ca_cert_file());
  UniqueX509 second_server = LoadCert((*second)->server_cert_file());
  ASSERT_TRUE(first_ca && second_server);
  EXPECT_FALSE(Verifies(second_server.get(), first_ca.get(), X509_PURPOSE_SSL_SERVER));
  EXPECT_EQ(X509_check_host(second_server.get(), "registry.test", 0, 0, nullptr), 1);
  std::filesystem::path dir = (*first)->directory();
  first->reset();
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace berth::testing
