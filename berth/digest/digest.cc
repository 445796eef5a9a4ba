#include "berth/digest/digest.h"

#include <openssl/evp.h>

#include "berth/base/abbreviate.h"
#include "berth/base/c_handle.h"
#include "berth/base/check.h"

namespace berth {
namespace {

size_t HexLength(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return 64;
    case DigestAlgorithm::kSha384:
      return 96;
    case DigestAlgorithm::kSha512:
      return 128;
  }
  return 0;
}

const EVP_MD* EvpFor(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return EVP_sha256();
    case DigestAlgorithm::kSha384:
      return EVP_sha384();
    case DigestAlgorithm::kSha512:
      return EVP_sha512();
  }
  return EVP_sha256();
}

bool IsAlgorithmComponentChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// OCI image spec: algorithm ::= component (separator component)*, component ::= [a-z0-9]+,
// separator ::= [+._-].
bool IsAlgorithmGrammar(std::string_view algorithm) {
  if (algorithm.empty()) return false;
  bool previous_was_separator = true;  // the first char must start a component
  for (char c : algorithm) {
    if (IsAlgorithmComponentChar(c)) {
      previous_was_separator = false;
    } else if (c == '+' || c == '.' || c == '_' || c == '-') {
      if (previous_was_separator) return false;
      previous_was_separator = true;
    } else {
      return false;
    }
  }
  return !previous_was_separator;
}

// OCI image spec: encoded ::= [a-zA-Z0-9=_-]+
bool IsEncodedGrammar(std::string_view encoded) {
  if (encoded.empty()) return false;
  for (char c : encoded) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '=' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string ToHex(const unsigned char* bytes, size_t length) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(length * 2, '0');
  for (size_t i = 0; i < length; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace

std::string_view DigestAlgorithmName(DigestAlgorithm algorithm) {
  switch (algorithm) {
    case DigestAlgorithm::kSha256:
      return "sha256";
    case DigestAlgorithm::kSha384:
      return "sha384";
    case DigestAlgorithm::kSha512:
      return "sha512";
  }
  return "sha256";
}

namespace {

// A digest is at most 135 bytes (sha512); a longer text is echoed in part.
std::string Quoted(std::string_view text) {
  return fmt::format("\"{}\"", AbbreviateMiddle(text, 160));
}

}  // namespace

Result<Digest> Digest::Parse(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid digest {}: expected algorithm:hex", Quoted(text)));
  }
  std::string_view algorithm_text = text.substr(0, colon);
  std::string_view encoded = text.substr(colon + 1);
  if (!IsAlgorithmGrammar(algorithm_text) || !IsEncodedGrammar(encoded)) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("invalid digest format {}", Quoted(text)));
  }
  DigestAlgorithm algorithm;
  if (algorithm_text == "sha256") {
    algorithm = DigestAlgorithm::kSha256;
  } else if (algorithm_text == "sha384") {
    algorithm = DigestAlgorithm::kSha384;
  } else if (algorithm_text == "sha512") {
    algorithm = DigestAlgorithm::kSha512;
  } else {
    return Fail(ErrorCode::kUnimplemented,
                fmt::format("unsupported digest algorithm {} (supported: sha256, sha384, sha512)",
                            Quoted(algorithm_text)));
  }
  if (encoded.size() != HexLength(algorithm)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("invalid {} digest {}: expected {} hex characters, got {}",
                            algorithm_text, Quoted(text), HexLength(algorithm), encoded.size()));
  }
  for (char c : encoded) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("invalid digest {}: only lowercase hex is allowed", Quoted(text)));
    }
  }
  return Digest(algorithm, std::string(encoded));
}

Digest Digest::Sha256Of(std::string_view bytes) {
  Hasher hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

std::string Digest::ToString() const {
  std::string out(algorithm_name());
  out.push_back(':');
  out += encoded_;
  return out;
}

struct Hasher::State {
  UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free> context{EVP_MD_CTX_new()};
};

Hasher::Hasher(DigestAlgorithm algorithm)
    : state_(std::make_unique<State>()), algorithm_(algorithm) {
  BERTH_CHECK(state_->context != nullptr) << "EVP_MD_CTX_new failed";
  BERTH_CHECK(EVP_DigestInit_ex(state_->context.get(), EvpFor(algorithm), nullptr) == 1);
}

Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::Update(std::string_view bytes) {
  EVP_DigestUpdate(state_->context.get(), bytes.data(), bytes.size());
  size_ += bytes.size();
}

void Hasher::Update(std::span<const std::byte> bytes) {
  EVP_DigestUpdate(state_->context.get(), bytes.data(), bytes.size());
  size_ += bytes.size();
}

Digest Hasher::Finish() const {
  UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free> copy(EVP_MD_CTX_new());
  BERTH_CHECK(copy && EVP_MD_CTX_copy_ex(copy.get(), state_->context.get()) == 1);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  BERTH_CHECK(EVP_DigestFinal_ex(copy.get(), out, &length) == 1);
  return Digest(algorithm_, ToHex(out, length));
}

}  // namespace berth
