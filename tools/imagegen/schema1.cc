#include "tools/imagegen/schema1.h"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "berth/base/base64.h"
#include "berth/base/c_handle.h"

namespace berth::imagegen {
namespace {

using OrderedJson = nlohmann::ordered_json;
using UniqueKey = UniqueHandle<EVP_PKEY, EVP_PKEY_free>;
using UniqueBignum = UniqueHandle<BIGNUM, BN_free>;
using UniqueDigestContext = UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free>;
using UniqueEcdsaSignature = UniqueHandle<ECDSA_SIG, ECDSA_SIG_free>;

constexpr size_t kCoordinateBytes = 32;  // P-256

Error OpenSslError(std::string_view what) {
  return Error(ErrorCode::kInternal, fmt::format("OpenSSL: {} failed", what));
}

// RFC 4648 base32 (standard alphabet) without padding, as libtrust's key IDs use it.
std::string Base32NoPadding(std::string_view bytes) {
  constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char byte : bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += kAlphabet[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kAlphabet[(buffer << (5 - bits)) & 31];
  return out;
}

// A big-endian unsigned integer, left-padded to `width` bytes.
Result<std::string> FixedWidth(const BIGNUM* number, size_t width) {
  std::string out(width, '\0');
  if (BN_bn2binpad(number, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(width)) !=
      static_cast<int>(width)) {
    return Fail(OpenSslError("BN_bn2binpad"));
  }
  return out;
}

Result<std::string> PublicCoordinate(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return Fail(OpenSslError(name));
  UniqueBignum coordinate(raw);
  return FixedWidth(coordinate.get(), kCoordinateBytes);
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string V1Id(const Schema1Step& step, const std::string& parent, size_t index) {
  return Digest::Sha256Of(fmt::format("{} {} {}", step.blob_sum, parent, index)).encoded();
}

}  // namespace

Result<std::string> BuildSchema1Manifest(const Schema1Spec& spec) {
  if (spec.steps.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "a schema1 manifest needs at least one step");
  }
  // v1 images, oldest first, each naming its parent.
  std::vector<std::string> v1_documents;
  std::string parent;
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    const Schema1Step& step = spec.steps[i];
    const bool newest = i + 1 == spec.steps.size();
    OrderedJson v1;
    if (newest) v1["architecture"] = spec.architecture;
    if (newest) {
      OrderedJson config = OrderedJson::object();
      if (!spec.env.empty()) config["Env"] = spec.env;
      if (!spec.cmd.empty()) config["Cmd"] = spec.cmd;
      if (!spec.working_dir.empty()) config["WorkingDir"] = spec.working_dir;
      v1["config"] = std::move(config);
    }
    OrderedJson container_config = OrderedJson::object();
    if (!step.created_by.empty()) {
      container_config["Cmd"] = std::vector<std::string>{"/bin/sh", "-c", step.created_by};
    }
    v1["container_config"] = std::move(container_config);
    v1["created"] = step.created;
    if (!step.author.empty()) v1["author"] = step.author;
    if (!step.comment.empty()) v1["comment"] = step.comment;
    std::string id = V1Id(step, parent, i);
    v1["id"] = id;
    if (newest) v1["os"] = spec.os;
    if (!parent.empty()) v1["parent"] = parent;
    if (step.throwaway) v1["throwaway"] = true;
    v1_documents.push_back(v1.dump());
    parent = std::move(id);
  }

  OrderedJson manifest;
  manifest["schemaVersion"] = 1;
  manifest["name"] = spec.name;
  manifest["tag"] = spec.tag;
  manifest["architecture"] = spec.architecture;
  OrderedJson fs_layers = OrderedJson::array();
  OrderedJson history = OrderedJson::array();
  for (size_t i = spec.steps.size(); i-- > 0;) {  // newest first
    fs_layers.push_back({{"blobSum", spec.steps[i].blob_sum.ToString()}});
    history.push_back({{"v1Compatibility", v1_documents[i]}});
  }
  manifest["fsLayers"] = std::move(fs_layers);
  manifest["history"] = std::move(history);
  return manifest.dump(3);
}

struct Schema1Signer::Key {
  UniqueKey pkey;
};

Schema1Signer::Schema1Signer(std::unique_ptr<Key> key, std::string key_id)
    : key_(std::move(key)), key_id_(std::move(key_id)) {}
Schema1Signer::~Schema1Signer() = default;
Schema1Signer::Schema1Signer(Schema1Signer&&) noexcept = default;
Schema1Signer& Schema1Signer::operator=(Schema1Signer&&) noexcept = default;

Result<Schema1Signer> Schema1Signer::Generate() {
  UniqueKey pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!pkey) return Fail(OpenSslError("EC P-256 key generation"));

  // libtrust's key ID: a fingerprint of the DER SubjectPublicKeyInfo (what Go's
  // x509.MarshalPKIXPublicKey produces, and i2d_PUBKEY too).
  unsigned char* der = nullptr;
  int der_length = i2d_PUBKEY(pkey.get(), &der);
  if (der_length <= 0) return Fail(OpenSslError("i2d_PUBKEY"));
  std::string spki(reinterpret_cast<const char*>(der), static_cast<size_t>(der_length));
  OPENSSL_free(der);
  unsigned char fingerprint[EVP_MAX_MD_SIZE];
  unsigned int fingerprint_length = 0;
  if (EVP_Digest(spki.data(), spki.size(), fingerprint, &fingerprint_length, EVP_sha256(),
                 nullptr) != 1 ||
      fingerprint_length < 30) {
    return Fail(OpenSslError("EVP_Digest"));
  }
  // The first 240 bits: 48 base32 characters.
  std::string encoded =
      Base32NoPadding(std::string_view(reinterpret_cast<const char*>(fingerprint), 30));
  std::string key_id;
  for (size_t i = 0; i < encoded.size(); i += 4) {
    if (!key_id.empty()) key_id += ':';
    key_id += encoded.substr(i, 4);
  }
  return Schema1Signer(std::make_unique<Key>(Key{std::move(pkey)}), std::move(key_id));
}

Result<std::string> Schema1Signer::Sign(std::string_view manifest, std::string_view time) const {
  // Where the signatures go: after the last value, before the closing brace and whatever
  // whitespace precedes it (libtrust's formatLength; the rest is formatTail).
  size_t close = manifest.size();
  while (close > 0 && IsSpace(manifest[close - 1])) --close;
  if (close == 0 || manifest[close - 1] != '}') {
    return Fail(ErrorCode::kInvalidArgument, "the manifest is not a JSON object ending in '}'");
  }
  size_t format_length = close - 1;
  while (format_length > 0 && IsSpace(manifest[format_length - 1])) --format_length;
  if (format_length == 0 || manifest[format_length - 1] == ',' ||
      manifest[format_length - 1] == '{') {
    return Fail(ErrorCode::kInvalidArgument, "the manifest is empty or ends in a ','");
  }
  const std::string_view format_tail = manifest.substr(format_length);

  OrderedJson protected_header;
  protected_header["formatLength"] = format_length;
  protected_header["formatTail"] = Base64UrlEncode(format_tail);
  protected_header["time"] = std::string(time);
  const std::string protected_b64 = Base64UrlEncode(protected_header.dump());
  const std::string signing_input = protected_b64 + "." + Base64UrlEncode(manifest);

  UniqueDigestContext context(EVP_MD_CTX_new());
  if (!context) return Fail(OpenSslError("EVP_MD_CTX_new"));
  if (EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key_->pkey.get()) != 1) {
    return Fail(OpenSslError("EVP_DigestSignInit"));
  }
  const auto* input = reinterpret_cast<const unsigned char*>(signing_input.data());
  size_t der_length = 0;
  if (EVP_DigestSign(context.get(), nullptr, &der_length, input, signing_input.size()) != 1) {
    return Fail(OpenSslError("EVP_DigestSign"));
  }
  std::string der(der_length, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(der.data()), &der_length,
                     input, signing_input.size()) != 1) {
    return Fail(OpenSslError("EVP_DigestSign"));
  }
  // JWS wants the raw r||s pair, not OpenSSL's DER sequence.
  const auto* der_cursor = reinterpret_cast<const unsigned char*>(der.data());
  UniqueEcdsaSignature signature(
      d2i_ECDSA_SIG(nullptr, &der_cursor, static_cast<long>(der_length)));
  if (!signature) return Fail(OpenSslError("d2i_ECDSA_SIG"));
  BERTH_ASSIGN_OR_RETURN(std::string r,
                         FixedWidth(ECDSA_SIG_get0_r(signature.get()), kCoordinateBytes));
  BERTH_ASSIGN_OR_RETURN(std::string s,
                         FixedWidth(ECDSA_SIG_get0_s(signature.get()), kCoordinateBytes));

  BERTH_ASSIGN_OR_RETURN(std::string x,
                         PublicCoordinate(key_->pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X));
  BERTH_ASSIGN_OR_RETURN(std::string y,
                         PublicCoordinate(key_->pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y));
  OrderedJson jwk;
  jwk["crv"] = "P-256";
  jwk["kid"] = key_id_;
  jwk["kty"] = "EC";
  jwk["x"] = Base64UrlEncode(x);
  jwk["y"] = Base64UrlEncode(y);
  OrderedJson entry;
  entry["header"] = {{"jwk", std::move(jwk)}, {"alg", "ES256"}};
  entry["signature"] = Base64UrlEncode(r + s);
  entry["protected"] = protected_b64;
  OrderedJson signatures = OrderedJson::array({std::move(entry)});

  // libtrust's pretty form: the payload up to formatLength, then the signatures as the last
  // member, indented one level.
  std::string pretty = signatures.dump(3);
  std::string indented;
  for (char c : pretty) {
    indented += c;
    if (c == '\n') indented += "   ";
  }
  return fmt::format("{},\n   \"signatures\": {}\n}}", manifest.substr(0, format_length), indented);
}

}  // namespace berth::imagegen
