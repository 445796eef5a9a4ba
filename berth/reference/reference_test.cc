#include "berth/reference/reference.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "berth/reference/reference_json.h"

namespace berth {

// Readable failure output for EXPECT_EQ(Reference, Reference).
void PrintTo(const Reference& reference, std::ostream* os) { *os << reference.ToString(); }

namespace {

// Test vectors are derived from the grammar and from the cases distribution/reference's own
// tests exercise (normalize_test.go, reference_test.go), rewritten as tables.

const std::string kHex64 = "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
const std::string kSha256 = "sha256:" + kHex64;
const std::string kSha384 = "sha384:" + std::string(96, 'c');
const std::string kSha512 = "sha512:" + std::string(128, 'f');
// A 64-character lowercase hex string: an image ID, refused as a name.
const std::string kIdentifier = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

constexpr char kInvalidFormat[] = "invalid reference format";
constexpr char kRemoteUppercase[] = "invalid reference format: repository name must be lowercase";
constexpr char kNameUppercase[] = "repository name must be lowercase";
constexpr char kTooLong[] = "repository name must not be more than 255 characters";
constexpr char kIdentifierAsName[] =
    "invalid repository name, cannot specify 64-byte hexadecimal strings";
constexpr char kDigestUnsupported[] = "unsupported digest algorithm";
constexpr char kDigestLength[] = "invalid checksum digest length";
constexpr char kDigestFormat[] = "invalid checksum digest format";

// ---------------------------------------------------------------------------------------------
// Reference::Parse (ParseDockerRef semantics): valid inputs.

struct DockerRefCase {
  std::string input;
  std::string domain;
  std::string path;
  std::string tag;     // "" = no tag
  std::string digest;  // "" = no digest
  std::string canonical;
  std::string familiar;
};

void PrintTo(const DockerRefCase& c, std::ostream* os) { *os << '"' << c.input << '"'; }

std::vector<DockerRefCase> DockerRefCases() {
  const std::string long_tag(128, 't');
  const std::string path255 = "x/" + std::string(253, 'a');
  const std::string single247(247, 'a');
  const std::string path_after_domain255(255, 'a');
  return {
      // Docker Hub official images: default domain, library/ prefix, default tag.
      {"busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest",
       "busybox:latest"},
      {"busybox:latest", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"busybox:1.36.1", "docker.io", "library/busybox", "1.36.1", "",
       "docker.io/library/busybox:1.36.1", "busybox:1.36.1"},
      {"ubuntu:12.04", "docker.io", "library/ubuntu", "12.04", "", "docker.io/library/ubuntu:12.04",
       "ubuntu:12.04"},
      {"library/busybox", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"library/busybox:latest", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"docker.io/busybox", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"docker.io/busybox:latest", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"docker.io/library/busybox", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      // Digest only: no default tag. Tag and digest: the digest wins.
      {"busybox@" + kSha256, "docker.io", "library/busybox", "", kSha256,
       "docker.io/library/busybox@" + kSha256, "busybox@" + kSha256},
      {"busybox:1.36@" + kSha256, "docker.io", "library/busybox", "", kSha256,
       "docker.io/library/busybox@" + kSha256, "busybox@" + kSha256},
      {"docker.io/library/busybox:latest@" + kSha256, "docker.io", "library/busybox", "", kSha256,
       "docker.io/library/busybox@" + kSha256, "busybox@" + kSha256},
      {"gcr.io/library/busybox", "gcr.io", "library/busybox", "latest", "",
       "gcr.io/library/busybox:latest", "gcr.io/library/busybox:latest"},
      {"gcr.io/library/busybox:latest@" + kSha256, "gcr.io", "library/busybox", "", kSha256,
       "gcr.io/library/busybox@" + kSha256, "gcr.io/library/busybox@" + kSha256},
      {"busybox@" + kSha384, "docker.io", "library/busybox", "", kSha384,
       "docker.io/library/busybox@" + kSha384, "busybox@" + kSha384},
      {"busybox@" + kSha512, "docker.io", "library/busybox", "", kSha512,
       "docker.io/library/busybox@" + kSha512, "busybox@" + kSha512},
      // The legacy index.docker.io domain is Docker Hub.
      {"index.docker.io/busybox", "docker.io", "library/busybox", "latest", "",
       "docker.io/library/busybox:latest", "busybox:latest"},
      {"index.docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", "",
       "docker.io/library/busybox:1.36", "busybox:1.36"},
      {"index.docker.io/dmcgowan/myapp", "docker.io", "dmcgowan/myapp", "latest", "",
       "docker.io/dmcgowan/myapp:latest", "dmcgowan/myapp:latest"},
      // User repositories on Docker Hub keep their namespace; nested library/ paths stay.
      {"dmcgowan/myapp", "docker.io", "dmcgowan/myapp", "latest", "",
       "docker.io/dmcgowan/myapp:latest", "dmcgowan/myapp:latest"},
      {"dmcgowan/myapp@" + kSha256, "docker.io", "dmcgowan/myapp", "", kSha256,
       "docker.io/dmcgowan/myapp@" + kSha256, "dmcgowan/myapp@" + kSha256},
      {"docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest", "",
       "docker.io/library/foo/bar:latest", "library/foo/bar:latest"},
      {"store/foo/bar:1", "docker.io", "store/foo/bar", "1", "", "docker.io/store/foo/bar:1",
       "store/foo/bar:1"},
      {"other/library", "docker.io", "other/library", "latest", "",
       "docker.io/other/library:latest", "other/library:latest"},
      {"nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu", "latest", "",
       "docker.io/nonlibrary/ubuntu:latest", "nonlibrary/ubuntu:latest"},
      {"ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", "",
       "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"},
      // localhost is a domain, with or without a port, but only before a '/'.
      {"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest",
       "localhost/foo:latest"},
      {"localhost:5000/foo", "localhost:5000", "foo", "latest", "", "localhost:5000/foo:latest",
       "localhost:5000/foo:latest"},
      {"localhost:5000/foo/bar:v1@" + kSha256, "localhost:5000", "foo/bar", "", kSha256,
       "localhost:5000/foo/bar@" + kSha256, "localhost:5000/foo/bar@" + kSha256},
      {"localhost", "docker.io", "library/localhost", "latest", "",
       "docker.io/library/localhost:latest", "localhost:latest"},
      {"localhost:5000", "docker.io", "library/localhost", "5000", "",
       "docker.io/library/localhost:5000", "localhost:5000"},
      // A '.' or ':' in the first component makes it a domain; alone it is a Hub name.
      {"example.com", "docker.io", "library/example.com", "latest", "",
       "docker.io/library/example.com:latest", "example.com:latest"},
      {"docker.io", "docker.io", "library/docker.io", "latest", "",
       "docker.io/library/docker.io:latest", "docker.io:latest"},
      {"example.com/foo", "example.com", "foo", "latest", "", "example.com/foo:latest",
       "example.com/foo:latest"},
      {"example.com:8000/private/moonbase", "example.com:8000", "private/moonbase", "latest", "",
       "example.com:8000/private/moonbase:latest", "example.com:8000/private/moonbase:latest"},
      {"test.com:8080/foo", "test.com:8080", "foo", "latest", "", "test.com:8080/foo:latest",
       "test.com:8080/foo:latest"},
      {"test-com:8080/foo", "test-com:8080", "foo", "latest", "", "test-com:8080/foo:latest",
       "test-com:8080/foo:latest"},
      {"test:5000/repo", "test:5000", "repo", "latest", "", "test:5000/repo:latest",
       "test:5000/repo:latest"},
      {"foo:5000", "docker.io", "library/foo", "5000", "", "docker.io/library/foo:5000",
       "foo:5000"},
      {"test_com/foo", "docker.io", "test_com/foo", "latest", "", "docker.io/test_com/foo:latest",
       "test_com/foo:latest"},
      {"registry-1.docker.io/library/busybox", "registry-1.docker.io", "library/busybox", "latest",
       "", "registry-1.docker.io/library/busybox:latest",
       "registry-1.docker.io/library/busybox:latest"},
      {"sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
       "some-long-tag", "", "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
       "sub-dom1.foo.com/bar/baz/quux:some-long-tag"},
      {"b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
       "test.example.com", "", "b.gcr.io/test.example.com/my-app:test.example.com",
       "b.gcr.io/test.example.com/my-app:test.example.com"},
      {"xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", "",
       "xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com/myimage:xn--n3h.com"},
      {"xn--7o8h.com/myimage:xn--7o8h.com@" + kSha512, "xn--7o8h.com", "myimage", "", kSha512,
       "xn--7o8h.com/myimage@" + kSha512, "xn--7o8h.com/myimage@" + kSha512},
      // IPv4 addresses.
      {"127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", "latest", "",
       "127.0.0.1:5000/debian:latest", "127.0.0.1:5000/debian:latest"},
      {"192.168.1.1/repo", "192.168.1.1", "repo", "latest", "", "192.168.1.1/repo:latest",
       "192.168.1.1/repo:latest"},
      {"192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", "",
       "192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"},
      {"192.168.0.1", "docker.io", "library/192.168.0.1", "latest", "",
       "docker.io/library/192.168.0.1:latest", "192.168.0.1:latest"},
      {"192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", "",
       "docker.io/library/192.168.0.1:80", "192.168.0.1:80"},
      // IPv6 literals in brackets, with and without a port.
      {"[::1]:5000/foo", "[::1]:5000", "foo", "latest", "", "[::1]:5000/foo:latest",
       "[::1]:5000/foo:latest"},
      {"[::1]/foo", "[::1]", "foo", "latest", "", "[::1]/foo:latest", "[::1]/foo:latest"},
      {"[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", "latest", "",
       "[fc00::1]:5000/docker/docker:latest", "[fc00::1]:5000/docker/docker:latest"},
      {"[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian",
       "latest", "", "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
       "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest"},
      {"[2001:db8::]:5000/repo:tag", "[2001:db8::]:5000", "repo", "tag", "",
       "[2001:db8::]:5000/repo:tag", "[2001:db8::]:5000/repo:tag"},
      {"[2001:db8::1]:5000/repo:tag@" + kSha256, "[2001:db8::1]:5000", "repo", "", kSha256,
       "[2001:db8::1]:5000/repo@" + kSha256, "[2001:db8::1]:5000/repo@" + kSha256},
      {"[2001:DB8::1]:5000/repo", "[2001:DB8::1]:5000", "repo", "latest", "",
       "[2001:DB8::1]:5000/repo:latest", "[2001:DB8::1]:5000/repo:latest"},
      // An uppercase first component can only be a domain; domains keep their case.
      {"Foo/bar", "Foo", "bar", "latest", "", "Foo/bar:latest", "Foo/bar:latest"},
      {"FOO/bar", "FOO", "bar", "latest", "", "FOO/bar:latest", "FOO/bar:latest"},
      {"Docker/docker", "Docker", "docker", "latest", "", "Docker/docker:latest",
       "Docker/docker:latest"},
      {"Example.COM:5000/app", "Example.COM:5000", "app", "latest", "",
       "Example.COM:5000/app:latest", "Example.COM:5000/app:latest"},
      // Path component separators: '.', '_', '__', and runs of '-'.
      {"docker-rules/docker", "docker.io", "docker-rules/docker", "latest", "",
       "docker.io/docker-rules/docker:latest", "docker-rules/docker:latest"},
      {"docker---rules/docker", "docker.io", "docker---rules/docker", "latest", "",
       "docker.io/docker---rules/docker:latest", "docker---rules/docker:latest"},
      {"dock__er/docker", "docker.io", "dock__er/docker", "latest", "",
       "docker.io/dock__er/docker:latest", "dock__er/docker:latest"},
      {"d/docker", "docker.io", "d/docker", "latest", "", "docker.io/d/docker:latest",
       "d/docker:latest"},
      {"jess/t", "docker.io", "jess/t", "latest", "", "docker.io/jess/t:latest", "jess/t:latest"},
      {"a_b__c-d--e9/x.y", "docker.io", "a_b__c-d--e9/x.y", "latest", "",
       "docker.io/a_b__c-d--e9/x.y:latest", "a_b__c-d--e9/x.y:latest"},
      // Hex-looking names are fine unless exactly 64 lowercase hex characters and bare.
      {"docker.io/" + kIdentifier, "docker.io", "library/" + kIdentifier, "latest", "",
       "docker.io/library/" + kIdentifier + ":latest", kIdentifier + ":latest"},
      {kIdentifier + ":latest", "docker.io", "library/" + kIdentifier, "latest", "",
       "docker.io/library/" + kIdentifier + ":latest", kIdentifier + ":latest"},
      {kIdentifier.substr(0, 63), "docker.io", "library/" + kIdentifier.substr(0, 63), "latest", "",
       "docker.io/library/" + kIdentifier.substr(0, 63) + ":latest",
       kIdentifier.substr(0, 63) + ":latest"},
      {kIdentifier + "a", "docker.io", "library/" + kIdentifier + "a", "latest", "",
       "docker.io/library/" + kIdentifier + "a:latest", kIdentifier + "a:latest"},
      {"thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
       "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", "",
       "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
       "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"},
      {"dbcc1", "docker.io", "library/dbcc1", "latest", "", "docker.io/library/dbcc1:latest",
       "dbcc1:latest"},
      // "sha256:<hex>" without a name is the repository "sha256" with a 64-character tag.
      {kSha256, "docker.io", "library/sha256", kHex64, "", "docker.io/library/" + kSha256, kSha256},
      // Tags: any case, may start with '_', up to 128 characters.
      {"lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", "",
       "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"},
      {"foo:_tag", "docker.io", "library/foo", "_tag", "", "docker.io/library/foo:_tag",
       "foo:_tag"},
      {"foo:" + long_tag, "docker.io", "library/foo", long_tag, "",
       "docker.io/library/foo:" + long_tag, "foo:" + long_tag},
      // Path length limit applies to the path: exactly 255 is accepted.
      {path255, "docker.io", path255, "latest", "", "docker.io/" + path255 + ":latest",
       path255 + ":latest"},
      {single247, "docker.io", "library/" + single247, "latest", "",
       "docker.io/library/" + single247 + ":latest", single247 + ":latest"},
      {"example.com/" + path_after_domain255 + ":tag", "example.com", path_after_domain255, "tag",
       "", "example.com/" + path_after_domain255 + ":tag",
       "example.com/" + path_after_domain255 + ":tag"},
      // distribution's quirk: a host-like first component that is not a valid host but is a
      // valid path component leaves the domain empty.
      {"foo_bar.com/baz", "", "foo_bar.com/baz", "latest", "", "foo_bar.com/baz:latest",
       "foo_bar.com/baz:latest"},
      {"a.b_c/foo:1", "", "a.b_c/foo", "1", "", "a.b_c/foo:1", "a.b_c/foo:1"},
      {"a.b_c__d-e--f9/x", "", "a.b_c__d-e--f9/x", "latest", "", "a.b_c__d-e--f9/x:latest",
       "a.b_c__d-e--f9/x:latest"},
  };
}

class DockerRefTest : public ::testing::TestWithParam<DockerRefCase> {};

TEST_P(DockerRefTest, ParsesAndNormalizes) {
  const DockerRefCase& c = GetParam();
  Result<Reference> parsed = Reference::Parse(c.input);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->domain(), c.domain);
  EXPECT_EQ(parsed->path(), c.path);
  EXPECT_EQ(parsed->tag(), c.tag);
  EXPECT_EQ(parsed->has_tag(), !c.tag.empty());
  if (c.digest.empty()) {
    EXPECT_FALSE(parsed->digest().has_value());
  } else {
    ASSERT_TRUE(parsed->digest().has_value());
    EXPECT_EQ(parsed->digest()->ToString(), c.digest);
  }
  EXPECT_EQ(parsed->ToString(), c.canonical);
  EXPECT_EQ(parsed->FamiliarString(), c.familiar);
  EXPECT_EQ(parsed->Name(), c.domain.empty() ? c.path : c.domain + "/" + c.path);
  // ParseDockerRef always yields exactly one of tag and digest.
  EXPECT_NE(parsed->has_tag(), parsed->digest().has_value());
}

TEST_P(DockerRefTest, RoundTripsThroughCanonicalAndFamiliarForms) {
  Result<Reference> parsed = Reference::Parse(GetParam().input);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  Result<Reference> from_canonical = Reference::Parse(parsed->ToString());
  ASSERT_TRUE(from_canonical) << from_canonical.error().ToString();
  EXPECT_EQ(*from_canonical, *parsed);
  Result<Reference> from_familiar = Reference::Parse(parsed->FamiliarString());
  ASSERT_TRUE(from_familiar) << from_familiar.error().ToString();
  EXPECT_EQ(*from_familiar, *parsed);
  EXPECT_EQ(from_familiar->ToString(), GetParam().canonical);
}

INSTANTIATE_TEST_SUITE_P(Vectors, DockerRefTest, ::testing::ValuesIn(DockerRefCases()));

// ---------------------------------------------------------------------------------------------
// Invalid inputs, with the exact reason. Both Parse and ParseNormalizedNamed reject them.

struct InvalidCase {
  std::string input;
  std::string message;
};

void PrintTo(const InvalidCase& c, std::ostream* os) { *os << '"' << c.input << '"'; }

std::vector<InvalidCase> InvalidCases() {
  const std::string hex63 = kHex64.substr(0, 63);
  return {
      {"", kInvalidFormat},
      {":justtag", kInvalidFormat},
      {"@" + kSha256, kInvalidFormat},
      {"https://github.com/docker/docker", kInvalidFormat},
      {"aa/asdf$$^/aa", kInvalidFormat},
      // Path components: alphanumeric runs joined by '.', '_', '__' or '-'+.
      {"-docker", kInvalidFormat},
      {"-docker/docker", kInvalidFormat},
      {"docker-/docker", kInvalidFormat},
      {"-docker-/docker", kInvalidFormat},
      {"____/____", kInvalidFormat},
      {"_docker/_docker", kInvalidFormat},
      {"dock..er/docker", kInvalidFormat},
      {"dock_.er/docker", kInvalidFormat},
      {"dock-.er/docker", kInvalidFormat},
      {"foo___bar", kInvalidFormat},
      {"foo.", kInvalidFormat},
      {"foo_", kInvalidFormat},
      {".foo", kInvalidFormat},
      {"docker/", kInvalidFormat},
      {"/busybox", kInvalidFormat},
      {"docker///docker", kInvalidFormat},
      {"foo//bar", kInvalidFormat},
      {"docker.io/docker///docker", kInvalidFormat},
      {"foo/bar:tag/baz", kInvalidFormat},
      {" busybox", kInvalidFormat},
      {"busybox ", kInvalidFormat},
      {"busy box", kInvalidFormat},
      {"b\xc3\xbc"
       "cher",
       kInvalidFormat},
      // Domains.
      {"-docker.io/docker/docker", kInvalidFormat},
      {"-registry.com/foo", kInvalidFormat},
      {"registry-.com/foo", kInvalidFormat},
      {"registry..com/foo", kInvalidFormat},
      {"example.com:/foo", kInvalidFormat},
      {"example.com:port/foo", kInvalidFormat},
      {"example.com:5000:6000/foo", kInvalidFormat},
      {"fc00::1:5000/debian", kInvalidFormat},
      {"[fc00::1]", kInvalidFormat},
      {"[fc00::1]:5000", kInvalidFormat},
      {"[2001:db8::1]:tag", kInvalidFormat},
      {"[fe80::1%eth0]:5000/debian", kInvalidFormat},
      {"[fe80::1%@invalidzone]:5000/repo", kInvalidFormat},
      {"[2001:db8:3:4::192.0.2.33]:5000/debian", kInvalidFormat},
      {"[]/foo", kInvalidFormat},
      {"[::1/foo", kInvalidFormat},
      {"[::g]:5000/foo", kInvalidFormat},
      {"[::1]x/foo", kInvalidFormat},
      {"[::1]:/foo", kInvalidFormat},
      // Tags.
      {"foo:", kInvalidFormat},
      {"foo:-tag", kInvalidFormat},
      {"foo:.tag", kInvalidFormat},
      {"foo:1.0+build", kInvalidFormat},
      {"foo:tag:tag2", kInvalidFormat},
      {"foo:" + std::string(129, 't'), kInvalidFormat},
      {"foo:tag@", kInvalidFormat},
      // Digests: syntax first (letters-led algorithm, 32+ hex), then go-digest's checks.
      {"foo@", kInvalidFormat},
      {"foo@sha256:" + std::string(31, 'f'), kInvalidFormat},
      {"foo@sha256:" + hex63 + "g", kInvalidFormat},
      {"foo@sha-256:" + kHex64, kInvalidFormat},
      {"foo@" + kSha256 + "@" + kSha256, kInvalidFormat},
      {"foo@:" + kHex64, kInvalidFormat},
      {"repo@sha256:" + std::string(34, 'f'), kDigestLength},
      {"foo@sha256:" + hex63, kDigestLength},
      {"foo@sha256:" + kHex64 + "a", kDigestLength},
      {"foo@sha512:" + kHex64, kDigestLength},
      {"foo@sha384:" + kHex64, kDigestLength},
      {"validname@invaliddigest:" + std::string(64, 'f'), kDigestUnsupported},
      {"foo@md5:" + std::string(32, 'a'), kDigestUnsupported},
      {"foo@sha256+b64:" + kHex64, kDigestUnsupported},
      {"foo@sha256:" + std::string(64, 'F'), kDigestFormat},
      {"foo:v1@SHA256:" + kHex64, kDigestFormat},
      // Uppercase in the path (caught by normalization) or in a non-domain first component.
      {"docker/Docker", kRemoteUppercase},
      {"docker.io/docker/Docker", kRemoteUppercase},
      {"docker.io/Library/busybox", kRemoteUppercase},
      {"Busybox", kRemoteUppercase},
      {"Uppercase:tag", kRemoteUppercase},
      {"test:5000/Uppercase/lowercase:tag", kRemoteUppercase},
      {"localhost:5000/Foo", kRemoteUppercase},
      {"foo@SHA256:" + kHex64, kRemoteUppercase},
      {"Foo_Bar/baz", kNameUppercase},
      // Length: the path may have at most 255 characters.
      {"x/" + std::string(254, 'a'), kTooLong},
      {std::string(248, 'a'), kTooLong},
      {"example.com/" + std::string(256, 'a'), kTooLong},
      {"domain.com/" + std::string(256, 'a') + ":tag", kTooLong},
      {std::string(100, 'a') + "/" + std::string(100, 'b') + "/" + std::string(100, 'c'), kTooLong},
      // A bare image ID is not a repository name.
      {kIdentifier, kIdentifierAsName},
      {kHex64, kIdentifierAsName},
  };
}

class InvalidReferenceTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidReferenceTest, ParseRejectsWithReason) {
  const InvalidCase& c = GetParam();
  Result<Reference> parsed = Reference::Parse(c.input);
  ASSERT_FALSE(parsed) << "parsed as " << parsed->ToString();
  EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parsed.error().message(), c.message);
  Result<Reference> named = Reference::ParseNormalizedNamed(c.input);
  ASSERT_FALSE(named);
  EXPECT_EQ(named.error().message(), c.message);
}

INSTANTIATE_TEST_SUITE_P(Vectors, InvalidReferenceTest, ::testing::ValuesIn(InvalidCases()));

// ---------------------------------------------------------------------------------------------
// Reference::ParseNormalizedNamed: normalizes the name but keeps tag and digest as given.

struct NormalizedCase {
  std::string input;
  std::string canonical;
  std::string domain;
  std::string path;
  std::string familiar_name;
};

void PrintTo(const NormalizedCase& c, std::ostream* os) { *os << '"' << c.input << '"'; }

std::vector<NormalizedCase> NormalizedCases() {
  return {
      {"busybox", "docker.io/library/busybox", "docker.io", "library/busybox", "busybox"},
      {"busybox:latest@" + kSha256, "docker.io/library/busybox:latest@" + kSha256, "docker.io",
       "library/busybox", "busybox"},
      {"redis@" + kSha256, "docker.io/library/redis@" + kSha256, "docker.io", "library/redis",
       "redis"},
      {"fooo/bar", "docker.io/fooo/bar", "docker.io", "fooo/bar", "fooo/bar"},
      {"index.docker.io/fooo/bar", "docker.io/fooo/bar", "docker.io", "fooo/bar", "fooo/bar"},
      {"library/ubuntu", "docker.io/library/ubuntu", "docker.io", "library/ubuntu", "ubuntu"},
      {"docker.io/library/ubuntu", "docker.io/library/ubuntu", "docker.io", "library/ubuntu",
       "ubuntu"},
      {"docker.io/foo", "docker.io/library/foo", "docker.io", "library/foo", "foo"},
      {"library/foo/bar", "docker.io/library/foo/bar", "docker.io", "library/foo/bar",
       "library/foo/bar"},
      {"127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase",
       "127.0.0.1:8000/privatebase"},
      {"example.com/private/moonbase", "example.com/private/moonbase", "example.com",
       "private/moonbase", "example.com/private/moonbase"},
      {"xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo",
       "xn--n3h.com:18080/foo"},
      {"FOO/bar:v2", "FOO/bar:v2", "FOO", "bar", "FOO/bar"},
      {"[::1]:5000/foo:v1@" + kSha256, "[::1]:5000/foo:v1@" + kSha256, "[::1]:5000", "foo",
       "[::1]:5000/foo"},
      {"192.168.0.2:25000/debian", "192.168.0.2:25000/debian", "192.168.0.2:25000", "debian",
       "192.168.0.2:25000/debian"},
  };
}

class NormalizedNamedTest : public ::testing::TestWithParam<NormalizedCase> {};

TEST_P(NormalizedNamedTest, KeepsTagAndDigestAsGiven) {
  const NormalizedCase& c = GetParam();
  Result<Reference> named = Reference::ParseNormalizedNamed(c.input);
  ASSERT_TRUE(named) << named.error().ToString();
  EXPECT_EQ(named->ToString(), c.canonical);
  EXPECT_EQ(named->domain(), c.domain);
  EXPECT_EQ(named->path(), c.path);
  EXPECT_EQ(named->FamiliarName(), c.familiar_name);
  // The canonical form parses back to the same value.
  Result<Reference> again = Reference::ParseNormalizedNamed(named->ToString());
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*again, *named);
}

INSTANTIATE_TEST_SUITE_P(Vectors, NormalizedNamedTest, ::testing::ValuesIn(NormalizedCases()));

TEST(NormalizedNamedTest, TagAndDigestFamiliarString) {
  const std::string short_ref = "busybox:latest@" + kSha256;
  Result<Reference> named = Reference::ParseNormalizedNamed(short_ref);
  ASSERT_TRUE(named) << named.error().ToString();
  EXPECT_EQ(named->tag(), "latest");
  ASSERT_TRUE(named->digest());
  EXPECT_EQ(named->digest()->ToString(), kSha256);
  EXPECT_EQ(named->ToString(), "docker.io/library/" + short_ref);
  EXPECT_EQ(named->FamiliarString(), short_ref);
}

TEST(NormalizedNamedTest, NoDefaultTag) {
  Result<Reference> named = Reference::ParseNormalizedNamed("busybox");
  ASSERT_TRUE(named);
  EXPECT_FALSE(named->has_tag());
  EXPECT_EQ(named->tag(), "");
  EXPECT_FALSE(named->digest());
  EXPECT_EQ(named->FamiliarString(), "busybox");
}

// ---------------------------------------------------------------------------------------------
// ParseAnyReference: an image ID, a digest, or a name.

struct AnyCase {
  std::string input;
  bool is_digest;
  std::string expected;  // Digest::ToString() or Reference::ToString()
};

void PrintTo(const AnyCase& c, std::ostream* os) { *os << '"' << c.input << '"'; }

std::vector<AnyCase> AnyCases() {
  return {
      {"redis", false, "docker.io/library/redis"},
      {"redis:latest", false, "docker.io/library/redis:latest"},
      {"docker.io/library/redis:latest", false, "docker.io/library/redis:latest"},
      {"redis@" + kSha256, false, "docker.io/library/redis@" + kSha256},
      {"dmcgowan/myapp", false, "docker.io/dmcgowan/myapp"},
      {"docker.io/dmcgowan/myapp@" + kSha256, false, "docker.io/dmcgowan/myapp@" + kSha256},
      {kHex64, true, kSha256},
      {kSha256, true, kSha256},
      {kSha512, true, kSha512},
      {kHex64.substr(0, 63), false, "docker.io/library/" + kHex64.substr(0, 63)},
      {"dbcc1", false, "docker.io/library/dbcc1"},
      // Not a valid digest, so it is the repository "sha256" with tag "abc".
      {"sha256:abc", false, "docker.io/library/sha256:abc"},
  };
}

class AnyReferenceTest : public ::testing::TestWithParam<AnyCase> {};

TEST_P(AnyReferenceTest, Classifies) {
  const AnyCase& c = GetParam();
  Result<AnyReference> any = ParseAnyReference(c.input);
  ASSERT_TRUE(any) << any.error().ToString();
  if (c.is_digest) {
    ASSERT_TRUE(std::holds_alternative<Digest>(*any));
    EXPECT_EQ(std::get<Digest>(*any).ToString(), c.expected);
  } else {
    ASSERT_TRUE(std::holds_alternative<Reference>(*any));
    EXPECT_EQ(std::get<Reference>(*any).ToString(), c.expected);
  }
}

INSTANTIATE_TEST_SUITE_P(Vectors, AnyReferenceTest, ::testing::ValuesIn(AnyCases()));

TEST(AnyReferenceTest, RejectsInvalidName) {
  Result<AnyReference> any = ParseAnyReference("Busybox");
  ASSERT_FALSE(any);
  EXPECT_EQ(any.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(any.error().message(), kRemoteUppercase);
}

// ---------------------------------------------------------------------------------------------
// Builders, equality, formatting.

Reference MustParse(std::string_view text) {
  Result<Reference> parsed = Reference::Parse(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().ToString();
  return parsed.value();
}

Reference MustParseNamed(std::string_view text) {
  Result<Reference> parsed = Reference::ParseNormalizedNamed(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().ToString();
  return parsed.value();
}

Digest MustDigest(std::string_view text) {
  Result<Digest> digest = Digest::Parse(text);
  EXPECT_TRUE(digest) << text;
  return digest.value();
}

TEST(ReferenceBuildersTest, WithTagReplacesTag) {
  Result<Reference> tagged = MustParse("busybox").WithTag("1.36");
  ASSERT_TRUE(tagged) << tagged.error().ToString();
  EXPECT_EQ(tagged->ToString(), "docker.io/library/busybox:1.36");
  EXPECT_EQ(tagged->FamiliarString(), "busybox:1.36");
}

TEST(ReferenceBuildersTest, WithTagKeepsDigestAndCase) {
  Reference named = MustParseNamed("test.com:8000/foo@" + kSha256);
  Result<Reference> tagged = named.WithTag("TAG5");
  ASSERT_TRUE(tagged) << tagged.error().ToString();
  EXPECT_EQ(tagged->ToString(), "test.com:8000/foo:TAG5@" + kSha256);
}

TEST(ReferenceBuildersTest, WithTagRejectsInvalidTags) {
  Reference busybox = MustParse("busybox");
  for (std::string bad : {std::string("-foo"), std::string(""), std::string(".x"),
                          std::string("a:b"), std::string("a/b"), std::string(129, 'a')}) {
    Result<Reference> tagged = busybox.WithTag(bad);
    ASSERT_FALSE(tagged) << bad;
    EXPECT_EQ(tagged.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(tagged.error().message(), "invalid tag format");
  }
  EXPECT_TRUE(busybox.WithTag(std::string(128, 'a')));
}

TEST(ReferenceBuildersTest, WithDigestKeepsTag) {
  Reference tagged = MustParse("example.com/foo:v1");
  Reference pinned = tagged.WithDigest(MustDigest(kSha256));
  EXPECT_EQ(pinned.ToString(), "example.com/foo:v1@" + kSha256);
  EXPECT_EQ(pinned.tag(), "v1");
  // Replacing the digest.
  Reference repinned = pinned.WithDigest(MustDigest(kSha512));
  EXPECT_EQ(repinned.ToString(), "example.com/foo:v1@" + kSha512);
}

TEST(ReferenceBuildersTest, NameOnlyDropsTagAndDigest) {
  Reference full = MustParseNamed("localhost:5000/foo:v1@" + kSha256);
  Reference name = full.NameOnly();
  EXPECT_EQ(name.ToString(), "localhost:5000/foo");
  EXPECT_FALSE(name.has_tag());
  EXPECT_FALSE(name.digest());
  // The repo-digest form berth records after a pull.
  EXPECT_EQ(MustParse("busybox:1.36").NameOnly().WithDigest(MustDigest(kSha256)).ToString(),
            "docker.io/library/busybox@" + kSha256);
}

TEST(ReferenceEqualityTest, EqualAfterNormalization) {
  EXPECT_EQ(MustParse("busybox"), MustParse("docker.io/library/busybox:latest"));
  EXPECT_EQ(MustParse("index.docker.io/busybox"), MustParse("busybox:latest"));
  EXPECT_EQ(MustParse("busybox:1@" + kSha256), MustParse("busybox@" + kSha256));
}

TEST(ReferenceEqualityTest, DiffersInAnyComponent) {
  EXPECT_NE(MustParse("busybox"), MustParse("busybox:1"));
  EXPECT_NE(MustParse("busybox"), MustParse("example.com/busybox"));
  EXPECT_NE(MustParse("foo/busybox"), MustParse("bar/busybox"));
  EXPECT_NE(MustParse("busybox@" + kSha256), MustParse("busybox@" + kSha512));
  EXPECT_NE(MustParseNamed("busybox"), MustParseNamed("busybox:latest"));
}

TEST(ReferenceFormatTest, FmtUsesCanonicalString) {
  EXPECT_EQ(fmt::format("pull {}", MustParse("busybox")), "pull docker.io/library/busybox:latest");
}

TEST(ReferenceFormatTest, ErrorMessageDoesNotContainInput) {
  const std::string input = "Secret-Looking-Name";
  Result<Reference> parsed = Reference::Parse(input);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().message().find(input), std::string::npos);
  EXPECT_EQ(parsed.error().message(), kRemoteUppercase);
}

TEST(ReferenceFormatTest, DefaultsAreDocumentedConstants) {
  EXPECT_EQ(Reference::kDefaultDomain, "docker.io");
  EXPECT_EQ(Reference::kDefaultTag, "latest");
  EXPECT_EQ(Reference::kMaxPathLength, 255u);
}

// ---------------------------------------------------------------------------------------------
// JSON view for the CLI.

TEST(ReferenceJsonTest, TaggedReference) {
  nlohmann::json json = nlohmann::json::parse(ReferenceToJson(MustParse("busybox")));
  EXPECT_EQ(json.size(), 5u);
  EXPECT_EQ(json["domain"], "docker.io");
  EXPECT_EQ(json["path"], "library/busybox");
  EXPECT_EQ(json["tag"], "latest");
  EXPECT_TRUE(json["digest"].is_null());
  EXPECT_EQ(json["familiar"], "busybox:latest");
}

TEST(ReferenceJsonTest, DigestedReference) {
  nlohmann::json json =
      nlohmann::json::parse(ReferenceToJson(MustParse("localhost:5000/foo:v1@" + kSha256)));
  EXPECT_EQ(json["domain"], "localhost:5000");
  EXPECT_EQ(json["path"], "foo");
  EXPECT_TRUE(json["tag"].is_null());
  EXPECT_EQ(json["digest"], kSha256);
  EXPECT_EQ(json["familiar"], "localhost:5000/foo@" + kSha256);
}

TEST(ReferenceJsonTest, TagAndDigestBothPresent) {
  nlohmann::json json =
      nlohmann::json::parse(ReferenceToJson(MustParseNamed("busybox:1.36@" + kSha256)));
  EXPECT_EQ(json["tag"], "1.36");
  EXPECT_EQ(json["digest"], kSha256);
  EXPECT_EQ(json["familiar"], "busybox:1.36@" + kSha256);
}

TEST(ReferenceJsonTest, ExactCompactForm) {
  EXPECT_EQ(ReferenceToJson(MustParse("busybox")),
            R"({"digest":null,"domain":"docker.io","familiar":"busybox:latest",)"
            R"("path":"library/busybox","tag":"latest"})");
}

}  // namespace
}  // namespace berth
