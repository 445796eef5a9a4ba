// File: berth/digest/digest.h
//
// Digest is a verified content address, "algorithm:encoded", as the OCI image spec defines it.
// A Digest value is always valid: Parse() rejects anything else, so code that holds a Digest can
// build paths from it (blobs/sha256/<hex>) without further checks.
//
// Registered algorithms (as in go-digest): sha256 (64 hex), sha384 (96 hex), sha512 (128 hex),
// lowercase hex only. An algorithm that matches the spec's grammar but is not registered is
// kUnimplemented, anything malformed is kInvalidArgument.
//
// Hasher computes a digest incrementally (OpenSSL EVP; SHA-NI where the CPU has it).
//
// Thread safety: Digest is a value type. A Hasher must be used by one thread at a time.
#pragma once

#include <fmt/format.h>

#include <compare>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "berth/base/result.h"

namespace berth {

enum class DigestAlgorithm { kSha256, kSha384, kSha512 };

// "sha256", "sha384", "sha512".
std::string_view DigestAlgorithmName(DigestAlgorithm algorithm);

class Digest {
 public:
  // Parses "sha256:<64 lowercase hex>" and the other registered algorithms.
  static Result<Digest> Parse(std::string_view text);
  // The sha256 digest of `bytes`.
  static Digest Sha256Of(std::string_view bytes);

  DigestAlgorithm algorithm() const { return algorithm_; }
  std::string_view algorithm_name() const { return DigestAlgorithmName(algorithm_); }
  // The hex part, without "sha256:".
  const std::string& encoded() const { return encoded_; }
  std::string ToString() const;

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;

 private:
  Digest(DigestAlgorithm algorithm, std::string encoded)
      : algorithm_(algorithm), encoded_(std::move(encoded)) {}
  friend class Hasher;

  DigestAlgorithm algorithm_ = DigestAlgorithm::kSha256;
  std::string encoded_;
};

class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm = DigestAlgorithm::kSha256);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;

  void Update(std::string_view bytes);
  void Update(std::span<const std::byte> bytes);
  // Bytes hashed so far.
  uint64_t size() const { return size_; }
  // The digest of everything hashed so far. The Hasher can keep going afterwards.
  Digest Finish() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  DigestAlgorithm algorithm_;
  uint64_t size_ = 0;
};

}  // namespace berth

template <>
struct fmt::formatter<berth::Digest> : fmt::formatter<std::string> {
  template <typename FormatContext>
  auto format(const berth::Digest& digest, FormatContext& ctx) const {
    return fmt::formatter<std::string>::format(digest.ToString(), ctx);
  }
};

template <>
struct std::hash<berth::Digest> {
  size_t operator()(const berth::Digest& digest) const noexcept {
    return std::hash<std::string>()(digest.encoded());
  }
};
