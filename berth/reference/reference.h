// File: berth/reference/reference.h
//
// Reference is a parsed, normalized image reference: `[domain/]path[:tag][@digest]`. It follows
// Docker's grammar and normalization rules exactly (github.com/distribution/reference:
// ParseNormalizedNamed, ParseDockerRef, FamiliarName, FamiliarString, ParseAnyReference), so
// that a name typed into `docker pull`, `crictl pull` or a Kubernetes pod spec means the same
// image to berth as it does to Docker and containerd.
//
// Grammar (as distribution documents it):
//
//   reference        := name [ ":" tag ] [ "@" digest ]
//   name             := [domain "/"] path
//   domain           := host [":" port-number]
//   host             := domain-name | "[" IPv6address "]"      IPv6: [a-fA-F0-9:]+ only
//   domain-name      := domain-component ("." domain-component)*
//   domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//   port-number      := [0-9]+
//   path             := path-component ("/" path-component)*
//   path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//   separator        := "." | "_" | "__" | "-"+
//   tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//   digest           := algorithm ":" hex       parsed by berth::Digest (sha256/sha384/sha512)
//
// Normalization (ParseNormalizedNamed):
//   - The first "/"-separated component is a domain if it contains "." or ":", is exactly
//     "localhost", or contains an uppercase letter. Otherwise the domain is "docker.io" and the
//     whole name is the path. A name without any "/" always gets the default domain, so
//     "localhost" and "example.com" alone are Docker Hub repositories, not hosts.
//   - "index.docker.io" (the legacy Docker Hub name) becomes "docker.io".
//   - On docker.io, a one-component path gets the "library/" prefix: "busybox" ->
//     "docker.io/library/busybox".
//   - A 64-character lowercase hex string is refused as a name (it looks like an image ID).
//   - The path must be lowercase; the domain may contain uppercase (it is kept as written).
//   - The path (not counting the domain) may have at most 255 characters. This mirrors
//     distribution/reference v0.6+, which applies the limit to the repository path only (older
//     versions counted "domain/path"); the registry API sees only the path.
//
// Parse() additionally applies ParseDockerRef: a name with neither tag nor digest gets the tag
// "latest"; a name with both a tag and a digest keeps only the digest (the digest pins the
// content, the tag would be ignored by a pull anyway):
//
//   "busybox"                         -> docker.io/library/busybox:latest
//   "busybox@sha256:<hex>"            -> docker.io/library/busybox@sha256:<hex>
//   "busybox:1.36@sha256:<hex>"       -> docker.io/library/busybox@sha256:<hex>
//   "localhost:5000/foo"              -> localhost:5000/foo:latest
//   "[::1]:5000/foo:v1"               -> [::1]:5000/foo:v1
//
// A quirk kept for compatibility: when the first component looks like a host ("." or ":" in
// it) but is not a valid domain (e.g. "foo_bar.com/baz", underscores are not allowed in host
// names) and the whole name is still a valid path, distribution returns an empty domain and
// the whole name as the path. Reference does the same, so domain() can be empty in that one
// case; Name() is then just the path.
//
// Errors: every parse failure is ErrorCode::kInvalidArgument. Error::message() says only *why*
// the text was rejected, using distribution's wording ("invalid reference format",
// "invalid reference format: repository name must be lowercase", "repository name must not be
// more than 255 characters", "invalid repository name, cannot specify 64-byte hexadecimal
// strings", "unsupported digest algorithm", "invalid checksum digest length", "invalid
// checksum digest format", "invalid tag format"). The message never contains the input:
// callers add it, e.g. the CLI prints `error: <message> in "<input>"`.
//
// Thread safety: Reference is an immutable value type; distinct objects may be used from
// distinct threads, and a const object may be shared.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "berth/base/result.h"
#include "berth/digest/digest.h"

namespace berth {

class Reference {
 public:
  // Docker Hub's canonical domain, used when a reference names no domain.
  static constexpr std::string_view kDefaultDomain = "docker.io";
  // The tag Parse() adds to a reference that has neither a tag nor a digest.
  static constexpr std::string_view kDefaultTag = "latest";
  // The longest path (repository name without the domain) that is accepted.
  static constexpr size_t kMaxPathLength = 255;

  // Parses and normalizes `text` the way containerd and CRI do before a pull (ParseDockerRef):
  // ParseNormalizedNamed(), then add the tag "latest" if there is neither tag nor digest, and
  // drop the tag if there are both. The result always has exactly one of tag and digest.
  // Parse(r.ToString()) == r for every parsed r. Returns kInvalidArgument (see file comment).
  static Result<Reference> Parse(std::string_view text);

  // Parses and normalizes `text` like distribution's ParseNormalizedNamed: the domain and path
  // are normalized, but the tag and digest are kept exactly as given (none, either, or both).
  // Use this where "no tag" must stay distinguishable from ":latest". Returns kInvalidArgument.
  static Result<Reference> ParseNormalizedNamed(std::string_view text);

  // "docker.io", "localhost:5000", "[::1]:5000"; empty only in the quirk the file comment
  // describes.
  const std::string& domain() const { return domain_; }
  // The repository path, e.g. "library/busybox".
  const std::string& path() const { return path_; }
  // The tag, or empty if the reference has none (the grammar forbids an empty tag).
  const std::string& tag() const { return tag_; }
  bool has_tag() const { return !tag_.empty(); }
  // The digest, if the reference pins one.
  const std::optional<Digest>& digest() const { return digest_; }

  // The repository name, "domain/path": "docker.io/library/busybox". This is also what
  // containerd calls the locator.
  std::string Name() const;
  // The full normalized form: Name()[":" tag]["@" digest].
  std::string ToString() const;
  // Name() as Docker shows it: without "docker.io/", and without "library/" when the rest is a
  // single component: "busybox", "dmcgowan/myapp", "localhost:5000/foo".
  std::string FamiliarName() const;
  // ToString() as Docker shows it: "busybox:latest", "localhost:5000/foo@sha256:<hex>".
  // Parsing the familiar string gives back an equal Reference, except for docker.io paths
  // whose first component looks like a host ("docker.io/example.com/foo"), which Docker's
  // familiar form cannot express either.
  std::string FamiliarString() const;

  // Returns this reference with its tag replaced by `tag`; a digest is kept. Returns
  // kInvalidArgument "invalid tag format" if `tag` does not match the tag grammar.
  Result<Reference> WithTag(std::string_view tag) const;
  // Returns this reference with its digest replaced by `digest`; a tag is kept.
  Reference WithDigest(const Digest& digest) const;
  // Returns the bare repository name: no tag, no digest (distribution's TrimNamed).
  Reference NameOnly() const;

  friend bool operator==(const Reference&, const Reference&) = default;

 private:
  Reference(std::string domain, std::string path, std::string tag, std::optional<Digest> digest)
      : domain_(std::move(domain)),
        path_(std::move(path)),
        tag_(std::move(tag)),
        digest_(std::move(digest)) {}

  std::string domain_;
  std::string path_;
  std::string tag_;
  std::optional<Digest> digest_;
};

// An image named either by repository (a Reference) or by content (an image ID / digest).
using AnyReference = std::variant<Reference, Digest>;

// Parses `text` like distribution's ParseAnyReference, for commands that accept either an
// image name or an image ID (inspect, remove, CRI ImageStatus):
//   - 64 lowercase hex characters -> the Digest "sha256:<text>";
//   - a valid digest ("sha256:<hex>", "sha512:<hex>") -> that Digest;
//   - anything else -> Reference::ParseNormalizedNamed(text) (no default tag is added).
// Returns kInvalidArgument if `text` is none of these.
Result<AnyReference> ParseAnyReference(std::string_view text);

}  // namespace berth

template <>
struct fmt::formatter<berth::Reference> : fmt::formatter<std::string> {
  template <typename FormatContext>
  auto format(const berth::Reference& reference, FormatContext& ctx) const {
    return fmt::formatter<std::string>::format(reference.ToString(), ctx);
  }
};
