#include "berth/reference/reference.h"

#include <utility>

namespace berth {
namespace {

// The grammar is matched by hand rather than with std::regex: every production is a simple
// left-to-right scan, and the one place distribution's regular expression backtracks (is the
// first component a domain or a path component?) is decided explicitly in MatchName().

constexpr std::string_view kLegacyDefaultDomain = "index.docker.io";
constexpr std::string_view kOfficialRepoPrefix = "library/";
constexpr std::string_view kLocalhost = "localhost";
constexpr size_t kMaxTagLength = 128;
constexpr size_t kMinDigestHexLength = 32;
constexpr size_t kIdentifierLength = 64;

constexpr std::string_view kErrInvalidFormat = "invalid reference format";
constexpr std::string_view kErrNameEmpty = "repository name must have at least one component";
constexpr std::string_view kErrNameUppercase = "repository name must be lowercase";
constexpr std::string_view kErrRemoteUppercase =
    "invalid reference format: repository name must be lowercase";
constexpr std::string_view kErrNameTooLong = "repository name must not be more than 255 characters";
constexpr std::string_view kErrIdentifierAsName =
    "invalid repository name, cannot specify 64-byte hexadecimal strings";
constexpr std::string_view kErrDigestUnsupported = "unsupported digest algorithm";
constexpr std::string_view kErrDigestLength = "invalid checksum digest length";
constexpr std::string_view kErrDigestFormat = "invalid checksum digest format";
constexpr std::string_view kErrTagFormat = "invalid tag format";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsLowerAlnum(c) || IsUpper(c); }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || IsUpper(c); }
bool IsWordChar(char c) { return IsAlnum(c) || c == '_'; }  // RE2's \w
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool IsLowerHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }

bool HasUpper(std::string_view text) {
  for (char c : text) {
    if (IsUpper(c)) return true;
  }
  return false;
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (IsUpper(c)) c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!IsDigit(c)) return false;
  }
  return true;
}

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := "." | "_" | "__" | "-"+
bool IsPathComponent(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  auto scan_alnum_run = [&] {
    size_t start = i;
    while (i < n && IsLowerAlnum(text[i])) ++i;
    return i > start;
  };
  if (!scan_alnum_run()) return false;
  while (i < n) {
    if (text[i] == '.') {
      ++i;
    } else if (text[i] == '_') {
      ++i;
      if (i < n && text[i] == '_') ++i;  // "__" is one separator; "___" is not allowed
    } else if (text[i] == '-') {
      while (i < n && text[i] == '-') ++i;
    } else {
      return false;
    }
    if (!scan_alnum_run()) return false;  // a separator must be followed by an alnum run
  }
  return true;
}

// path := path-component ("/" path-component)*
bool IsPath(std::string_view text) {
  while (true) {
    size_t slash = text.find('/');
    if (!IsPathComponent(text.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    text.remove_prefix(slash + 1);
  }
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool IsDomainComponent(std::string_view text) {
  if (text.empty() || !IsAlnum(text.front()) || !IsAlnum(text.back())) return false;
  for (char c : text) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}

// domain-name := domain-component ("." domain-component)*
bool IsDomainName(std::string_view text) {
  while (true) {
    size_t dot = text.find('.');
    if (!IsDomainComponent(text.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    text.remove_prefix(dot + 1);
  }
}

// domain := (domain-name | "[" [a-fA-F0-9:]+ "]") [":" port-number]
bool IsDomainAndPort(std::string_view text) {
  std::string_view port_part;  // includes the leading ':' when present
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : text.substr(1, close - 1)) {
      if (!IsHexDigit(c) && c != ':') return false;
    }
    port_part = text.substr(close + 1);
  } else {
    size_t colon = text.find(':');
    if (!IsDomainName(text.substr(0, colon))) return false;
    if (colon != std::string_view::npos) port_part = text.substr(colon);
  }
  if (port_part.empty()) return true;
  return port_part.front() == ':' && IsDigits(port_part.substr(1));
}

// tag := [\w][\w.-]{0,127}
bool IsTag(std::string_view text) {
  if (text.empty() || text.size() > kMaxTagLength || !IsWordChar(text.front())) return false;
  for (char c : text) {
    if (!IsWordChar(c) && c != '.' && c != '-') return false;
  }
  return true;
}

// The digest syntax distribution's reference grammar accepts before handing the text to the
// digest parser: [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* ":" [0-9a-fA-F]{32,}
bool IsDigestSyntax(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view algorithm = text.substr(0, colon);
  std::string_view hex = text.substr(colon + 1);
  bool expect_component_start = true;
  for (char c : algorithm) {
    if (expect_component_start) {
      if (!IsLetter(c)) return false;
      expect_component_start = false;
    } else if (c == '-' || c == '_' || c == '+' || c == '.') {
      expect_component_start = true;
    } else if (!IsAlnum(c)) {
      return false;
    }
  }
  if (expect_component_start) return false;  // empty algorithm or trailing separator
  if (hex.size() < kMinDigestHexLength) return false;
  for (char c : hex) {
    if (!IsHexDigit(c)) return false;
  }
  return true;
}

// identifier := [a-f0-9]{64}, the form of an image ID without "sha256:".
bool IsIdentifier(std::string_view text) {
  if (text.size() != kIdentifierLength) return false;
  for (char c : text) {
    if (!IsLowerHexDigit(c)) return false;
  }
  return true;
}

struct NameParts {
  std::string_view domain;
  std::string_view path;
};

// name := [domain "/"] path. Like distribution's anchored name expression, the first
// component is taken as the domain whenever that makes the whole name match; otherwise the
// whole name must be a path and the domain is empty.
std::optional<NameParts> MatchName(std::string_view name) {
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view domain = name.substr(0, slash);
    std::string_view path = name.substr(slash + 1);
    if (IsDomainAndPort(domain) && IsPath(path)) return NameParts{domain, path};
  }
  if (IsPath(name)) return NameParts{{}, name};
  return std::nullopt;
}

struct ReferenceParts {
  NameParts name;
  std::string_view tag;     // empty if absent
  std::string_view digest;  // empty if absent; syntax-checked only
};

// reference := name [":" tag] ["@" digest]. No production but the digest contains '@', and
// after the last '/' only the tag separator may be a ':', so the split points are unique.
std::optional<ReferenceParts> MatchReference(std::string_view text) {
  ReferenceParts parts;
  size_t at = text.find('@');
  if (at != std::string_view::npos) {
    parts.digest = text.substr(at + 1);
    if (!IsDigestSyntax(parts.digest)) return std::nullopt;
    text = text.substr(0, at);
  }
  size_t last_slash = text.rfind('/');
  size_t colon = text.find(':', last_slash == std::string_view::npos ? 0 : last_slash + 1);
  if (colon != std::string_view::npos) {
    parts.tag = text.substr(colon + 1);
    if (!IsTag(parts.tag)) return std::nullopt;
    text = text.substr(0, colon);
  }
  std::optional<NameParts> name = MatchName(text);
  if (!name) return std::nullopt;
  parts.name = *name;
  return parts;
}

// Parses a digest that passed IsDigestSyntax(), reporting failures in go-digest's words.
Result<Digest> ParseReferenceDigest(std::string_view text) {
  Result<Digest> digest = Digest::Parse(text);
  if (digest) return digest;
  if (digest.error().code() == ErrorCode::kUnimplemented) {
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrDigestUnsupported));
  }
  size_t colon = text.find(':');
  std::string_view algorithm = text.substr(0, colon);
  size_t hex_length = text.size() - colon - 1;
  size_t expected_length = algorithm == "sha256"   ? 64
                           : algorithm == "sha384" ? 96
                           : algorithm == "sha512" ? 128
                                                   : 0;
  if (expected_length != 0 && hex_length != expected_length) {
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrDigestLength));
  }
  return Fail(ErrorCode::kInvalidArgument, std::string(kErrDigestFormat));
}

struct Components {
  std::string domain;
  std::string path;
  std::string tag;
  std::optional<Digest> digest;
};

// distribution's reference.Parse: the grammar without any normalization.
Result<Components> ParseComponents(std::string_view text) {
  if (text.empty()) return Fail(ErrorCode::kInvalidArgument, std::string(kErrNameEmpty));
  std::optional<ReferenceParts> parts = MatchReference(text);
  if (!parts) {
    // If lowercasing makes it valid, the name had uppercase where only lowercase is allowed.
    std::string lower = AsciiLower(text);
    if (lower != text && MatchReference(lower)) {
      return Fail(ErrorCode::kInvalidArgument, std::string(kErrNameUppercase));
    }
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrInvalidFormat));
  }
  if (parts->name.path.size() > Reference::kMaxPathLength) {
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrNameTooLong));
  }
  Components components{std::string(parts->name.domain), std::string(parts->name.path),
                        std::string(parts->tag), std::nullopt};
  if (!parts->digest.empty()) {
    BERTH_ASSIGN_OR_RETURN(components.digest, ParseReferenceDigest(parts->digest));
  }
  return components;
}

// Splits `text` into a domain and the remainder (path, tag, digest), applying Docker Hub's
// defaults. The remainder is not validated here.
std::pair<std::string, std::string> SplitDockerDomain(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    // A single component is always a Docker Hub official image, even "localhost" or
    // "example.com": otherwise "name:tag" could not be told apart from "host:port".
    return {std::string(Reference::kDefaultDomain),
            std::string(kOfficialRepoPrefix) + std::string(text)};
  }
  std::string_view first = text.substr(0, slash);
  std::string_view rest = text.substr(slash + 1);
  std::string domain;
  std::string remainder;
  if (first == kLocalhost) {
    domain = first;
    remainder = rest;
  } else if (first == kLegacyDefaultDomain) {
    domain = Reference::kDefaultDomain;
    remainder = rest;
  } else if (first.find_first_of(".:") != std::string_view::npos || HasUpper(first)) {
    // A host name, an IPv4 or bracketed IPv6 address, host:port, or an uppercase first
    // component (paths are lowercase, so that can only be meant as a host).
    domain = first;
    remainder = rest;
  } else {
    domain = Reference::kDefaultDomain;
    remainder = text;
  }
  if (domain == Reference::kDefaultDomain && remainder.find('/') == std::string::npos) {
    remainder = std::string(kOfficialRepoPrefix) + remainder;
  }
  return {std::move(domain), std::move(remainder)};
}

}  // namespace

Result<Reference> Reference::ParseNormalizedNamed(std::string_view text) {
  if (IsIdentifier(text)) {
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrIdentifierAsName));
  }
  auto [domain, remainder] = SplitDockerDomain(text);
  // distribution checks everything before the first ':' of the remainder, which for an
  // untagged reference includes "@algorithm"; this is deliberate bug-for-bug compatibility.
  std::string_view remote = std::string_view(remainder).substr(0, remainder.find(':'));
  if (HasUpper(remote)) {
    return Fail(ErrorCode::kInvalidArgument, std::string(kErrRemoteUppercase));
  }
  BERTH_ASSIGN_OR_RETURN(Components components, ParseComponents(domain + "/" + remainder));
  return Reference(std::move(components.domain), std::move(components.path),
                   std::move(components.tag), std::move(components.digest));
}

Result<Reference> Reference::Parse(std::string_view text) {
  BERTH_ASSIGN_OR_RETURN(Reference reference, ParseNormalizedNamed(text));
  if (reference.digest_) {
    reference.tag_.clear();  // a digest wins over a tag
  } else if (reference.tag_.empty()) {
    reference.tag_ = kDefaultTag;
  }
  return reference;
}

std::string Reference::Name() const {
  if (domain_.empty()) return path_;
  return domain_ + "/" + path_;
}

std::string Reference::ToString() const {
  std::string out = Name();
  if (!tag_.empty()) out += ":" + tag_;
  if (digest_) out += "@" + digest_->ToString();
  return out;
}

std::string Reference::FamiliarName() const {
  if (domain_ != kDefaultDomain) return Name();
  std::string_view path = path_;
  if (path.starts_with(kOfficialRepoPrefix)) {
    std::string_view rest = path.substr(kOfficialRepoPrefix.size());
    // Only "library/x" is shortened; "library/x/y" stays as it is.
    if (rest.find('/') == std::string_view::npos) return std::string(rest);
  }
  return path_;
}

std::string Reference::FamiliarString() const {
  std::string out = FamiliarName();
  if (!tag_.empty()) out += ":" + tag_;
  if (digest_) out += "@" + digest_->ToString();
  return out;
}

Result<Reference> Reference::WithTag(std::string_view tag) const {
  if (!IsTag(tag)) return Fail(ErrorCode::kInvalidArgument, std::string(kErrTagFormat));
  return Reference(domain_, path_, std::string(tag), digest_);
}

Reference Reference::WithDigest(const Digest& digest) const {
  return Reference(domain_, path_, tag_, digest);
}

Reference Reference::NameOnly() const { return Reference(domain_, path_, "", std::nullopt); }

Result<AnyReference> ParseAnyReference(std::string_view text) {
  if (IsIdentifier(text)) {
    BERTH_ASSIGN_OR_RETURN(Digest digest, Digest::Parse("sha256:" + std::string(text)));
    return AnyReference(std::move(digest));
  }
  if (Result<Digest> digest = Digest::Parse(text)) return AnyReference(std::move(*digest));
  BERTH_ASSIGN_OR_RETURN(Reference reference, Reference::ParseNormalizedNamed(text));
  return AnyReference(std::move(reference));
}

}  // namespace berth
