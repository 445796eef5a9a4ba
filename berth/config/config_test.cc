#include "berth/config/config.h"

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

using ::berth::testing::TempDir;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::filesystem::path kTestdata = BERTH_CONFIG_TESTDATA;

Config Parse(std::string_view text) {
  Result<Config> config = ParseConfig(text, "cfg.toml");
  EXPECT_OK(config);
  return config.value_or(Config{});
}

// Parses `text`, expects kInvalidArgument, and returns the whole message.
std::string ParseError(std::string_view text) {
  Result<Config> config = ParseConfig(text, "cfg.toml");
  EXPECT_FALSE(config) << "parsed without error:\n" << text;
  if (config) return "";
  EXPECT_THAT(config, FailsWith(ErrorCode::kInvalidArgument));
  return config.error().ToString();
}

Config Load(const std::string& name) {
  Result<Config> config = LoadConfigFile(kTestdata / name);
  EXPECT_OK(config);
  return config.value_or(Config{});
}

// ----------------------------------------------------------------------------------------------
// Defaults.

TEST(ConfigDefaultsTest, DefaultConfigHasDocumentedValues) {
  Config config = DefaultConfig();
  EXPECT_EQ(config.root, "/var/lib/berth");
  EXPECT_EQ(config.state, "/run/berth");
  EXPECT_EQ(config.address, "unix:///run/berth/berth.sock");
  EXPECT_EQ(config.upstream_image_endpoint, "");
  EXPECT_EQ(config.snapshotter_address, std::nullopt);
  EXPECT_EQ(SnapshotterAddress(config), "unix:///run/berth/snapshotter.sock");
  EXPECT_EQ(config.log_level, log::Level::kInfo);
  EXPECT_EQ(config.pull.max_concurrent_downloads, 3);
  EXPECT_EQ(config.pull.snapshotter, SnapshotterKind::kOverlayfs);
  EXPECT_EQ(config.pull.image_pull_progress_timeout, minutes(5));
  EXPECT_EQ(config.pull.min_download_speed, 0u);
  EXPECT_EQ(config.pull.min_download_speed_window, seconds(30));
  EXPECT_EQ(config.pull.max_concurrent_downloads_total, 16);
  EXPECT_EQ(config.pull.max_concurrent_downloads_per_registry, 8);
  EXPECT_EQ(config.pull.sync, Durability::kLayer);
  EXPECT_EQ(config.pull.max_layer_size, 64ull << 30);
  EXPECT_FALSE(config.pull.discard_unpacked_layers);
  EXPECT_TRUE(config.pull.pinned_images.empty());
  EXPECT_TRUE(config.registry.config_path.empty());
  EXPECT_TRUE(config.registry.mirrors.empty());
  EXPECT_TRUE(config.registry.configs.empty());
  EXPECT_TRUE(config.registry.headers.empty());
  EXPECT_EQ(config.format, ConfigFormat::kBerth);
  EXPECT_EQ(HostConfig{}.fallback, Fallback::kAlways);
}

TEST(ConfigDefaultsTest, EmptyAndCommentOnlyFilesGiveDefaults) {
  EXPECT_EQ(Parse(""), DefaultConfig());
  EXPECT_EQ(Parse("# nothing here\n\n"), DefaultConfig());
  EXPECT_EQ(Parse("[pull]\n[registry]\n"), DefaultConfig());
}

// The example shipped for operators loads, and says what the defaults are where it repeats them.
TEST(ConfigDefaultsTest, ContribExampleLoadsWithTheDefaultsItShows) {
  Result<Config> example = LoadConfigFile(BERTH_EXAMPLE_CONFIG);
  ASSERT_OK(example);
  const PullConfig defaults = DefaultConfig().pull;
  EXPECT_EQ(example->pull.sync, defaults.sync);
  EXPECT_EQ(example->pull.layer_threads, defaults.layer_threads);
  EXPECT_EQ(example->pull.max_concurrent_downloads_total, defaults.max_concurrent_downloads_total);
  EXPECT_EQ(example->pull.resume_window, defaults.resume_window);
  EXPECT_EQ(SnapshotterAddress(*example), SnapshotterAddress(DefaultConfig()));
}

TEST(ConfigDefaultsTest, EnumNamesMatchTheFileSpelling) {
  EXPECT_EQ(FallbackName(Fallback::kNever), "never");
  EXPECT_EQ(FallbackName(Fallback::kAlways), "always");
  EXPECT_EQ(DurabilityName(Durability::kNone), "none");
  EXPECT_EQ(DurabilityName(Durability::kFile), "file");
  EXPECT_EQ(SnapshotterName(SnapshotterKind::kNative), "native");
  EXPECT_EQ(SnapshotterName(SnapshotterKind::kErofs), "erofs");
  EXPECT_EQ(ConfigFormatName(ConfigFormat::kContainerd), "containerd");
}

// ----------------------------------------------------------------------------------------------
// containerd's registry section.

TEST(ContainerdConfigTest, FullContainerdConfigLoadsOnlyTheRegistrySection) {
  Config config = Load("containerd_full.toml");
  EXPECT_EQ(config.format, ConfigFormat::kContainerd);
  // containerd's own root/state, [grpc] address, [debug] level and the CRI plugin's pull
  // settings are not berth's.
  EXPECT_EQ(config.root, "/var/lib/berth");
  EXPECT_EQ(config.state, "/run/berth");
  EXPECT_EQ(config.address, "unix:///run/berth/berth.sock");
  EXPECT_EQ(config.pull, PullConfig{});

  const RegistryConfig& registry = config.registry;
  EXPECT_EQ(registry.config_path, "");
  ASSERT_EQ(registry.mirrors.size(), 2u);
  EXPECT_THAT(registry.mirrors.at("docker.io").endpoints,
              ElementsAre("https://mirror.corp.example", "https://registry-1.docker.io"));
  EXPECT_THAT(registry.mirrors.at("10.0.0.7:5000").endpoints, ElementsAre("http://10.0.0.7:5000"));

  ASSERT_EQ(registry.configs.size(), 3u);
  const HostConfig& corp = registry.configs.at("registry.corp.example:5000");
  EXPECT_EQ(corp.auth.username, "ci-bot");
  EXPECT_EQ(corp.auth.password.reveal(), "s3cr3t-from-testdata");
  EXPECT_TRUE(corp.auth.auth.empty());
  EXPECT_EQ(corp.tls.ca_file, "/etc/containerd/certs/corp-ca.pem");
  EXPECT_EQ(corp.tls.cert_file, "certs/client.pem");  // relative paths kept as written
  EXPECT_EQ(corp.tls.key_file, "certs/client-key.pem");
  EXPECT_FALSE(corp.tls.insecure_skip_verify);
  EXPECT_EQ(corp.fallback, Fallback::kAlways);

  EXPECT_TRUE(registry.configs.at("10.0.0.7:5000").tls.insecure_skip_verify);
  const HostConfig& gcr = registry.configs.at("gcr.io");
  EXPECT_EQ(gcr.auth.auth.reveal(), "X2pzb25fa2V5OnNlY3JldA==");
  EXPECT_EQ(gcr.auth.identity_token.reveal(), "refresh-token-from-testdata");

  ASSERT_EQ(registry.headers.size(), 1u);
  EXPECT_THAT(registry.headers.at("X-Meta-Node"), ElementsAre("node-1"));
}

TEST(ContainerdConfigTest, Version1PluginsCriSpelling) {
  Config config = Load("containerd_v1.toml");
  EXPECT_EQ(config.format, ConfigFormat::kContainerd);
  EXPECT_EQ(config.root, "/var/lib/berth");
  EXPECT_THAT(config.registry.mirrors.at("docker.io").endpoints,
              ElementsAre("https://mirror.v1.example"));
  EXPECT_EQ(config.registry.configs.at("quay.io").auth.username, "robot");
  EXPECT_EQ(config.registry.configs.at("quay.io").auth.password.reveal(), "v1-secret");
}

TEST(ContainerdConfigTest, Version3ImagesPluginSpelling) {
  Config config = Parse(R"(
version = 3
[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
)");
  EXPECT_EQ(config.registry.config_path, "/etc/containerd/certs.d:/etc/docker/certs.d");
}

TEST(ContainerdConfigTest, ConfigPathWithAuthIsAllowed) {
  Config config = Parse(R"(
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "certs.d"
[plugins."io.containerd.grpc.v1.cri".registry.configs."r.local".auth]
  username = "u"
)");
  EXPECT_EQ(config.registry.config_path, "certs.d");
  EXPECT_EQ(config.registry.configs.at("r.local").auth.username, "u");
}

TEST(ContainerdConfigTest, DeprecatedAuthsMoveToConfigsByHost) {
  Config config = Parse(R"(
version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."gcr.io".auth]
  username = "replaced"
[plugins."io.containerd.grpc.v1.cri".registry.configs."gcr.io".tls]
  ca_file = "/kept/ca.pem"
[plugins."io.containerd.grpc.v1.cri".registry.auths."https://gcr.io"]
  username = "_json_key"
  password = "from-auths"
[plugins."io.containerd.grpc.v1.cri".registry.auths."quay.io"]
  identitytoken = "tok"
)");
  const HostConfig& gcr = config.registry.configs.at("gcr.io");
  EXPECT_EQ(gcr.auth.username, "_json_key");
  EXPECT_EQ(gcr.auth.password.reveal(), "from-auths");
  EXPECT_EQ(gcr.tls.ca_file, "/kept/ca.pem");
  EXPECT_EQ(config.registry.configs.at("quay.io").auth.identity_token.reveal(), "tok");
}

TEST(ContainerdConfigTest, OtherPluginsAndTopLevelKeysAreIgnored) {
  Config config = Parse(R"(
version = 2
some_future_key = { nested = [1, 2, 3] }
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pause"
  not_a_real_cri_key = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = 42
[plugins."io.example.v1.anything"]
  registry = "not a table, and not ours"
)");
  EXPECT_EQ(config.format, ConfigFormat::kContainerd);
  EXPECT_EQ(config.registry, RegistryConfig{});
}

TEST(ContainerdConfigTest, VersionKeyAloneMarksContainerdFormat) {
  Config config = Parse("version = 2\nroot = \"/var/lib/containerd\"\n[grpc]\naddress = \"x\"\n");
  EXPECT_EQ(config.format, ConfigFormat::kContainerd);
  EXPECT_EQ(config.root, "/var/lib/berth");
}

TEST(ContainerdConfigTest, UnknownKeyInRegistrySectionIsNamedWithSuggestion) {
  std::string message = ParseError(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = ""
  mirror = {}
)");
  EXPECT_EQ(message,
            "cfg.toml:4:3: unknown key plugins.\"io.containerd.grpc.v1.cri\".registry.mirror "
            "(did you mean mirrors?)");
}

TEST(ContainerdConfigTest, FallbackIsRejectedInContainerdSectionWithHint) {
  std::string message = ParseError(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."r.local"]
  fallback = "never"
)");
  EXPECT_THAT(message, StartsWith("cfg.toml:3:3: plugins.\"io.containerd.grpc.v1.cri\".registry."
                                  "configs.\"r.local\".fallback is a berth setting"));
  EXPECT_THAT(message, HasSubstr("[registry.configs.\"r.local\"]"));
}

TEST(ContainerdConfigTest, ConfigPathWithMirrorsIsRejectedLikeContainerd) {
  std::string message = ParseError(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["https://m.example"]
)");
  EXPECT_THAT(message, StartsWith("cfg.toml:4:"));
  EXPECT_THAT(message, HasSubstr("registry.mirrors.\"docker.io\" cannot be set together with "
                                 "plugins.\"io.containerd.grpc.v1.cri\".registry.config_path "
                                 "(at cfg.toml:3:3)"));
}

TEST(ContainerdConfigTest, ConfigPathWithTlsIsRejectedLikeContainerd) {
  std::string message = ParseError(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.grpc.v1.cri".registry.configs."r.local".tls]
  insecure_skip_verify = true
)");
  EXPECT_THAT(message, StartsWith("cfg.toml:4:"));
  EXPECT_THAT(message, HasSubstr("configs.\"r.local\".tls cannot be set together with"));
}

// ----------------------------------------------------------------------------------------------
// berth's own form.

TEST(BerthConfigTest, EveryKeyOfTheBerthForm) {
  Config config = Load("berth.toml");
  EXPECT_EQ(config.format, ConfigFormat::kBerth);
  EXPECT_EQ(config.root, "/srv/berth");
  EXPECT_EQ(config.state, "/run/berth-test");
  EXPECT_EQ(config.address, "unix:///run/berth-test/berth.sock");
  EXPECT_EQ(config.upstream_image_endpoint, "unix:///run/containerd/containerd.sock");
  EXPECT_EQ(config.snapshotter_address, "unix:///run/berth-test/snapshotter.sock");
  EXPECT_EQ(config.metrics_address, "127.0.0.1:1338");
  EXPECT_EQ(config.log_level, log::Level::kDebug);

  EXPECT_EQ(config.pull.max_concurrent_downloads, 8);
  EXPECT_EQ(config.pull.snapshotter, SnapshotterKind::kNative);
  EXPECT_EQ(config.pull.image_pull_progress_timeout, seconds(90));
  EXPECT_EQ(config.pull.sync, Durability::kFile);
  EXPECT_EQ(config.pull.max_layer_size, 10ull << 30);
  EXPECT_TRUE(config.pull.discard_unpacked_layers);
  EXPECT_THAT(config.pull.pinned_images,
              ElementsAre("registry.k8s.io/pause:3.9", "docker.io/library/busybox:1.36"));

  EXPECT_EQ(config.peers.listen, "0.0.0.0:5050");
  EXPECT_EQ(config.peers.max_concurrent_uploads, 4);
  EXPECT_EQ(config.peers.max_upload_rate, 100ull << 20);
  EXPECT_EQ(config.peers.tls_cert, "/etc/berth/peers/server.pem");
  EXPECT_EQ(config.peers.tls_key, "/etc/berth/peers/server-key.pem");
  EXPECT_EQ(config.peers.tls_client_ca, "/etc/berth/peers/cluster-ca.pem");
  EXPECT_FALSE(config.peers.fetch_missing);

  EXPECT_THAT(config.registry.mirrors.at("docker.io").endpoints,
              ElementsAre("https://mirror.local:5000/v2-proxy", "https://registry-1.docker.io"));
  EXPECT_THAT(config.registry.mirrors.at("*").endpoints, ElementsAre("https://catch-all.local"));
  const HostConfig& host = config.registry.configs.at("r.local");
  EXPECT_EQ(host.fallback, Fallback::kNever);
  EXPECT_EQ(host.auth.username, "deploy");
  EXPECT_EQ(host.auth.password.reveal(), "berth-testdata-password");
  EXPECT_EQ(host.auth.identity_token.reveal(), "berth-testdata-token");
  EXPECT_EQ(host.tls.ca_file, "ca.pem");
  EXPECT_EQ(host.tls.cert_file, "/etc/berth/certs/client.pem");
  EXPECT_EQ(host.tls.key_file, "/etc/berth/certs/client.key");
  EXPECT_THAT(config.registry.headers.at("User-Agent"), ElementsAre("berth-test/1.0"));
}

TEST(BerthConfigTest, PeersDefaultToNoEndpointAndCheckTheirValues) {
  const PeersConfig defaults = DefaultConfig().peers;
  EXPECT_EQ(defaults.listen, "");
  EXPECT_EQ(defaults.max_concurrent_uploads, 8);
  EXPECT_EQ(defaults.max_upload_rate, 0u);
  EXPECT_TRUE(defaults.fetch_missing);
  EXPECT_EQ(Parse("[peers]\nmax_upload_rate = 1048576\n").peers.max_upload_rate, 1u << 20);
  EXPECT_EQ(Parse("[peers]\nlisten = \"[::]:5050\"\n").peers.listen, "[::]:5050");
  EXPECT_THAT(ParseError("[peers]\nlisten = \"5050\"\n"),
              HasSubstr("peers.listen must be host:port"));
  EXPECT_THAT(ParseError("[peers]\nmax_concurrent_uploads = 0\n"),
              HasSubstr("peers.max_concurrent_uploads must be between 1 and 1024; got 0"));
  EXPECT_THAT(ParseError("[peers]\nmax_upload_rate = \"fast\"\n"),
              HasSubstr("peers.max_upload_rate has an invalid value"));
  EXPECT_THAT(ParseError("[peers]\ntls_cert = \"c.pem\"\n"),
              HasSubstr("sets tls_cert without tls_key"));
  EXPECT_THAT(ParseError("[peers]\ntls_client_ca = \"ca.pem\"\n"),
              HasSubstr("sets tls_client_ca without tls_cert"));
  EXPECT_THAT(ParseError("[peers]\nlisten_address = \"\"\n"),
              HasSubstr("unknown key peers.listen_address"));
}

TEST(BerthConfigTest, FallbackDefaultsToAlwaysAndRejectsOtherWords) {
  Config config = Parse("[registry.configs.\"r.local\".tls]\ninsecure_skip_verify = true\n");
  EXPECT_EQ(config.registry.configs.at("r.local").fallback, Fallback::kAlways);
  EXPECT_EQ(ParseError("[registry.configs.\"r.local\"]\nfallback = \"sometimes\"\n"),
            "cfg.toml:2:1: registry.configs.\"r.local\".fallback must be one of \"always\", "
            "\"never\"; got \"sometimes\"");
}

TEST(BerthConfigTest, LogLevelsAreParsed) {
  EXPECT_EQ(Parse("log_level = \"trace\"").log_level, log::Level::kTrace);
  EXPECT_EQ(Parse("log_level = \"warn\"").log_level, log::Level::kWarn);
  EXPECT_EQ(Parse("log_level = \"error\"").log_level, log::Level::kError);
  EXPECT_EQ(Parse("log_level = \"off\"").log_level, log::Level::kOff);
  EXPECT_THAT(ParseError("log_level = \"verbose\""),
              HasSubstr("cfg.toml:1:1: log_level must be one of \"trace\", \"debug\", \"info\", "
                        "\"warn\", \"error\", \"off\"; got \"verbose\""));
}

TEST(BerthConfigTest, RootAndStateMustBeAbsolute) {
  EXPECT_EQ(ParseError("root = \"var/lib/berth\""),
            "cfg.toml:1:1: root must be an absolute path; got \"var/lib/berth\"");
  EXPECT_THAT(ParseError("\n\nstate = \"\""),
              StartsWith("cfg.toml:3:1: state must be an absolute"));
  EXPECT_THAT(ParseError("root = 7"), HasSubstr("root must be a string, got an integer"));
}

TEST(BerthConfigTest, AddressMustBeAUnixSocketUrl) {
  EXPECT_EQ(Parse("address = \"unix:///tmp/b.sock\"").address, "unix:///tmp/b.sock");
  for (std::string_view bad :
       {"/run/berth.sock", "unix://", "unix://relative.sock", "tcp://127.0.0.1:1234"}) {
    EXPECT_THAT(ParseError(fmt::format("address = \"{}\"", bad)),
                HasSubstr("address must be unix:// followed by an absolute socket path"))
        << bad;
  }
}

// Front mode's upstream: empty (standalone) or a unix socket URL like `address`.
TEST(BerthConfigTest, UpstreamImageEndpointIsEmptyOrAUnixSocketUrl) {
  EXPECT_EQ(Parse("upstream_image_endpoint = \"\"").upstream_image_endpoint, "");
  EXPECT_EQ(Parse("upstream_image_endpoint = \"unix:///run/containerd/containerd.sock\"")
                .upstream_image_endpoint,
            "unix:///run/containerd/containerd.sock");
  for (std::string_view bad :
       {"/run/containerd/containerd.sock", "unix://relative.sock", "tcp://127.0.0.1:1234"}) {
    EXPECT_THAT(ParseError(fmt::format("upstream_image_endpoint = \"{}\"", bad)),
                HasSubstr("upstream_image_endpoint must be unix:// followed by an absolute"))
        << bad;
  }
  EXPECT_THAT(ParseError("upstream_image_endpoint = 1"),
              HasSubstr("upstream_image_endpoint must be a string"));
  EXPECT_EQ(ParseError("upstream_image_endpont = \"\""),
            "cfg.toml:1:1: unknown key upstream_image_endpont (did you mean "
            "upstream_image_endpoint?)");
}

TEST(BerthConfigTest, SnapshotterAddressIsAUnixSocketUrlOrEmpty) {
  EXPECT_EQ(Parse("snapshotter_address = \"unix:///tmp/s.sock\"").snapshotter_address,
            "unix:///tmp/s.sock");
  EXPECT_EQ(Parse("snapshotter_address = \"\"").snapshotter_address, "");  // serve none
  EXPECT_EQ(SnapshotterAddress(Parse("snapshotter_address = \"\"")), "");
  // Not set: beside the CRI socket, wherever that is.
  EXPECT_EQ(SnapshotterAddress(Parse("address = \"unix:///tmp/t1/b.sock\"")),
            "unix:///tmp/t1/snapshotter.sock");
  EXPECT_EQ(SnapshotterAddress(Parse(
                "address = \"unix:///tmp/t1/b.sock\"\nsnapshotter_address = \"unix:///s.sock\"")),
            "unix:///s.sock");
  for (std::string_view bad :
       {"/run/s.sock", "unix://", "unix://relative.sock", "tcp://1.2.3.4:5"}) {
    EXPECT_THAT(
        ParseError(fmt::format("snapshotter_address = \"{}\"", bad)),
        HasSubstr("snapshotter_address must be unix:// followed by an absolute socket path"))
        << bad;
  }
  EXPECT_THAT(ParseError("snapshotter_address = 1"),
              HasSubstr("snapshotter_address must be a string"));
  EXPECT_EQ(ParseError("snapshoter_address = \"\""),
            "cfg.toml:1:1: unknown key snapshoter_address (did you mean snapshotter_address?)");
}

TEST(BerthConfigTest, MetricsAddressIsHostPortOrEmpty) {
  EXPECT_EQ(DefaultConfig().metrics_address, "");  // off by default
  EXPECT_EQ(Parse("metrics_address = \"\"").metrics_address, "");
  for (std::string_view good : {"127.0.0.1:1338", "[::1]:1338", "localhost:0", ":9100"}) {
    EXPECT_EQ(Parse(fmt::format("metrics_address = \"{}\"", good)).metrics_address, good);
  }
  for (std::string_view bad :
       {"127.0.0.1", "host:", "host:65536", "::1:1338", "host:12a", "http://127.0.0.1:1338"}) {
    EXPECT_THAT(ParseError(fmt::format("metrics_address = \"{}\"", bad)),
                HasSubstr("metrics_address must be host:port"))
        << bad;
  }
  EXPECT_THAT(ParseError("metrics_address = 1338"), HasSubstr("metrics_address must be a string"));
}

TEST(BerthConfigTest, UnknownTopLevelKeyIsRejectedWithSuggestion) {
  EXPECT_EQ(ParseError("roots = \"/x\""), "cfg.toml:1:1: unknown key roots (did you mean root?)");
  EXPECT_EQ(ParseError("\n[registy]\n"),
            "cfg.toml:2:2: unknown key registy (did you mean registry?)");
}

TEST(BerthConfigTest, UnknownKeyWithoutNearMatchListsTheKnownKeys) {
  EXPECT_EQ(ParseError("[registry.mirrors.\"docker.io\"]\nurls = [\"https://m\"]\n"),
            "cfg.toml:2:1: unknown key registry.mirrors.\"docker.io\".urls (the keys of "
            "registry.mirrors.\"docker.io\" are endpoint)");
  EXPECT_THAT(ParseError("[pull]\nparallelism = 4\n"),
              AllOf(StartsWith("cfg.toml:2:1: unknown key pull.parallelism (the keys of [pull] "
                               "are max_concurrent_downloads, snapshotter,"),
                    HasSubstr("pinned_images)")));
}

TEST(BerthConfigTest, UnknownKeyInAuthListsSecretKeyNamesUnredacted) {
  // The key list names secret fields; the message must survive the Error's redaction intact.
  EXPECT_EQ(ParseError("[registry.configs.\"r\".auth]\ntoken_file = \"/t\"\n"),
            "cfg.toml:2:1: unknown key registry.configs.r.auth.token_file (the keys of "
            "registry.configs.r.auth are username, password, auth, identitytoken)");
}

TEST(BerthConfigTest, TyposInNestedTablesAreNamed) {
  EXPECT_EQ(ParseError("[pull]\nmax_concurent_downloads = 4\n"),
            "cfg.toml:2:1: unknown key pull.max_concurent_downloads (did you mean "
            "max_concurrent_downloads?)");
  EXPECT_EQ(ParseError("[registry.configs.\"r.local\".tls]\nca_fil = \"/ca.pem\"\n"),
            "cfg.toml:2:1: unknown key registry.configs.\"r.local\".tls.ca_fil (did you mean "
            "ca_file?)");
  EXPECT_EQ(ParseError("[registry.configs.\"r.local\".auth]\npasword = \"hunter2\"\n"),
            "cfg.toml:2:1: unknown key registry.configs.\"r.local\".auth.pasword (did you mean "
            "password?)");
  EXPECT_THAT(ParseError("[registry.configs.\"r.local\"]\nauthh = {}\n"),
              HasSubstr("unknown key registry.configs.\"r.local\".authh (did you mean auth?)"));
  EXPECT_THAT(ParseError("[registry]\nconfig_paths = \"/d\"\n"),
              HasSubstr("unknown key registry.config_paths (did you mean config_path?)"));
}

TEST(BerthConfigTest, DeprecatedAuthsIsNotPartOfTheBerthForm) {
  EXPECT_THAT(ParseError("[registry.auths.\"https://gcr.io\"]\nusername = \"u\"\n"),
              AllOf(StartsWith("cfg.toml:1:"),
                    HasSubstr("registry.auths is containerd's deprecated spelling"),
                    HasSubstr("[registry.configs.\"<host>\".auth]")));
}

TEST(BerthConfigTest, HostKeysMustBeHostsNotUrls) {
  EXPECT_THAT(ParseError("[registry.configs.\"https://r.local\".tls]\ninsecure_skip_verify = true"),
              HasSubstr("registry.configs.\"https://r.local\" must be named by a host like"));
  EXPECT_THAT(ParseError("[registry.mirrors.\"\"]\nendpoint = []\n"),
              HasSubstr("registry.mirrors.\"\" must not be an empty host name"));
}

TEST(BerthConfigTest, MirrorEndpointsNeedSchemeAndHost) {
  EXPECT_EQ(ParseError("[registry.mirrors.\"docker.io\"]\nendpoint = [\"https://ok\", "
                       "\"mirror.local\"]\n"),
            "cfg.toml:2:1: registry.mirrors.\"docker.io\".endpoint[1] must be a URL with an "
            "http:// or https:// scheme and a host, like \"https://mirror.local:5000\"; got "
            "\"mirror.local\"");
  EXPECT_THAT(ParseError("[registry.mirrors.\"docker.io\"]\nendpoint = [\"https:///path\"]\n"),
              HasSubstr("endpoint[0] must be a URL"));
  EXPECT_THAT(ParseError("[registry.mirrors.\"docker.io\"]\nendpoint = [\"\"]\n"),
              HasSubstr("endpoint[0] must not be empty"));
}

TEST(BerthConfigTest, TlsClientCertificateNeedsBothFiles) {
  EXPECT_EQ(ParseError("[registry.configs.\"r.local\".tls]\ncert_file = \"c.pem\"\n"),
            "cfg.toml:1:29: registry.configs.\"r.local\".tls sets cert_file without key_file; "
            "a client certificate needs both");
  EXPECT_THAT(ParseError("[registry.configs.\"r.local\".tls]\nkey_file = \"k.pem\"\n"),
              HasSubstr("sets key_file without cert_file"));
}

TEST(BerthConfigTest, AuthFieldMustBeBase64OfUserColonPassword) {
  Config config = Parse("[registry.configs.\"r\".auth]\nauth = \"dTpw\"\n");  // "u:p"
  EXPECT_EQ(config.registry.configs.at("r").auth.auth.reveal(), "dTpw");
  std::string message = ParseError("[registry.configs.\"r\".auth]\nauth = \"not*base64*value\"\n");
  EXPECT_THAT(message, HasSubstr("cfg.toml:2:1: registry.configs.r.auth.auth must be the base64 "
                                 "encoding of <username>:<password>"));
  EXPECT_THAT(message, Not(HasSubstr("not*base64*value")));
  // Valid base64 without a colon inside ("nocolon").
  EXPECT_THAT(ParseError("[registry.configs.\"r\".auth]\nauth = \"bm9jb2xvbg==\"\n"),
              Not(HasSubstr("bm9jb2xvbg")));
}

// ----------------------------------------------------------------------------------------------
// [pull].

TEST(PullConfigTest, MaxConcurrentDownloadsRange) {
  EXPECT_EQ(Parse("[pull]\nmax_concurrent_downloads = 1").pull.max_concurrent_downloads, 1);
  EXPECT_EQ(Parse("[pull]\nmax_concurrent_downloads = 1024").pull.max_concurrent_downloads, 1024);
  EXPECT_EQ(ParseError("[pull]\nmax_concurrent_downloads = 0"),
            "cfg.toml:2:1: pull.max_concurrent_downloads must be between 1 and 1024; got 0");
  EXPECT_THAT(ParseError("[pull]\nmax_concurrent_downloads = 5000"), HasSubstr("got 5000"));
  EXPECT_THAT(ParseError("[pull]\nmax_concurrent_downloads = \"3\""),
              HasSubstr("pull.max_concurrent_downloads must be an integer, got a string"));
}

TEST(PullConfigTest, SnapshotterAndSyncAreEnumerations) {
  EXPECT_EQ(Parse("[pull]\nsnapshotter = \"overlayfs\"").pull.snapshotter,
            SnapshotterKind::kOverlayfs);
  EXPECT_EQ(Parse("[pull]\nsnapshotter = \"erofs\"").pull.snapshotter, SnapshotterKind::kErofs);
  EXPECT_EQ(Parse("[pull]\nsync = \"none\"").pull.sync, Durability::kNone);
  EXPECT_EQ(Parse("[pull]\nsync = \"layer\"").pull.sync, Durability::kLayer);
  EXPECT_EQ(ParseError("[pull]\nsnapshotter = \"zfs\""),
            "cfg.toml:2:1: pull.snapshotter must be one of \"overlayfs\", \"native\", \"erofs\"; "
            "got \"zfs\"");
  EXPECT_EQ(ParseError("[pull]\nsync = \"always\""),
            "cfg.toml:2:1: pull.sync must be one of \"none\", \"layer\", \"file\"; got \"always\"");
}

TEST(PullConfigTest, LayerThreadsIsAutoOneTwoOrThree) {
  EXPECT_EQ(DefaultConfig().pull.layer_threads, LayerThreads::kAuto);
  EXPECT_EQ(Parse("[pull]\nlayer_threads = \"1\"").pull.layer_threads, LayerThreads::kOne);
  EXPECT_EQ(Parse("[pull]\nlayer_threads = \"2\"").pull.layer_threads, LayerThreads::kTwo);
  EXPECT_EQ(Parse("[pull]\nlayer_threads = \"3\"").pull.layer_threads, LayerThreads::kThree);
  EXPECT_EQ(Parse("[pull]\nlayer_threads = \"auto\"").pull.layer_threads, LayerThreads::kAuto);
  EXPECT_EQ(
      ParseError("[pull]\nlayer_threads = \"4\""),
      "cfg.toml:2:1: pull.layer_threads must be one of \"auto\", \"1\", \"2\", \"3\"; got \"4\"");
}

TEST(PullConfigTest, ProgressTimeoutIsAGoDuration) {
  EXPECT_EQ(Parse("[pull]\nimage_pull_progress_timeout = \"30s\"").pull.image_pull_progress_timeout,
            seconds(30));
  EXPECT_EQ(Parse("[pull]\nimage_pull_progress_timeout = \"0\"").pull.image_pull_progress_timeout,
            seconds(0));
  EXPECT_THAT(ParseError("[pull]\nimage_pull_progress_timeout = \"5x\""),
              HasSubstr("cfg.toml:2:1: pull.image_pull_progress_timeout has an invalid value: "
                        "\"5x\" is not a valid duration: unknown unit \"x\""));
  EXPECT_THAT(ParseError("[pull]\nimage_pull_progress_timeout = 300"),
              HasSubstr("must be a duration string like \"5m\" or \"30s\", got an integer"));
  EXPECT_THAT(ParseError("[pull]\nimage_pull_progress_timeout = \"-1m\""),
              HasSubstr("image_pull_progress_timeout must not be negative"));
}

TEST(PullConfigTest, MinDownloadSpeedIsARateOverADurationWindow) {
  Config config =
      Parse("[pull]\nmin_download_speed = \"100KiB/s\"\nmin_download_speed_window = \"45s\"");
  EXPECT_EQ(config.pull.min_download_speed, 100u * 1024u);
  EXPECT_EQ(config.pull.min_download_speed_window, seconds(45));
  EXPECT_EQ(Parse("[pull]\nmin_download_speed = \"1.5MB/s\"").pull.min_download_speed, 1'500'000u);
  EXPECT_EQ(Parse("[pull]\nmin_download_speed = 2048").pull.min_download_speed, 2048u);
  EXPECT_EQ(Parse("[pull]\nmin_download_speed = \"0\"").pull.min_download_speed, 0u);
  EXPECT_EQ(ParseError("[pull]\nmin_download_speed = \"100KiB\""),
            "cfg.toml:2:1: pull.min_download_speed has an invalid value: \"100KiB\" is not a "
            "valid rate: it must end in \"/s\" (write it like \"100KiB/s\" or \"1MB/s\", or "
            "\"0\" for none)");
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed = \"10QB/s\""),
              HasSubstr("\"10QB/s\" is not a valid rate: unknown unit \"QB\""));
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed = -1"),
              HasSubstr("pull.min_download_speed must not be negative"));
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed = true"),
              HasSubstr("must be a rate string like \"100KiB/s\" or an integer"));
  EXPECT_EQ(ParseError("[pull]\nmin_download_speed_window = \"500ms\""),
            "cfg.toml:2:1: pull.min_download_speed_window must be between 1s and 1h; got "
            "\"500ms\"");
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed_window = \"2h\""),
              HasSubstr("must be between 1s and 1h"));
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed_window = 30"),
              HasSubstr("must be a duration string like \"30s\", got an integer"));
  EXPECT_THAT(ParseError("[pull]\nmin_download_speed_window = \"thirty\""),
              HasSubstr("pull.min_download_speed_window has an invalid value"));
}

TEST(PullConfigTest, SchedulerLimitsAreCountsWhereZeroMeansNoLimit) {
  Config config = Parse(
      "[pull]\nmax_concurrent_downloads_total = 0\nmax_concurrent_downloads_per_registry = 4");
  EXPECT_EQ(config.pull.max_concurrent_downloads_total, 0);
  EXPECT_EQ(config.pull.max_concurrent_downloads_per_registry, 4);
  EXPECT_EQ(
      Parse("[pull]\nmax_concurrent_downloads_total = 1024").pull.max_concurrent_downloads_total,
      1024);
  EXPECT_EQ(ParseError("[pull]\nmax_concurrent_downloads_total = -1"),
            "cfg.toml:2:1: pull.max_concurrent_downloads_total must be between 0 (no limit) and "
            "1024; got -1");
  EXPECT_THAT(ParseError("[pull]\nmax_concurrent_downloads_per_registry = 2000"),
              HasSubstr("pull.max_concurrent_downloads_per_registry must be between 0 (no limit) "
                        "and 1024; got 2000"));
  EXPECT_THAT(ParseError("[pull]\nmax_concurrent_downloads_per_registry = \"4\""),
              HasSubstr("must be an integer, got a string"));
}

TEST(PullConfigTest, MinFreeSpaceDefaultsToTheLargerOfFivePercentAndOneGiB) {
  const MinFreeSpace reserve = DefaultConfig().pull.min_free_space;
  EXPECT_EQ(reserve.bytes, 1ull << 30);
  EXPECT_EQ(reserve.percent, 5.0);
  EXPECT_EQ(reserve.ReserveFor(10ull << 30), 1ull << 30);   // 5% of 10 GiB is less
  EXPECT_EQ(reserve.ReserveFor(100ull << 30), 5ull << 30);  // 5% of 100 GiB is more
  EXPECT_EQ(reserve.ToString(), "the larger of 5% and 1.0 GiB");
}

TEST(PullConfigTest, MinFreeSpaceTakesASizeOrAPercentage) {
  const MinFreeSpace size = Parse("[pull]\nmin_free_space = \"2GiB\"").pull.min_free_space;
  EXPECT_EQ(size, (MinFreeSpace{.bytes = 2ull << 30, .percent = 0}));
  EXPECT_EQ(size.ReserveFor(1ull << 40), 2ull << 30);
  EXPECT_EQ(size.ToString(), "2.0 GiB");
  const MinFreeSpace share = Parse("[pull]\nmin_free_space = \"12.5%\"").pull.min_free_space;
  EXPECT_EQ(share, (MinFreeSpace{.bytes = 0, .percent = 12.5}));
  EXPECT_EQ(share.ReserveFor(800), 100u);
  EXPECT_EQ(share.ToString(), "12.5%");
  EXPECT_EQ(Parse("[pull]\nmin_free_space = 4096").pull.min_free_space,
            (MinFreeSpace{.bytes = 4096, .percent = 0}));
  const MinFreeSpace none = Parse("[pull]\nmin_free_space = \"0\"").pull.min_free_space;
  EXPECT_EQ(none.ReserveFor(1ull << 40), 0u);
}

TEST(PullConfigTest, MinFreeSpaceRejectsBadValuesWithALocatedError) {
  EXPECT_EQ(ParseError("[pull]\nmin_free_space = \"95%\""),
            "cfg.toml:2:1: pull.min_free_space must be a percentage between 0% and 90%; got "
            "\"95%\"");
  EXPECT_THAT(ParseError("[pull]\nmin_free_space = \"-5%\""), HasSubstr("between 0% and 90%"));
  EXPECT_THAT(ParseError("[pull]\nmin_free_space = \"five%\""), HasSubstr("between 0% and 90%"));
  EXPECT_THAT(ParseError("[pull]\nmin_free_space = \"5 %x\""),
              HasSubstr("cfg.toml:2:1: pull.min_free_space has an invalid value: "));
  EXPECT_EQ(ParseError("[pull]\nmin_free_space = -1"),
            "cfg.toml:2:1: pull.min_free_space must not be negative (0 keeps no reserve); got -1");
  EXPECT_THAT(ParseError("[pull]\nmin_free_space = true"),
              HasSubstr("cfg.toml:2:1: pull.min_free_space must be a size like \"2GiB\""));
}

TEST(PullConfigTest, MaxInflateRatioIsOffByDefaultAndTakesANumber) {
  EXPECT_EQ(DefaultConfig().pull.max_inflate_ratio, 0.0);
  EXPECT_EQ(Parse("[pull]\nmax_inflate_ratio = 100").pull.max_inflate_ratio, 100.0);
  EXPECT_EQ(Parse("[pull]\nmax_inflate_ratio = 12.5").pull.max_inflate_ratio, 12.5);
  EXPECT_EQ(Parse("[pull]\nmax_inflate_ratio = 0").pull.max_inflate_ratio, 0.0);
  EXPECT_EQ(ParseError("[pull]\nmax_inflate_ratio = 1"),
            "cfg.toml:2:1: pull.max_inflate_ratio must be 0 (off) or between 2 and 1000000; got 1");
  EXPECT_THAT(ParseError("[pull]\nmax_inflate_ratio = -10"), HasSubstr("got -10"));
  EXPECT_THAT(ParseError("[pull]\nmax_inflate_ratio = \"100x\""),
              HasSubstr("cfg.toml:2:1: pull.max_inflate_ratio must be a number (0 disables the "
                        "check)"));
}

TEST(PullConfigTest, MaxLayerSizeTakesBytesOrUnits) {
  EXPECT_EQ(Parse("[pull]\nmax_layer_size = 1048576").pull.max_layer_size, 1048576u);
  EXPECT_EQ(Parse("[pull]\nmax_layer_size = \"512MiB\"").pull.max_layer_size, 512ull << 20);
  EXPECT_EQ(Parse("[pull]\nmax_layer_size = \"2TB\"").pull.max_layer_size, 2'000'000'000'000u);
  EXPECT_EQ(ParseError("[pull]\nmax_layer_size = 0"),
            "cfg.toml:2:1: pull.max_layer_size must be a positive number of bytes; got 0");
  EXPECT_THAT(ParseError("[pull]\nmax_layer_size = -5"), HasSubstr("got -5"));
  EXPECT_THAT(ParseError("[pull]\nmax_layer_size = \"0GiB\""),
              HasSubstr("must be more than zero bytes"));
  EXPECT_THAT(ParseError("[pull]\nmax_layer_size = \"10 gigs\""),
              HasSubstr("pull.max_layer_size has an invalid value: \"10 gigs\" is not a valid "
                        "size: unknown unit \"gigs\""));
  EXPECT_THAT(ParseError("[pull]\nmax_layer_size = 1.5"),
              HasSubstr("must be an integer (bytes) or a size string like \"10GiB\", got a float"));
}

TEST(PullConfigTest, PinnedImagesAndDiscardFlag) {
  Config config = Parse("[pull]\npinned_images = [\"a:1\"]\ndiscard_unpacked_layers = true\n");
  EXPECT_THAT(config.pull.pinned_images, ElementsAre("a:1"));
  EXPECT_TRUE(config.pull.discard_unpacked_layers);
  EXPECT_EQ(ParseError("[pull]\npinned_images = [\"a:1\", 2]"),
            "cfg.toml:2:25: pull.pinned_images[1] must be a string, got an integer");
  EXPECT_THAT(ParseError("[pull]\npinned_images = [\"\"]"),
              HasSubstr("pull.pinned_images[0] must not be empty"));
  EXPECT_THAT(ParseError("[pull]\npinned_images = \"a:1\""),
              HasSubstr("pull.pinned_images must be an array of strings, got a string"));
  EXPECT_THAT(ParseError("[pull]\ndiscard_unpacked_layers = \"yes\""),
              HasSubstr("must be a boolean (true or false), got a string"));
}

// [peers], the pulling side.
TEST(PeersConfigTest, DefaultsAskTwoHomePeersOfNoPeers) {
  const PeersConfig peers = DefaultConfig().peers;
  EXPECT_FALSE(peers.enabled());
  EXPECT_EQ(peers.home_peers, 2);
  EXPECT_EQ(peers.tls_ca, "");
  EXPECT_EQ(peers.refresh_interval, std::chrono::seconds(30));
}

TEST(PeersConfigTest, ReadsTheMembershipAndHowManyHomePeersToAsk) {
  Config config = Parse(
      "[peers]\nstatic = [\"10.0.0.2:5050\", \"[fd00::3]:5050\"]\ndns_name = \"berth-peers\"\n"
      "port = 5050\nself = \"10.0.0.7:5050\"\nhome_peers = 3\ntls_ca = \"/etc/ca.pem\"\n"
      "refresh_interval = \"10s\"\n");
  EXPECT_TRUE(config.peers.enabled());
  EXPECT_THAT(config.peers.static_peers, ElementsAre("10.0.0.2:5050", "[fd00::3]:5050"));
  EXPECT_EQ(config.peers.dns_name, "berth-peers");
  EXPECT_EQ(config.peers.port, 5050);
  EXPECT_EQ(config.peers.self, "10.0.0.7:5050");
  EXPECT_EQ(config.peers.home_peers, 3);
  EXPECT_EQ(config.peers.tls_ca, "/etc/ca.pem");
  EXPECT_EQ(config.peers.refresh_interval, std::chrono::seconds(10));
}

TEST(PeersConfigTest, RejectsOutOfRangeValuesNamingTheKey) {
  EXPECT_THAT(ParseError("[peers]\nport = 70000"),
              HasSubstr("peers.port must be between 1 and 65535; got 70000"));
  EXPECT_THAT(ParseError("[peers]\nhome_peers = 17"),
              HasSubstr("peers.home_peers must be between 0 (ask no peer) and 16; got 17"));
  EXPECT_THAT(ParseError("[peers]\nrefresh_interval = \"100ms\""),
              HasSubstr("peers.refresh_interval must be between 1s and 1h"));
  EXPECT_THAT(ParseError("[peers]\nstatic = \"10.0.0.2:5050\""),
              HasSubstr("peers.static must be an array of strings"));
  EXPECT_THAT(ParseError("[peers]\nstatik = []"), HasSubstr("unknown key peers.statik"));
}

// ----------------------------------------------------------------------------------------------
// Merging both spellings.

TEST(MergeTest, BerthSectionWinsPerHost) {
  Config config = Load("merged.toml");
  EXPECT_EQ(config.format, ConfigFormat::kContainerd);
  const RegistryConfig& registry = config.registry;
  // docker.io: berth's mirror list replaces containerd's; quay.io comes from containerd alone.
  EXPECT_THAT(registry.mirrors.at("docker.io").endpoints,
              ElementsAre("https://berth-mirror.example"));
  EXPECT_THAT(registry.mirrors.at("quay.io").endpoints, ElementsAre("https://quay-mirror.example"));
  // r.local: berth's entry replaces containerd's as a whole, so containerd's password and TLS
  // settings for r.local are gone.
  const HostConfig& host = registry.configs.at("r.local");
  EXPECT_EQ(host.auth.username, "from-berth");
  EXPECT_TRUE(host.auth.password.empty());
  EXPECT_EQ(host.tls, TlsConfig{});
  EXPECT_EQ(host.fallback, Fallback::kNever);
  EXPECT_TRUE(registry.configs.at("only.containerd").tls.insecure_skip_verify);
  // Headers merge by name.
  EXPECT_THAT(registry.headers.at("X-A"), ElementsAre("containerd"));
  EXPECT_THAT(registry.headers.at("X-B"), ElementsAre("berth"));
}

TEST(MergeTest, BerthConfigPathWinsAndEmptyDoesNotOverride) {
  const std::string containerd_part = R"(
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
)";
  EXPECT_EQ(Parse(containerd_part + "[registry]\nconfig_path = \"/etc/berth/certs.d\"\n")
                .registry.config_path,
            "/etc/berth/certs.d");
  EXPECT_EQ(Parse(containerd_part + "[registry]\nconfig_path = \"\"\n").registry.config_path,
            "/etc/containerd/certs.d");
}

TEST(MergeTest, ConfigPathConflictAcrossSectionsNamesBothPlaces) {
  std::string message = ParseError(R"(version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"

[registry.mirrors."docker.io"]
endpoint = ["https://m.example"]
)");
  EXPECT_THAT(message, StartsWith("cfg.toml:5:"));
  EXPECT_THAT(message, HasSubstr("registry.mirrors.\"docker.io\" cannot be set together with "
                                 "plugins.\"io.containerd.grpc.v1.cri\".registry.config_path "
                                 "(at cfg.toml:3:3)"));
}

TEST(MergeTest, LaterHostEntryWithoutTlsClearsTheConflict) {
  // containerd's r.local had TLS, berth's r.local replaces it without TLS: no conflict remains.
  Config config = Parse(R"(
version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."r.local".tls]
  insecure_skip_verify = true
[registry]
config_path = "/etc/berth/certs.d"
[registry.configs."r.local".auth]
username = "u"
)");
  EXPECT_EQ(config.registry.config_path, "/etc/berth/certs.d");
  EXPECT_FALSE(config.registry.configs.at("r.local").tls.insecure_skip_verify);
}

// ----------------------------------------------------------------------------------------------
// Types, TOML syntax errors, secrets.

TEST(ConfigErrorTest, WrongTypeNamesFileLineColumnAndKeyPath) {
  EXPECT_EQ(ParseError(R"(
[registry.configs."r.local".tls]
ca_file = "/ok.pem"
cert_file = "c.pem"
key_file = "k.pem"

insecure_skip_verify = "yes"
)"),
            "cfg.toml:7:1: registry.configs.\"r.local\".tls.insecure_skip_verify must be a "
            "boolean (true or false), got a string");
  EXPECT_EQ(ParseError("[registry.configs.\"r.local\".tls]\n  ca_file = 12\n"),
            "cfg.toml:2:3: registry.configs.\"r.local\".tls.ca_file must be a string, got an "
            "integer");
}

TEST(ConfigErrorTest, TablesOfTheWrongShape) {
  EXPECT_EQ(ParseError("registry = \"docker.io\""),
            "cfg.toml:1:1: registry must be a table, got a string");
  EXPECT_THAT(ParseError("[[registry.mirrors]]\nendpoint = []\n"),
              HasSubstr("registry.mirrors must be a table, got an array"));
  EXPECT_THAT(ParseError("[registry.mirrors]\n\"docker.io\" = [\"https://m\"]\n"),
              HasSubstr("cfg.toml:2:1: registry.mirrors.\"docker.io\" must be a table, got an "
                        "array"));
  EXPECT_THAT(ParseError("pull = 1986-04-01"), HasSubstr("pull must be a table, got a date"));
  EXPECT_THAT(ParseError("version = 2\nplugins = 1\n"),
              HasSubstr("plugins must be a table, got an integer"));
  EXPECT_THAT(ParseError("version = 2\n[plugins]\ncri = \"x\"\n"),
              HasSubstr("cfg.toml:3:1: plugins.cri must be a table, got a string"));
}

TEST(ConfigErrorTest, DuplicateKeysNameFileAndLine) {
  std::string message = ParseError("[pull]\nsync = \"none\"\nsync = \"file\"\n");
  EXPECT_THAT(message, StartsWith("cfg.toml:3:"));
  EXPECT_THAT(message, HasSubstr("sync"));
  std::string tables = ParseError("[registry]\nconfig_path = \"a\"\n\n[registry]\n");
  EXPECT_THAT(tables, StartsWith("cfg.toml:4:"));
  EXPECT_THAT(tables, HasSubstr("registry"));
}

TEST(ConfigErrorTest, MalformedTomlNamesFileLineAndColumn) {
  std::string message = ParseError("root = \"/a\"\n[pull\nsync = \"none\"\n");
  EXPECT_THAT(message, StartsWith("cfg.toml:2:"));
  EXPECT_THAT(ParseError("log_level = info\n"), StartsWith("cfg.toml:1:"));
}

TEST(ConfigErrorTest, PasswordOfTheWrongTypeIsNotEchoed) {
  std::string message = ParseError("[registry.configs.\"r.local\".auth]\npassword = 98765431\n");
  EXPECT_EQ(message,
            "cfg.toml:2:1: registry.configs.\"r.local\".auth.password must be a string, got an "
            "integer");
  EXPECT_THAT(message, Not(HasSubstr("98765431")));
  EXPECT_THAT(ParseError("[registry.configs.\"r.local\".auth]\nidentitytoken = [\"tok-777\"]\n"),
              AllOf(HasSubstr("auth.identitytoken must be a string, got an array"),
                    Not(HasSubstr("tok-777"))));
}

TEST(ConfigErrorTest, StringSecretsNeverAppearInErrors) {
  constexpr std::string_view kSecret = "Sup3r-Secret-Value";
  const std::vector<std::string> documents = {
      // A typo next to a valid password.
      fmt::format("[registry.configs.\"r\".auth]\npassword = \"{}\"\nusrname = \"u\"\n", kSecret),
      // A TOML syntax error on the password line: an unterminated string.
      fmt::format("[registry.configs.\"r\".auth]\npassword = \"{}\n", kSecret),
      // A syntax error: a bare word instead of a string.
      fmt::format("[registry.configs.\"r\".auth]\npassword = {}\n", kSecret),
      // A duplicate password key.
      fmt::format("[registry.configs.\"r\".auth]\npassword = \"{0}\"\npassword = \"{0}\"\n",
                  kSecret),
      // A secret in the base64 auth field that does not decode.
      fmt::format("[registry.configs.\"r\".auth]\nauth = \"{}\"\n", kSecret),
      // A secret header value of the wrong shape.
      fmt::format("[registry.headers]\nAuthorization = \"Bearer {}\"\n", kSecret),
      // containerd's deprecated auths with a bad key beside the password.
      fmt::format("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.auths.\"h\"]\n"
                  "password = \"{}\"\nextra = 1\n",
                  kSecret),
  };
  for (const std::string& document : documents) {
    std::string message = ParseError(document);
    EXPECT_FALSE(message.empty()) << document;
    EXPECT_THAT(message, Not(HasSubstr(kSecret))) << document;
  }
}

TEST(ConfigErrorTest, SecretsFormatAsRedacted) {
  Config config = Load("berth.toml");
  const AuthConfig& auth = config.registry.configs.at("r.local").auth;
  EXPECT_EQ(fmt::format("{} {}", auth.password, auth.identity_token), "<redacted> <redacted>");
}

// ----------------------------------------------------------------------------------------------
// Files.

TEST(LoadConfigFileTest, MissingFileIsNotFoundAndNamesThePath) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("config"));
  std::filesystem::path missing = dir.path() / "nope.toml";
  Result<Config> config = LoadConfigFile(missing);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(config.error().ToString(), HasSubstr(missing.string()));
}

TEST(LoadConfigFileTest, ErrorsStartWithTheFilePath) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("config"));
  std::filesystem::path path = dir.path() / "config.toml";
  std::ofstream(path) << "# berth\n\n[registry.configs.\"r.local\".tls]\nca_file = 5\n";
  Result<Config> config = LoadConfigFile(path);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(config.error().ToString(),
            path.string() +
                ":4:1: registry.configs.\"r.local\".tls.ca_file must be a string, got an integer");
}

TEST(LoadConfigFileTest, DirectoryIsAnError) {
  ASSERT_OK_AND_ASSIGN(TempDir dir, TempDir::Create("config"));
  Result<Config> config = LoadConfigFile(dir.path());
  ASSERT_FALSE(config);
  EXPECT_THAT(config.error().ToString(), HasSubstr(dir.path().string()));
}

}  // namespace
}  // namespace berth::config
