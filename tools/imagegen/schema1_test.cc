#include "tools/imagegen/schema1.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "berth/base/base64.h"
#include "berth/base/c_handle.h"

namespace berth::imagegen {
namespace {

using nlohmann::json;

Schema1Spec TwoStepSpec() {
  Schema1Spec spec{.name = "library/demo", .tag = "v1", .cmd = {"/bin/sh"}};
  spec.steps.push_back({.blob_sum = Digest::Sha256Of("base"), .created_by = "ADD rootfs /"});
  spec.steps.push_back({.blob_sum = Digest::Sha256Of("empty"),
                        .created_by = "#(nop) CMD [\"/bin/sh\"]",
                        .throwaway = true});
  return spec;
}

std::string Decode(std::string_view b64url) {
  Result<std::string> decoded = Base64UrlDecode(b64url);
  EXPECT_TRUE(decoded) << decoded.error().ToString();
  return decoded.value_or("");
}

// Verifies an ES256 JWS signature (raw r||s) with the public key of a JWK, as libtrust does.
bool VerifyEs256(const json& jwk, std::string_view signing_input, std::string_view raw) {
  std::string point =
      "\x04" + Decode(jwk.at("x").get<std::string>()) + Decode(jwk.at("y").get<std::string>());
  UniqueHandle<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free> builder(OSSL_PARAM_BLD_new());
  OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                   point.size());
  UniqueHandle<OSSL_PARAM, OSSL_PARAM_free> params(OSSL_PARAM_BLD_to_param(builder.get()));
  UniqueHandle<EVP_PKEY_CTX, EVP_PKEY_CTX_free> from_data(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw_key = nullptr;
  if (EVP_PKEY_fromdata_init(from_data.get()) != 1 ||
      EVP_PKEY_fromdata(from_data.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return false;
  }
  UniqueHandle<EVP_PKEY, EVP_PKEY_free> key(raw_key);

  if (raw.size() != 64) return false;
  UniqueHandle<ECDSA_SIG, ECDSA_SIG_free> signature(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  ECDSA_SIG_set0(signature.get(), r, s);
  unsigned char* der = nullptr;
  int der_length = i2d_ECDSA_SIG(signature.get(), &der);
  UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free> context(EVP_MD_CTX_new());
  bool ok = EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
            EVP_DigestVerify(context.get(), der, static_cast<size_t>(der_length),
                             reinterpret_cast<const unsigned char*>(signing_input.data()),
                             signing_input.size()) == 1;
  OPENSSL_free(der);
  return ok;
}

TEST(Schema1ManifestTest, ListsStepsNewestFirstWithChainedV1Ids) {
  Result<std::string> manifest = BuildSchema1Manifest(TwoStepSpec());
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  json parsed = json::parse(*manifest);
  EXPECT_EQ(parsed["schemaVersion"], 1);
  EXPECT_EQ(parsed["name"], "library/demo");
  EXPECT_EQ(parsed["tag"], "v1");
  EXPECT_EQ(parsed["architecture"], "amd64");
  ASSERT_EQ(parsed["fsLayers"].size(), 2u);
  EXPECT_EQ(parsed["fsLayers"][0]["blobSum"], Digest::Sha256Of("empty").ToString());
  EXPECT_EQ(parsed["fsLayers"][1]["blobSum"], Digest::Sha256Of("base").ToString());

  json newest = json::parse(parsed["history"][0]["v1Compatibility"].get<std::string>());
  json oldest = json::parse(parsed["history"][1]["v1Compatibility"].get<std::string>());
  EXPECT_EQ(newest["parent"], oldest["id"]);
  EXPECT_FALSE(oldest.contains("parent"));
  EXPECT_EQ(newest["throwaway"], true);
  EXPECT_FALSE(oldest.contains("throwaway"));
  EXPECT_EQ(newest["config"]["Cmd"], json::array({"/bin/sh"}));
  EXPECT_EQ(newest["os"], "linux");
  EXPECT_EQ(oldest["container_config"]["Cmd"], json::array({"/bin/sh", "-c", "ADD rootfs /"}));
  // Docker's layout: three-space indentation.
  EXPECT_THAT(*manifest, ::testing::StartsWith("{\n   \"schemaVersion\": 1,"));
}

TEST(Schema1ManifestTest, RefusesNoSteps) {
  Result<std::string> manifest = BuildSchema1Manifest({});
  ASSERT_FALSE(manifest);
  EXPECT_EQ(manifest.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Schema1SignerTest, KeyIdIsTwelveGroupsOfBase32) {
  Result<Schema1Signer> signer = Schema1Signer::Generate();
  ASSERT_TRUE(signer) << signer.error().ToString();
  EXPECT_TRUE(std::regex_match(signer->key_id(), std::regex("([A-Z2-7]{4}:){11}[A-Z2-7]{4}")))
      << signer->key_id();
}

TEST(Schema1SignerTest, SignatureCoversThePayloadWithoutSignatures) {
  Result<std::string> manifest = BuildSchema1Manifest(TwoStepSpec());
  ASSERT_TRUE(manifest);
  Result<Schema1Signer> signer = Schema1Signer::Generate();
  ASSERT_TRUE(signer);
  Result<std::string> signed_manifest = signer->Sign(*manifest, "2020-02-02T02:02:02Z");
  ASSERT_TRUE(signed_manifest) << signed_manifest.error().ToString();

  json document = json::parse(*signed_manifest);
  EXPECT_EQ(document["name"], "library/demo");
  ASSERT_EQ(document["signatures"].size(), 1u);
  const json& signature = document["signatures"][0];
  EXPECT_EQ(signature["header"]["alg"], "ES256");
  const json& jwk = signature["header"]["jwk"];
  EXPECT_EQ(jwk["kty"], "EC");
  EXPECT_EQ(jwk["crv"], "P-256");
  EXPECT_EQ(jwk["kid"], signer->key_id());
  EXPECT_EQ(Decode(jwk["x"].get<std::string>()).size(), 32u);

  // The protected header says how to rebuild the signed payload from the signed document.
  const std::string protected_b64 = signature["protected"].get<std::string>();
  json protected_header = json::parse(Decode(protected_b64));
  EXPECT_EQ(protected_header["time"], "2020-02-02T02:02:02Z");
  size_t format_length = protected_header["formatLength"].get<size_t>();
  std::string tail = Decode(protected_header["formatTail"].get<std::string>());
  EXPECT_EQ(tail, "\n}");
  std::string payload = signed_manifest->substr(0, format_length) + tail;
  EXPECT_EQ(payload, *manifest);

  const std::string signing_input = protected_b64 + "." + Base64UrlEncode(payload);
  const std::string raw_signature = Decode(signature["signature"].get<std::string>());
  EXPECT_EQ(raw_signature.size(), 64u);
  EXPECT_TRUE(VerifyEs256(jwk, signing_input, raw_signature));
  EXPECT_FALSE(VerifyEs256(jwk, signing_input + "x", raw_signature));
}

TEST(Schema1SignerTest, RefusesWhatIsNotAnObject) {
  Result<Schema1Signer> signer = Schema1Signer::Generate();
  ASSERT_TRUE(signer);
  EXPECT_FALSE(signer->Sign("[1, 2]"));
  EXPECT_FALSE(signer->Sign("{}"));
  EXPECT_FALSE(signer->Sign("{\"a\": 1,}"));
}

}  // namespace
}  // namespace berth::imagegen
