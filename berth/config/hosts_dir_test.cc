#include "berth/config/hosts_dir.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

using ::berth::testing::FailsWith;

namespace berth::config {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;

using ::berth::testing::TempDir;
namespace fs = std::filesystem;

const fs::path kTestdata = BERTH_CONFIG_TESTDATA;

HostsFile Parse(std::string_view text, std::string_view host = "r.local",
                std::string_view source = "/etc/certs.d/r.local/hosts.toml") {
  Result<HostsFile> parsed = ParseHostsFile(text, source, host);
  EXPECT_OK(parsed);
  return parsed.value_or(HostsFile{});
}

// Parses `text` (source "hosts.toml"), expects kInvalidArgument, and returns the whole message.
std::string ParseError(std::string_view text) {
  Result<HostsFile> parsed = ParseHostsFile(text, "hosts.toml", "r.local");
  EXPECT_FALSE(parsed) << "parsed without error:\n" << text;
  if (parsed) return "";
  EXPECT_THAT(parsed, FailsWith(ErrorCode::kInvalidArgument));
  return parsed.error().ToString();
}

std::vector<std::string> MirrorUrls(const HostsFile& file) {
  std::vector<std::string> urls;
  for (const HostsFileEntry& mirror : file.mirrors) urls.push_back(mirror.url);
  return urls;
}

// Writes <dir>/<relative> (creating its directories) and returns its full path.
fs::path Write(const TempDir& dir, const fs::path& relative, std::string_view text) {
  fs::path file = dir.path() / relative;
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
  return file;
}

// ---------------------------------------------------------------------------------------------
// Parsing.

TEST(HostsFileTest, RealisticDockerHubFile) {
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(kTestdata / "certs.d", "docker.io");
  ASSERT_OK(loaded);
  ASSERT_TRUE(loaded->has_value());
  const HostsFile& file = **loaded;
  const fs::path directory = kTestdata / "certs.d" / "docker.io";

  EXPECT_EQ(file.source, directory / "hosts.toml");
  EXPECT_TRUE(file.server_explicit);
  EXPECT_EQ(file.server.url, "https://registry-1.docker.io");
  EXPECT_EQ(file.server.capabilities, kHostPull | kHostResolve);
  EXPECT_FALSE(file.server.Can(kHostPush));

  ASSERT_EQ(file.mirrors.size(), 2u);
  const HostsFileEntry& cache = file.mirrors[0];
  EXPECT_EQ(cache.url, "https://cache.cluster.local:5000");
  EXPECT_EQ(cache.capabilities, kHostPull | kHostResolve);
  EXPECT_THAT(cache.ca_files, ElementsAre((directory / "cache-ca.pem").string()));
  EXPECT_THAT(cache.client_pairs, ElementsAre(Pair((directory / "client.cert").string(),
                                                   (directory / "client.key").string())));
  EXPECT_EQ(cache.dial_timeout, std::chrono::seconds(3));
  EXPECT_FALSE(cache.skip_verify.has_value());
  EXPECT_FALSE(cache.override_path);
  EXPECT_THAT(cache.headers,
              ElementsAre(Pair("x-cache-tenant", ElementsAre("team-a")),
                          Pair("x-forwarded-for", ElementsAre("10.0.0.1", "10.0.0.2"))));

  const HostsFileEntry& gcr = file.mirrors[1];
  EXPECT_EQ(gcr.url, "https://mirror.gcr.io");
  EXPECT_EQ(gcr.capabilities, unsigned{kHostPull});
  EXPECT_TRUE(gcr.ca_files.empty());
  EXPECT_TRUE(gcr.headers.empty());
}

TEST(HostsFileTest, EmptyFileMeansDefaultServerWithAllCapabilities) {
  HostsFile file = Parse("", "r.local:5000");
  EXPECT_FALSE(file.server_explicit);
  EXPECT_EQ(file.server.url, "https://r.local:5000");
  EXPECT_EQ(file.server.capabilities, kHostAllCapabilities);
  EXPECT_TRUE(file.mirrors.empty());
  EXPECT_EQ(file.source, fs::path("/etc/certs.d/r.local/hosts.toml"));
}

TEST(HostsFileTest, DockerIoDefaultServerIsRegistryOne) {
  HostsFile file = Parse("skip_verify = false\n", "docker.io");
  EXPECT_FALSE(file.server_explicit);
  EXPECT_EQ(file.server.url, "https://registry-1.docker.io");
  EXPECT_EQ(file.server.skip_verify, false);  // set, and false: not the same as unset
}

TEST(HostsFileTest, MirrorsKeepFileOrderNotKeyOrder) {
  HostsFile file = Parse(R"(
[host."https://zeta.local"]
[host."http://alpha.local:5000"]
  capabilities = ["pull"]
[host."https://mid.local/cache"]
[host."https://beta.local"]
)");
  EXPECT_THAT(MirrorUrls(file), ElementsAre("https://zeta.local", "http://alpha.local:5000",
                                            "https://mid.local/cache", "https://beta.local"));
  EXPECT_EQ(file.mirrors[1].capabilities, unsigned{kHostPull});
  EXPECT_EQ(file.mirrors[0].capabilities, kHostAllCapabilities);
}

TEST(HostsFileTest, MirrorOrderIsWhereTheHostIsFirstMentioned) {
  // "https://b" first appears through its header sub-table, before "https://a", as containerd's
  // ordering (the first table header naming the host) has it. Dotted keys count as well.
  HostsFile file = Parse(R"(
host."https://d".capabilities = ["pull"]
[host."https://b".header]
  x-b = "1"
[host."https://a"]
  skip_verify = true
[host."https://b"]
  skip_verify = false
)");
  EXPECT_THAT(MirrorUrls(file), ElementsAre("https://d", "https://b", "https://a"));
  EXPECT_THAT(file.mirrors[1].headers, ElementsAre(Pair("x-b", ElementsAre("1"))));
  EXPECT_EQ(file.mirrors[1].skip_verify, false);
  EXPECT_EQ(file.mirrors[2].skip_verify, true);
}

TEST(HostsFileTest, UrlsWithoutSchemeGetHttps) {
  HostsFile file = Parse(R"(
server = "r.example.com:8443"
[host."mirror.local/v2/proxy"]
  override_path = true
)");
  EXPECT_TRUE(file.server_explicit);
  EXPECT_EQ(file.server.url, "https://r.example.com:8443");
  ASSERT_EQ(file.mirrors.size(), 1u);
  EXPECT_EQ(file.mirrors[0].url, "https://mirror.local/v2/proxy");
  EXPECT_TRUE(file.mirrors[0].override_path);
}

TEST(HostsFileTest, IpAddressUrls) {
  HostsFile file = Parse(R"(
[host."http://[::1]:5000"]
[host."http://127.0.0.1:5001/"]
)");
  EXPECT_THAT(MirrorUrls(file), ElementsAre("http://[::1]:5000", "http://127.0.0.1:5001/"));
}

TEST(HostsFileTest, TopLevelKeysApplyToTheServer) {
  HostsFile file = Parse(R"(
server = "https://r.local/api"
capabilities = ["resolve", "push"]
ca = ["/etc/ca/one.pem", "/etc/ca/two.pem"]
client = "/etc/client/combined.pem"
skip_verify = true
override_path = true
dial_timeout = "1m30s"
[header]
  x-single = "v"
  x-multi = ["a", "b"]
  x-empty = []
)");
  const HostsFileEntry& server = file.server;
  EXPECT_EQ(server.url, "https://r.local/api");
  EXPECT_EQ(server.capabilities, kHostResolve | kHostPush);
  EXPECT_THAT(server.ca_files, ElementsAre("/etc/ca/one.pem", "/etc/ca/two.pem"));
  EXPECT_THAT(server.client_pairs, ElementsAre(Pair("/etc/client/combined.pem", "")));
  EXPECT_EQ(server.skip_verify, true);
  EXPECT_TRUE(server.override_path);
  EXPECT_EQ(server.dial_timeout, std::chrono::seconds(90));
  EXPECT_THAT(server.headers,
              ElementsAre(Pair("x-empty", ElementsAre()), Pair("x-multi", ElementsAre("a", "b")),
                          Pair("x-single", ElementsAre("v"))));
  EXPECT_TRUE(file.mirrors.empty());
}

TEST(HostsFileTest, ClientShapes) {
  HostsFile file = Parse(R"(
[host."https://one"]
  client = "/c/combined.pem"
[host."https://many"]
  client = ["/c/a.pem", "/c/b.pem"]
[host."https://pairs"]
  client = [["/c/a.cert", "/c/a.key"], ["/c/b.cert", "/c/b.key"]]
[host."https://mixed"]
  client = ["/c/combined.pem", ["/c/x.cert", "/c/x.key"]]
[host."https://none"]
  client = []
)");
  ASSERT_EQ(file.mirrors.size(), 5u);
  EXPECT_THAT(file.mirrors[0].client_pairs, ElementsAre(Pair("/c/combined.pem", "")));
  EXPECT_THAT(file.mirrors[1].client_pairs,
              ElementsAre(Pair("/c/a.pem", ""), Pair("/c/b.pem", "")));
  EXPECT_THAT(file.mirrors[2].client_pairs,
              ElementsAre(Pair("/c/a.cert", "/c/a.key"), Pair("/c/b.cert", "/c/b.key")));
  EXPECT_THAT(file.mirrors[3].client_pairs,
              ElementsAre(Pair("/c/combined.pem", ""), Pair("/c/x.cert", "/c/x.key")));
  EXPECT_TRUE(file.mirrors[4].client_pairs.empty());
}

TEST(HostsFileTest, RelativePathsResolveAgainstTheFilesDirectory) {
  constexpr std::string_view kText = R"(
ca = "ca.pem"
[host."https://m"]
  ca = ["../shared/ca.pem", "/abs/ca.pem", "./sub/ca.pem"]
  client = [["certs/c.cert", "certs/c.key"]]
)";
  HostsFile file = Parse(kText, "r.local", "/etc/certs.d/r.local/hosts.toml");
  EXPECT_THAT(file.server.ca_files, ElementsAre("/etc/certs.d/r.local/ca.pem"));
  EXPECT_THAT(file.mirrors[0].ca_files, ElementsAre("/etc/certs.d/shared/ca.pem", "/abs/ca.pem",
                                                    "/etc/certs.d/r.local/sub/ca.pem"));
  EXPECT_THAT(file.mirrors[0].client_pairs, ElementsAre(Pair("/etc/certs.d/r.local/certs/c.cert",
                                                             "/etc/certs.d/r.local/certs/c.key")));

  // A source name without a directory leaves relative paths as written.
  HostsFile bare = Parse(kText, "r.local", "hosts.toml");
  EXPECT_THAT(bare.server.ca_files, ElementsAre("ca.pem"));
  EXPECT_THAT(bare.mirrors[0].ca_files,
              ElementsAre("../shared/ca.pem", "/abs/ca.pem", "./sub/ca.pem"));
}

TEST(HostsFileTest, CapabilitiesAreCaseInsensitiveAndEmptyMeansAll) {
  HostsFile file = Parse(R"(
capabilities = []
[host."https://m"]
  capabilities = ["PULL", "Resolve", "pull"]
)");
  EXPECT_EQ(file.server.capabilities, kHostAllCapabilities);
  EXPECT_EQ(file.mirrors[0].capabilities, kHostPull | kHostResolve);
  EXPECT_TRUE(file.mirrors[0].Can(kHostResolve));
  EXPECT_FALSE(file.mirrors[0].Can(kHostPush));
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(HostsFileErrorTest, UnknownTopLevelKeyIsLocatedWithSuggestion) {
  EXPECT_EQ(ParseError("server = \"https://r\"\n\nskip_verfy = true\n"),
            "hosts.toml:3:1: unknown key skip_verfy (did you mean skip_verify?)");
  // No near match: the known keys are listed.
  EXPECT_THAT(ParseError("mirrors = [\"https://m\"]\n"),
              AllOf(StartsWith("hosts.toml:1:1: unknown key mirrors (the keys of a hosts.toml "
                               "are server, capabilities, ca, client"),
                    HasSubstr("host")));
}

TEST(HostsFileErrorTest, UnknownKeyInHostTableNamesTheKeyPath) {
  std::string message = ParseError(R"(
[host."https://m.local"]
  capabilites = ["pull"]
)");
  EXPECT_EQ(message,
            "hosts.toml:3:3: unknown key host.\"https://m.local\".capabilites (did you mean "
            "capabilities?)");
  // server is a top-level key only.
  EXPECT_THAT(ParseError("[host.\"https://m\"]\nserver = \"https://x\"\n"),
              StartsWith("hosts.toml:2:1: unknown key host.\"https://m\".server (the keys of "
                         "host.\"https://m\" are capabilities, ca, client"));
}

TEST(HostsFileErrorTest, UnknownCapability) {
  EXPECT_EQ(ParseError("[host.\"https://m\"]\ncapabilities = [\"pull\", \"pul\"]\n"),
            "hosts.toml:2:25: host.\"https://m\".capabilities[1] must be one of \"pull\", "
            "\"resolve\", \"push\"; got \"pul\"");
  EXPECT_THAT(ParseError("capabilities = \"pull\"\n"),
              StartsWith("hosts.toml:1:1: capabilities must be an array of \"pull\", "
                         "\"resolve\" and \"push\", got a string"));
  EXPECT_THAT(ParseError("capabilities = [1]\n"),
              HasSubstr("capabilities[0] must be a string, got an integer"));
}

TEST(HostsFileErrorTest, MalformedUrls) {
  EXPECT_THAT(ParseError("server = \"ftp://r.local\"\n"),
              AllOf(StartsWith("hosts.toml:1:1: server must be a URL with an http:// or "
                               "https:// scheme"),
                    HasSubstr("got \"ftp://r.local\"")));
  EXPECT_THAT(ParseError("[host.\"https://\"]\n"),
              StartsWith("hosts.toml:1:7: host.\"https://\" must be a URL with a host"));
  EXPECT_THAT(ParseError("[host.\"https:///v2\"]\n"), HasSubstr("must be a URL with a host"));
  EXPECT_THAT(ParseError("[host.\"https://m:99999\"]\n"),
              HasSubstr("must be a URL with a port between 1 and 65535"));
  EXPECT_THAT(ParseError("[host.\"https://m:\"]\n"), HasSubstr("port between 1 and 65535"));
  EXPECT_THAT(ParseError("server = \"https://m/x?y=1\"\n"),
              HasSubstr("server must be a URL without a query or fragment"));
  EXPECT_THAT(ParseError("server = \"https://m /x\"\n"), HasSubstr("without spaces"));
  EXPECT_THAT(ParseError("server = 5\n"), HasSubstr("server must be a string, got an integer"));
}

TEST(HostsFileErrorTest, CredentialsInUrlAreRejectedWithoutEchoingThem) {
  std::string message = ParseError("server = \"https://ci:hunter2@r.local\"\n");
  EXPECT_THAT(message, HasSubstr("server must not carry credentials in the URL"));
  EXPECT_THAT(message, Not(HasSubstr("hunter2")));

  // In a mirror's table name too, where the key path would otherwise quote it.
  std::string mirror = ParseError("[host.\"https://ci:hunter2@m.local\"]\n");
  EXPECT_THAT(mirror, HasSubstr("hosts.toml:1:7: a host.\"…\" table must not carry credentials"));
  EXPECT_THAT(mirror, Not(HasSubstr("hunter2")));
  EXPECT_THAT(mirror, Not(HasSubstr("ci:")));
}

TEST(HostsFileErrorTest, ClientOfTheWrongShape) {
  EXPECT_EQ(ParseError("client = [[\"a.cert\", \"a.key\", \"extra\"]]\n"),
            "hosts.toml:1:11: client[0] must be a [\"cert\", \"key\"] pair of exactly 2 paths; "
            "got 3 elements");
  EXPECT_THAT(ParseError("client = [[\"a.cert\"]]\n"), HasSubstr("got 1 elements"));
  EXPECT_THAT(ParseError("client = [\"a.pem\", 7]\n"),
              HasSubstr("client[1] must be a combined PEM path string or a [\"cert\", \"key\"] "
                        "pair, got an integer"));
  EXPECT_THAT(ParseError("client = [[\"a.cert\", 1]]\n"),
              HasSubstr("client[0][1] must be a file path string, got an integer"));
  EXPECT_THAT(ParseError("client = true\n"),
              HasSubstr("client must be a combined PEM path string, an array of them, or an "
                        "array of [\"cert\", \"key\"] pairs, got a boolean"));
  EXPECT_THAT(ParseError("client = \"\"\n"), HasSubstr("client must not be empty"));
}

TEST(HostsFileErrorTest, WrongTypes) {
  EXPECT_EQ(ParseError("skip_verify = \"yes\"\n"),
            "hosts.toml:1:1: skip_verify must be a boolean (true or false), got a string");
  EXPECT_THAT(ParseError("override_path = 1\n"),
              HasSubstr("override_path must be a boolean (true or false), got an integer"));
  EXPECT_THAT(ParseError("ca = 5\n"),
              HasSubstr("ca must be a file path string or an array of them, got an integer"));
  EXPECT_THAT(ParseError("ca = [\"a.pem\", 5]\n"),
              HasSubstr("ca[1] must be a file path string, got an integer"));
  EXPECT_THAT(ParseError("host = \"https://m\"\n"),
              HasSubstr("host must be a table, got a string"));
  EXPECT_THAT(ParseError("host.\"https://m\" = 1\n"),
              HasSubstr("host.\"https://m\" must be a table, got an integer"));
  EXPECT_THAT(ParseError("header = \"x\"\n"), HasSubstr("header must be a table, got a string"));
  EXPECT_THAT(ParseError("dial_timeout = 5\n"),
              HasSubstr("dial_timeout must be a duration string like \"5s\", got an integer"));
  EXPECT_THAT(ParseError("dial_timeout = \"5 parsecs\"\n"),
              HasSubstr("dial_timeout has an invalid value"));
}

TEST(HostsFileErrorTest, HeaderValuesAreNeverEchoed) {
  std::string wrong_type = ParseError("[header]\nauthorization = [\"Bearer s3cr3t\", 1]\n");
  EXPECT_THAT(wrong_type, HasSubstr("header.authorization[1] must be a string, got an integer"));
  EXPECT_THAT(wrong_type, Not(HasSubstr("s3cr3t")));

  std::string injected = ParseError("[header]\nx-token = \"abc\\r\\nX-Evil: 1\"\n");
  EXPECT_THAT(injected, HasSubstr("header.x-token must not contain line breaks"));
  EXPECT_THAT(injected, Not(HasSubstr("abc")));

  EXPECT_THAT(ParseError("[header]\n\"bad name\" = \"v\"\n"),
              HasSubstr("header.\"bad name\" must be named by a valid HTTP header name"));
  EXPECT_THAT(ParseError("[header]\nx = 1.5\n"),
              HasSubstr("header.x must be a string or an array of strings, got a float"));
}

TEST(HostsFileErrorTest, TomlSyntaxAndDuplicateTables) {
  EXPECT_THAT(ParseError("server = \n"), StartsWith("hosts.toml:1:"));
  std::string duplicate = ParseError("[host.\"https://m\"]\n[host.\"https://m\"]\n");
  EXPECT_THAT(duplicate, StartsWith("hosts.toml:2:"));
}

TEST(HostsFileErrorTest, EmptyHostIsRejected) {
  Result<HostsFile> parsed = ParseHostsFile("", "hosts.toml", "");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Finding and loading a host's file.

TEST(HostsDirectoryTest, CandidatesFollowContainerd) {
  EXPECT_THAT(HostDirectoryCandidates("/certs.d", "docker.io"),
              ElementsAre(fs::path("/certs.d/docker.io"), fs::path("/certs.d/_default")));
  EXPECT_THAT(HostDirectoryCandidates("/certs.d", "127.0.0.1:5000"),
              ElementsAre(fs::path("/certs.d/127.0.0.1_5000_"), fs::path("/certs.d/127.0.0.1:5000"),
                          fs::path("/certs.d/_default")));
  EXPECT_THAT(HostDirectoryCandidates("/certs.d", "[::1]:5000"),
              ElementsAre(fs::path("/certs.d/[::1]_5000_"), fs::path("/certs.d/[::1]:5000"),
                          fs::path("/certs.d/_default")));
}

TEST(HostsDirectoryTest, HostDirectoryWinsOverDefault) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "r.local/hosts.toml", "[host.\"https://own-mirror\"]\n");
  Write(root, "_default/hosts.toml", "[host.\"https://default-mirror\"]\n");
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), "r.local");
  ASSERT_OK(loaded);
  ASSERT_TRUE(loaded->has_value());
  EXPECT_THAT(MirrorUrls(**loaded), ElementsAre("https://own-mirror"));
  EXPECT_EQ((*loaded)->source, root.path() / "r.local" / "hosts.toml");
}

TEST(HostsDirectoryTest, FallsBackToDefaultWithTheRequestedHostAsServer) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "_default/hosts.toml", "[host.\"https://default-mirror\"]\nca = \"ca.pem\"\n");
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), "other.local:5000");
  ASSERT_OK(loaded);
  ASSERT_TRUE(loaded->has_value());
  const HostsFile& file = **loaded;
  EXPECT_EQ(file.source, root.path() / "_default" / "hosts.toml");
  EXPECT_EQ(file.server.url, "https://other.local:5000");
  ASSERT_EQ(file.mirrors.size(), 1u);
  EXPECT_THAT(file.mirrors[0].ca_files,
              ElementsAre((root.path() / "_default" / "ca.pem").string()));

  // The realistic tree in testdata too: no directory for quay.io, so _default applies.
  Result<std::optional<HostsFile>> quay = LoadHostsFile(kTestdata / "certs.d", "quay.io");
  ASSERT_OK(quay);
  ASSERT_TRUE(quay->has_value());
  EXPECT_THAT(MirrorUrls(**quay), ElementsAre("http://127.0.0.1:5001"));
  EXPECT_EQ((*quay)->mirrors[0].skip_verify, true);
  EXPECT_EQ((*quay)->server.url, "https://quay.io");
}

TEST(HostsDirectoryTest, PortDirectorySpellings) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "127.0.0.1:5000/hosts.toml", "server = \"http://127.0.0.1:5000\"\n");
  Result<std::optional<HostsFile>> colon = LoadHostsFile(root.path(), "127.0.0.1:5000");
  ASSERT_OK(colon);
  ASSERT_TRUE(colon->has_value());
  EXPECT_EQ((*colon)->source, root.path() / "127.0.0.1:5000" / "hosts.toml");

  // The "_port_" spelling is tried first.
  Write(root, "127.0.0.1_5000_/hosts.toml", "server = \"https://127.0.0.1:5000\"\n");
  Result<std::optional<HostsFile>> underscore = LoadHostsFile(root.path(), "127.0.0.1:5000");
  ASSERT_OK(underscore);
  ASSERT_TRUE(underscore->has_value());
  EXPECT_EQ((*underscore)->source, root.path() / "127.0.0.1_5000_" / "hosts.toml");
  EXPECT_EQ((*underscore)->server.url, "https://127.0.0.1:5000");
}

TEST(HostsDirectoryTest, NothingConfiguredIsNullopt) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  // config_path missing altogether.
  Result<std::optional<HostsFile>> missing = LoadHostsFile(root.path() / "absent", "r.local");
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());

  // config_path exists, but has neither the host's directory nor _default.
  Write(root, "elsewhere.local/hosts.toml", "[host.\"https://m\"]\n");
  Result<std::optional<HostsFile>> none = LoadHostsFile(root.path(), "r.local");
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
}

TEST(HostsDirectoryTest, HostDirectoryWithoutHostsTomlIsNulloptLikeContainerd) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "r.local/ca.crt", "not parsed here");
  Write(root, "_default/hosts.toml", "[host.\"https://default-mirror\"]\n");
  Write(root, "empty.local/hosts.toml", "");

  // The host's directory exists, so _default is not consulted.
  Result<std::optional<fs::path>> directory = FindHostDirectory(root.path(), "r.local");
  ASSERT_OK(directory);
  EXPECT_EQ(*directory, root.path() / "r.local");
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), "r.local");
  ASSERT_OK(loaded);
  EXPECT_FALSE(loaded->has_value());

  Result<std::optional<HostsFile>> empty = LoadHostsFile(root.path(), "empty.local");
  ASSERT_OK(empty);
  EXPECT_FALSE(empty->has_value());
}

TEST(HostsDirectoryTest, HostNamesThatCouldEscapeAreRejected) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "_default/hosts.toml", "");
  for (std::string_view host : {"", ".", "..", "../etc", "a/b", "r.local "}) {
    Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), host);
    ASSERT_FALSE(loaded) << "accepted host \"" << host << "\"";
    EXPECT_EQ(loaded.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST(HostsDirectoryTest, NonDirectoriesAreErrors) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  Write(root, "r.local", "a file where a directory belongs");
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), "r.local");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(loaded.error().ToString(), HasSubstr("is not a directory"));

  fs::path file = Write(root, "config_path_file", "");
  Result<std::optional<HostsFile>> file_root = LoadHostsFile(file, "r.local");
  ASSERT_FALSE(file_root);
  EXPECT_THAT(file_root.error().ToString(), HasSubstr("config_path"));
}

TEST(HostsDirectoryTest, ParseErrorsNameTheFile) {
  ASSERT_OK_AND_ASSIGN(TempDir root, TempDir::Create("hosts-dir"));
  fs::path file =
      Write(root, "r.local/hosts.toml", "\n[host.\"https://m\"]\n  capabilities = [\"pul\"]\n");
  Result<std::optional<HostsFile>> loaded = LoadHostsFile(root.path(), "r.local");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(
      loaded.error().ToString(),
      StartsWith(fmt::format("{}:3:19: host.\"https://m\".capabilities[0]", file.string())));
}

TEST(HostsDirectoryTest, ConfigPathListUsesFirstRootWithADirectory) {
  ASSERT_OK_AND_ASSIGN(TempDir first, TempDir::Create("hosts-dir"));
  ASSERT_OK_AND_ASSIGN(TempDir second, TempDir::Create("hosts-dir"));
  Write(first, "_default/hosts.toml", "[host.\"https://first-default\"]\n");
  Write(second, "r.local/hosts.toml", "[host.\"https://second-exact\"]\n");
  Write(second, "only.second/hosts.toml", "[host.\"https://only-second\"]\n");

  std::string list = fmt::format("{}::{}", first.path().string(), second.path().string());
  // The first root's _default wins over the second root's exact directory, as in containerd.
  Result<std::optional<HostsFile>> loaded = LoadHostsFileFromConfigPath(list, "r.local");
  ASSERT_OK(loaded);
  ASSERT_TRUE(loaded->has_value());
  EXPECT_THAT(MirrorUrls(**loaded), ElementsAre("https://first-default"));

  // A missing first root is skipped.
  std::string with_missing =
      fmt::format("{}:{}", (first.path() / "absent").string(), second.path().string());
  Result<std::optional<HostsFile>> second_only =
      LoadHostsFileFromConfigPath(with_missing, "only.second");
  ASSERT_OK(second_only);
  ASSERT_TRUE(second_only->has_value());
  EXPECT_THAT(MirrorUrls(**second_only), ElementsAre("https://only-second"));

  Result<std::optional<HostsFile>> empty = LoadHostsFileFromConfigPath("", "r.local");
  ASSERT_OK(empty);
  EXPECT_FALSE(empty->has_value());
}

}  // namespace
}  // namespace berth::config
