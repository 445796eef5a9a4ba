#include "testing/test_pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "berth/base/c_handle.h"
#include "berth/base/file_util.h"

namespace berth::testing {
namespace {

using UniqueKey = UniqueHandle<EVP_PKEY, EVP_PKEY_free>;
using UniqueX509 = UniqueHandle<X509, X509_free>;
using UniqueBio = UniqueHandle<BIO, BIO_free_all>;
using UniqueExtension = UniqueHandle<X509_EXTENSION, X509_EXTENSION_free>;
using UniqueBignum = UniqueHandle<BIGNUM, BN_free>;

constexpr long kBackdateSeconds = 3600;
constexpr long kValiditySeconds = 30L * 24 * 3600;

Error OpenSslError(std::string_view what) {
  return Error(ErrorCode::kInternal, OpenSslErrorText(what));
}

Result<UniqueKey> GenerateEcKey() {
  UniqueKey key(EVP_EC_gen("P-256"));
  if (!key) return Fail(OpenSslError("generate P-256 key"));
  return key;
}

Result<UniqueKey> GenerateRsaKey() {
  UniqueKey key(EVP_RSA_gen(2048));
  if (!key) return Fail(OpenSslError("generate RSA-2048 key"));
  return key;
}

struct CertSpec {
  std::string common_name;
  bool is_ca = false;
  std::string key_usage;           // e.g. "critical,digitalSignature"
  std::string extended_key_usage;  // e.g. "serverAuth"; empty for none
  std::string subject_alt_names;   // e.g. "IP:127.0.0.1,DNS:localhost"; empty for none
};

Result<void> AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  if (value.empty()) return Ok();
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  UniqueExtension extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str()));
  if (!extension || X509_add_ext(cert, extension.get(), -1) != 1) {
    return Fail(OpenSslError(std::string("add extension ") + OBJ_nid2sn(nid) + "=" + value));
  }
  return Ok();
}

// Issues a certificate for `key` signed by `issuer_key`; self-signed when `issuer` is null.
Result<UniqueX509> IssueCertificate(const CertSpec& spec, EVP_PKEY* key, X509* issuer,
                                    EVP_PKEY* issuer_key) {
  UniqueX509 cert(X509_new());
  if (!cert) return Fail(OpenSslError("X509_new"));
  X509* c = cert.get();
  if (X509_set_version(c, 2) != 1) return Fail(OpenSslError("set version"));

  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof(serial_bytes)) != 1) return Fail(OpenSslError("RAND_bytes"));
  serial_bytes[0] &= 0x7f;  // positive
  UniqueBignum serial(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(c)) == nullptr) {
    return Fail(OpenSslError("set serial"));
  }
  if (X509_gmtime_adj(X509_getm_notBefore(c), -kBackdateSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(c), kValiditySeconds) == nullptr) {
    return Fail(OpenSslError("set validity"));
  }
  X509_NAME* name = X509_get_subject_name(c);
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("berth tests"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return Fail(OpenSslError("set subject"));
  }
  X509* signer = issuer != nullptr ? issuer : c;
  if (X509_set_issuer_name(c, X509_get_subject_name(signer)) != 1) {
    return Fail(OpenSslError("set issuer"));
  }
  if (X509_set_pubkey(c, key) != 1) return Fail(OpenSslError("set public key"));

  BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_basic_constraints,
                                     spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_key_usage, spec.key_usage));
  BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_ext_key_usage, spec.extended_key_usage));
  BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_subject_key_identifier, "hash"));
  if (issuer != nullptr) {
    BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_authority_key_identifier, "keyid:always"));
  }
  BERTH_RETURN_IF_ERROR(AddExtension(c, signer, NID_subject_alt_name, spec.subject_alt_names));

  if (X509_sign(c, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    return Fail(OpenSslError("sign certificate " + spec.common_name));
  }
  return cert;
}

Result<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  if (size < 0) return Fail(OpenSslError("read memory BIO"));
  return std::string(data, static_cast<size_t>(size));
}

Result<void> WriteKey(EVP_PKEY* key, const std::filesystem::path& path) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Fail(OpenSslError("encode private key " + path.string()));
  }
  BERTH_ASSIGN_OR_RETURN(std::string pem, BioContents(bio.get()));
  return WriteFileAtomically(path, pem, 0600);
}

Result<void> WriteCert(X509* cert, const std::filesystem::path& path) {
  UniqueBio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return Fail(OpenSslError("encode certificate " + path.string()));
  }
  BERTH_ASSIGN_OR_RETURN(std::string pem, BioContents(bio.get()));
  return WriteFileAtomically(path, pem, 0644);
}

std::string JoinSans(const TestPkiOptions& options) {
  std::string sans;
  for (const std::string& ip : options.server_ip_addresses) {
    sans += (sans.empty() ? "" : ",") + std::string("IP:") + ip;
  }
  for (const std::string& dns : options.server_dns_names) {
    sans += (sans.empty() ? "" : ",") + std::string("DNS:") + dns;
  }
  return sans;
}

}  // namespace

std::string OpenSslErrorText(std::string_view what) {
  std::string text(what);
  text += ": ";
  bool any = false;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (any) text += "; ";
    text += buffer;
    any = true;
  }
  if (!any) text += "unknown OpenSSL error";
  return text;
}

Result<std::unique_ptr<TestPki>> TestPki::Create(const TestPkiOptions& options) {
  BERTH_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("pki"));
  auto pki = std::unique_ptr<TestPki>(new TestPki(std::move(dir)));

  BERTH_ASSIGN_OR_RETURN(UniqueKey ca_key, GenerateEcKey());
  BERTH_ASSIGN_OR_RETURN(
      UniqueX509 ca_cert,
      IssueCertificate({.common_name = "berth test CA",
                        .is_ca = true,
                        .key_usage = "critical,keyCertSign,cRLSign,digitalSignature"},
                       ca_key.get(), nullptr, nullptr));

  BERTH_ASSIGN_OR_RETURN(UniqueKey server_key, GenerateEcKey());
  std::string server_name =
      options.server_dns_names.empty() ? "127.0.0.1" : options.server_dns_names.front();
  BERTH_ASSIGN_OR_RETURN(UniqueX509 server_cert,
                         IssueCertificate({.common_name = server_name,
                                           .key_usage = "critical,digitalSignature,keyEncipherment",
                                           .extended_key_usage = "serverAuth",
                                           .subject_alt_names = JoinSans(options)},
                                          server_key.get(), ca_cert.get(), ca_key.get()));

  BERTH_ASSIGN_OR_RETURN(UniqueKey client_key, GenerateEcKey());
  BERTH_ASSIGN_OR_RETURN(UniqueX509 client_cert,
                         IssueCertificate({.common_name = options.client_common_name,
                                           .key_usage = "critical,digitalSignature,keyEncipherment",
                                           .extended_key_usage = "clientAuth"},
                                          client_key.get(), ca_cert.get(), ca_key.get()));

  BERTH_ASSIGN_OR_RETURN(UniqueKey token_key, GenerateRsaKey());
  BERTH_ASSIGN_OR_RETURN(UniqueX509 token_cert,
                         IssueCertificate({.common_name = "berth test token signer",
                                           .key_usage = "critical,digitalSignature"},
                                          token_key.get(), nullptr, nullptr));

  BERTH_RETURN_IF_ERROR(WriteKey(ca_key.get(), pki->ca_key_file()));
  BERTH_RETURN_IF_ERROR(WriteCert(ca_cert.get(), pki->ca_cert_file()));
  BERTH_RETURN_IF_ERROR(WriteKey(server_key.get(), pki->server_key_file()));
  BERTH_RETURN_IF_ERROR(WriteCert(server_cert.get(), pki->server_cert_file()));
  BERTH_RETURN_IF_ERROR(WriteKey(client_key.get(), pki->client_key_file()));
  BERTH_RETURN_IF_ERROR(WriteCert(client_cert.get(), pki->client_cert_file()));
  BERTH_RETURN_IF_ERROR(WriteKey(token_key.get(), pki->token_key_file()));
  BERTH_RETURN_IF_ERROR(WriteCert(token_cert.get(), pki->token_cert_file()));
  return pki;
}

}  // namespace berth::testing
