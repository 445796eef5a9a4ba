// Peer sharing across a cluster (issue 17), end to end: five berthd nodes, each in a network
// namespace of its own on a private bridge (testing/net_namespace.h: 10.213.0.0/24, nothing in
// the root namespace), and a Distribution registry in a sixth, whose access log says how often
// it served each blob. The nodes know each other from a static list or from DNS (dnsmasq in a
// namespace of its own answering a headless-Service-like name with every node's A record), the
// test's parameter. Every node pulls over its own CRI socket with the berth CLI.
//
//   - all five pull one image at once: every image is complete, and the registry serves each
//     blob once (the home peers fetch it for the others);
//   - a node killed (SIGKILL) while it serves a layer: the others finish from another home or
//     the registry;
//   - a fake peer that serves wrong bytes: the nodes reject them, count them against that peer,
//     and finish;
//   - (DNS) the membership changes while pulls run: they finish, and a later pull asks exactly
//     the new members that are the blobs' homes.
//
// Timing is never what passes or fails: slow links (tc tbf in a namespace) only make windows
// wide, and a kill that lands after a transfer ended still leaves a valid case.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/file_util.h"
#include "berth/peers/rendezvous.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "nlohmann/json.hpp"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/dns_server.h"
#include "testing/http_server.h"
#include "testing/net_namespace.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using berth::testing::ChildProcess;
using berth::testing::CommandResult;
using berth::testing::DnsRecords;
using berth::testing::DnsServer;
using berth::testing::HttpServer;
using berth::testing::HttpServerRequest;
using berth::testing::HttpServerResponse;
using berth::testing::NetNamespace;
using berth::testing::TempDir;
using berth::testing::TestNetwork;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kRepository[] = "cluster/app";
constexpr int kRegistryHost = 2;
constexpr int kDnsHost = 3;
constexpr int kFirstNodeHost = 11;
constexpr int kNodes = 5;
constexpr uint16_t kRegistryPort = 5000;
constexpr uint16_t kPeerPort = 5050;
// Inside each node's namespace: every node has the same, reached through its own loopback.
constexpr char kMetricsAddress[] = "127.0.0.1:9100";
constexpr char kPeersName[] = "berth-peers.cluster.test";
constexpr char kDockerRegistry[] = "/usr/bin/docker-registry";
constexpr auto kPullTimeout = std::chrono::seconds(90);

enum class MembershipSource { kStatic, kDns };

std::string SourceName(MembershipSource source) {
  return source == MembershipSource::kStatic ? "StaticList" : "Dns";
}

void PrintTo(MembershipSource source, std::ostream* out) { *out << SourceName(source); }

// `size` bytes that do not compress (xorshift64), the same for the same seed.
std::string Noise(size_t size, uint64_t seed) {
  std::string bytes(size, '\0');
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < size; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    bytes[i] = static_cast<char>(state >> 24);
  }
  return bytes;
}

// An image of one file per layer, layer i of layer_bytes[i] noise; `salt` makes other digests.
Result<imagegen::Image> MakeImage(const std::vector<size_t>& layer_bytes, uint64_t salt) {
  std::vector<imagegen::Layer> layers;
  for (size_t i = 0; i < layer_bytes.size(); ++i) {
    imagegen::FileTree tree;
    tree.AddDirectory("data").AddFile(fmt::format("data/layer{}.bin", i),
                                      Noise(layer_bytes[i], salt * 1000 + i));
    BERTH_ASSIGN_OR_RETURN(
        imagegen::Layer layer,
        imagegen::BuildLayer(tree, {.compression = imagegen::Compression::kZstd}));
    layers.push_back(std::move(layer));
  }
  imagegen::ImageConfig config;
  config.cmd = {"/bin/true"};
  config.labels["salt"] = std::to_string(salt);
  return imagegen::AssembleImage(config, std::move(layers));
}

// The image's blobs: its config, then its layers.
std::vector<Digest> Blobs(const imagegen::Image& image) {
  std::vector<Digest> blobs = {image.config.digest};
  for (const imagegen::Layer& layer : image.layers) blobs.push_back(layer.blob.digest);
  return blobs;
}

// A Prometheus exposition as series ("name{labels}") → value.
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> series;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    series[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return series;
}

// The sum of the series whose text starts with `prefix` ("berth_peer_given_up_total{peer=\"x\"").
double SumOf(const std::map<std::string, double>& metrics, std::string_view prefix) {
  double sum = 0;
  for (const auto& [name, value] : metrics) {
    if (name.starts_with(prefix)) sum += value;
  }
  return sum;
}

// From docker-registry's access log (one line per request, Apache combined format): how many
// `GET /v2/<repository>/blobs/<digest>` it answered with `status`, per digest.
std::map<std::string, int> RegistryBlobGets(const std::string& log, int status) {
  std::map<std::string, int> counts;
  const std::string request = fmt::format("\"GET /v2/{}/blobs/", kRepository);
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const size_t at = line.find(request);
    if (at == std::string::npos) continue;
    const size_t start = at + request.size();
    const size_t end = line.find_first_of(" ?", start);
    const size_t closing = line.find("\" ", end);
    if (end == std::string::npos || closing == std::string::npos) continue;
    if (std::atoi(line.c_str() + closing + 2) != status) continue;
    ++counts[line.substr(start, end - start)];
  }
  return counts;
}

struct Node {
  int host = 0;
  NetNamespace* ns = nullptr;
  TempDir dir;
  std::unique_ptr<ChildProcess> berthd;
  std::string peer_address;  // "10.213.0.11:5050"

  fs::path config_file() const { return dir.Join("config.toml"); }
  fs::path socket() const { return dir.Join("berth.sock"); }
};

// The cluster: its network, registry, DNS (when the members come from DNS) and nodes.
class ClusterFixture : public ::testing::Test {
 protected:
  void SetUpCluster(MembershipSource source);
  void TearDown() override;

  std::string Address(int host) const { return network_->Address(host); }
  std::string PeerAddress(int host) const { return fmt::format("{}:{}", Address(host), kPeerPort); }
  std::string RegistryHost() const {
    return fmt::format("{}:{}", Address(kRegistryHost), kRegistryPort);
  }
  std::string Reference(std::string_view tag) const {
    return fmt::format("{}/{}:{}", RegistryHost(), kRepository, tag);
  }

  // Pushes `image` as <repository>:<tag> (through the loopback registry that shares storage).
  Result<void> Push(const imagegen::Image& image, std::string_view tag);
  // The members the nodes are told of: the static list, or the DNS name's records.
  Result<void> SetMembers(const std::vector<int>& hosts);
  // A namespace for node `host`, its config, and berthd started in it.
  Result<Node*> StartNode(int host);
  Node& NodeAt(int host) { return *nodes_.at(host); }

  // `berth <args>` through node's berthd.
  CommandResult Cli(const Node& node, const std::vector<std::string>& args);
  // `berth pull <tag>` on each node, all at once; the results in the same order.
  std::vector<std::future<CommandResult>> StartPulls(const std::vector<Node*>& nodes,
                                                     std::string_view tag);
  // The pull printed the image's ID, and the node holds it whole: `berth inspect` names it and
  // `berth check --verify` (every blob's digest, every snapshot) is clean.
  void ExpectImageComplete(const Node& node, const CommandResult& pulled,
                           const imagegen::Image& image, std::string_view tag);
  std::map<std::string, double> Metrics(const Node& node);
  // Prints the registry's GETs per blob and each node's fetched bytes by source; returns the
  // GETs answered 200 per digest.
  std::map<std::string, int> ReportFetches(const imagegen::Image& image);
  // Rate-limits what the namespace sends (tc tbf on its eth0).
  Result<void> LimitRate(const NetNamespace& ns, std::string_view rate);

  MembershipSource source_ = MembershipSource::kStatic;
  TempDir dir_;
  std::unique_ptr<TestNetwork> network_;
  NetNamespace* registry_ns_ = nullptr;
  std::unique_ptr<TestRegistry> push_registry_;
  std::unique_ptr<ChildProcess> registry_;
  std::unique_ptr<DnsServer> dns_;
  std::vector<int> members_;
  std::map<int, std::unique_ptr<Node>> nodes_;
  std::string snapshotter_;
};

// Why the cluster cannot run here, or "" when it can.
std::string MissingPrerequisite(MembershipSource source) {
  if (::geteuid() != 0) return "network namespaces need root";
  std::vector<const char*> programs = {"/usr/sbin/ip", "/usr/sbin/tc", "/usr/bin/ss",
                                       kDockerRegistry};
  if (source == MembershipSource::kDns) programs.push_back("/usr/sbin/dnsmasq");
  for (const char* program : programs) {
    if (::access(program, X_OK) != 0) {
      return fmt::format("{} is missing (scripts/setup.sh installs it)", program);
    }
  }
  return "";
}

void ClusterFixture::SetUpCluster(MembershipSource source) {
  source_ = source;
  ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("cluster"));
  ASSERT_OK_AND_ASSIGN(network_, TestNetwork::Create({.prefix = "berthc"}));
  snapshotter_ = snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native";

  // The registry: pushed to on loopback, served from its namespace (the same storage).
  const fs::path storage = dir_.Join("registry-storage");
  ASSERT_OK_AND_ASSIGN(push_registry_, TestRegistry::Start({.storage_directory = storage}));
  ASSERT_OK_AND_ASSIGN(registry_ns_, network_->AddHost("registry", kRegistryHost));
  const fs::path config = dir_.Join("registry.yml");
  ASSERT_OK(WriteFileAtomically(
      config, fmt::format("version: 0.1\nlog:\n  level: info\n  formatter: text\n"
                          "storage:\n  filesystem:\n    rootdirectory: \"{}\"\n"
                          "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                          "http:\n  addr: {}\n  secret: berth-cluster-test\n",
                          storage.string(), RegistryHost())));
  ASSERT_OK_AND_ASSIGN(
      registry_,
      ChildProcess::Start({.argv = registry_ns_->Exec({kDockerRegistry, "serve", config.string()}),
                           .log_file = dir_.Join("registry.log")}));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (true) {
    auto answer = registry_ns_->Fetch(
        {.url = fmt::format("http://{}/v2/", RegistryHost()), .timeout = std::chrono::seconds(1)});
    if (answer && answer->status == 200) break;
    ASSERT_TRUE(registry_->Running()) << registry_->ReadLog();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << registry_->ReadLog();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  if (source_ == MembershipSource::kDns) {
    ASSERT_OK_AND_ASSIGN(NetNamespace * dns_ns, network_->AddHost("dns", kDnsHost));
    ASSERT_OK_AND_ASSIGN(dns_, DnsServer::Start({.ns = dns_ns, .address = Address(kDnsHost)}));
  }
}

void ClusterFixture::TearDown() {
  // Processes first: a namespace lives on while a process is in it.
  for (auto& [host, node] : nodes_) {
    if (node->berthd) node->berthd->Stop(std::chrono::seconds(10));
  }
  if (registry_) registry_->Stop();
  dns_.reset();
  nodes_.clear();
  network_.reset();
}

Result<void> ClusterFixture::Push(const imagegen::Image& image, std::string_view tag) {
  BERTH_RETURN_IF_ERROR(
      service::testing::PushTestImage(push_registry_->url(), kRepository, tag, image));
  return Ok();
}

Result<void> ClusterFixture::SetMembers(const std::vector<int>& hosts) {
  members_ = hosts;
  if (source_ != MembershipSource::kDns) return Ok();
  DnsRecords records;
  for (int host : hosts) records[kPeersName].push_back(Address(host));
  return dns_->SetRecords(records);
}

Result<Node*> ClusterFixture::StartNode(int host) {
  auto node = std::make_unique<Node>();
  node->host = host;
  node->peer_address = PeerAddress(host);
  BERTH_ASSIGN_OR_RETURN(node->dir, TempDir::Create(fmt::format("node{}", host)));
  BERTH_ASSIGN_OR_RETURN(node->ns, network_->AddHost(fmt::format("node{}", host), host));
  std::string peers =
      fmt::format("listen = \"{}\"\nself = \"{}\"\n", node->peer_address, node->peer_address);
  if (source_ == MembershipSource::kDns) {
    BERTH_RETURN_IF_ERROR(node->ns->SetNameserver(dns_->address()));
    peers += fmt::format("dns_name = \"{}\"\nport = {}\nrefresh_interval = \"1s\"\n", kPeersName,
                         kPeerPort);
  } else {
    std::string list;
    for (int member : members_)
      list += fmt::format("{}\"{}\"", list.empty() ? "" : ", ", PeerAddress(member));
    peers += fmt::format("static = [{}]\n", list);
  }
  BERTH_RETURN_IF_ERROR(WriteFileAtomically(
      node->config_file(),
      fmt::format("root = \"{}\"\nmetrics_address = \"{}\"\n"
                  "[pull]\nsnapshotter = \"{}\"\nimage_pull_progress_timeout = \"10s\"\n"
                  "[registry.mirrors.\"{}\"]\nendpoint = [\"http://{}\"]\n"
                  "[peers]\n{}",
                  node->dir.Join("root").string(), kMetricsAddress, snapshotter_, RegistryHost(),
                  RegistryHost(), peers)));
  BERTH_ASSIGN_OR_RETURN(node->berthd,
                         berth::testing::StartBerthd({.config_file = node->config_file(),
                                                      .state = node->dir.Join("state"),
                                                      .socket = node->socket(),
                                                      .snapshotter_socket = fs::path(),
                                                      .command_prefix = node->ns->Exec({}),
                                                      .log_file = node->dir.Join("berthd.log")}));
  Node* raw = node.get();
  nodes_[host] = std::move(node);
  return raw;
}

CommandResult ClusterFixture::Cli(const Node& node, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BERTH_CLI_PATH, "--config", node.config_file().string(),
                                   "--address", "unix://" + node.socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = berth::testing::RunCommand(argv, node.dir.path());
  EXPECT_TRUE(result) << result.error().ToString();
  return result ? *result : CommandResult{};
}

std::vector<std::future<CommandResult>> ClusterFixture::StartPulls(const std::vector<Node*>& nodes,
                                                                   std::string_view tag) {
  std::vector<std::future<CommandResult>> pulls;
  pulls.reserve(nodes.size());
  for (Node* node : nodes) {
    pulls.push_back(std::async(std::launch::async, [this, node, reference = Reference(tag)] {
      return Cli(*node, {"pull", reference});
    }));
  }
  return pulls;
}

void ClusterFixture::ExpectImageComplete(const Node& node, const CommandResult& pulled,
                                         const imagegen::Image& image, std::string_view tag) {
  const std::string who = fmt::format("node {}", node.peer_address);
  ASSERT_EQ(pulled.exit_code, 0) << who << ": " << pulled.err << node.berthd->ReadLog();
  EXPECT_EQ(pulled.out, image.config.digest.ToString() + "\n") << who;
  CommandResult inspected = Cli(node, {"inspect", Reference(tag)});
  ASSERT_EQ(inspected.exit_code, 0) << who << ": " << inspected.err;
  json status = json::parse(inspected.out, nullptr, false);
  ASSERT_TRUE(status.is_object()) << who << ": " << inspected.out;
  EXPECT_EQ(status["status"].value("id", ""), image.config.digest.ToString()) << who;
  CommandResult check = Cli(node, {"check", "--verify", "--json"});
  EXPECT_EQ(check.exit_code, 0) << who << ": " << check.out << check.err;
  json report = json::parse(check.out, nullptr, false);
  EXPECT_TRUE(report.is_object() && report.value("clean", false)) << who << ": " << check.out;
}

std::map<std::string, double> ClusterFixture::Metrics(const Node& node) {
  auto response = node.ns->Fetch({.url = fmt::format("http://{}/v1/metrics", kMetricsAddress)});
  EXPECT_TRUE(response && response->status == 200)
      << node.peer_address << ": " << (response ? response->body : response.error().ToString());
  return response ? ParseMetrics(response->body) : std::map<std::string, double>{};
}

std::map<std::string, int> ClusterFixture::ReportFetches(const imagegen::Image& image) {
  const std::string log = registry_->ReadLog();
  std::map<std::string, int> gets = RegistryBlobGets(log, 200);
  std::map<std::string, int> ranges = RegistryBlobGets(log, 206);
  std::string report = "registry GETs per blob (200 / 206):\n";
  for (const Digest& digest : Blobs(image)) {
    report += fmt::format("  {} {} / {}\n", digest.ToString(), gets[digest.ToString()],
                          ranges[digest.ToString()]);
  }
  report += "fetched bytes by source (berth_blob_fetched_bytes_total):\n";
  for (const auto& [host, node] : nodes_) {
    if (!node->berthd || !node->berthd->Running()) continue;
    std::map<std::string, double> metrics = Metrics(*node);
    report += fmt::format("  {} registry {} peer {}\n", node->peer_address,
                          SumOf(metrics, "berth_blob_fetched_bytes_total{source=\"registry\""),
                          SumOf(metrics, "berth_blob_fetched_bytes_total{source=\"peer\""));
  }
  std::cout << report << std::flush;
  return gets;
}

Result<void> ClusterFixture::LimitRate(const NetNamespace& ns, std::string_view rate) {
  BERTH_RETURN_IF_ERROR(ns.RunOk({"/usr/sbin/tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                                  "rate", std::string(rate), "burst", "64kb", "latency", "2s"},
                                 dir_.path()));
  return Ok();
}

enum class Lie;

class PeersClusterTest : public ClusterFixture,
                         public ::testing::WithParamInterface<MembershipSource> {
 protected:
  void PullBesideALiar(Lie lie);

  void SetUp() override {
    if (std::string missing = MissingPrerequisite(GetParam()); !missing.empty()) {
      GTEST_SKIP() << missing;
    }
    SetUpCluster(GetParam());
  }

  // Starts nodes kFirstNodeHost.. (count of them), all members.
  std::vector<Node*> StartNodes(int count) {
    std::vector<int> hosts(count);
    std::iota(hosts.begin(), hosts.end(), kFirstNodeHost);
    EXPECT_OK(SetMembers(hosts));
    std::vector<Node*> started;
    for (int host : hosts) {
      auto node = StartNode(host);
      EXPECT_OK(node);
      if (node) started.push_back(*node);
    }
    return started;
  }
};

TEST_P(PeersClusterTest, FiveNodesPullOneImageAtOnceAndTheRegistryServesEachBlobOnce) {
  ASSERT_OK_AND_ASSIGN(imagegen::Image image,
                       MakeImage({1 << 20, 1 << 20, 1 << 20, 512 << 10, 256 << 10, 64 << 10}, 1));
  ASSERT_OK(Push(image, "v1"));
  std::vector<Node*> nodes = StartNodes(kNodes);
  ASSERT_EQ(nodes.size(), static_cast<size_t>(kNodes));

  std::vector<std::future<CommandResult>> pulls = StartPulls(nodes, "v1");
  for (size_t i = 0; i < nodes.size(); ++i) {
    ASSERT_EQ(pulls[i].wait_for(kPullTimeout), std::future_status::ready);
    ExpectImageComplete(*nodes[i], pulls[i].get(), image, "v1");
  }
  for (Node* node : nodes) {
    EXPECT_THAT(node->berthd->ReadLog(), HasSubstr(fmt::format("count={}", kNodes - 1)))
        << node->peer_address << " did not start with the other four as its peers";
  }

  std::map<std::string, int> gets = ReportFetches(image);
  for (const Digest& digest : Blobs(image)) {
    EXPECT_EQ(gets[digest.ToString()], 1)
        << "the registry served " << digest.ToString() << " " << gets[digest.ToString()]
        << " times to five nodes; its home peer should have fetched it once for all";
  }
}

// The peer endpoint's open connections with bytes still to send: `ss` inside the namespace.
bool ServingNow(const NetNamespace& ns, const fs::path& scratch) {
  auto listed = ns.RunOk(
      {"/usr/bin/ss", "-tnH", "state", "established", fmt::format("( sport = :{} )", kPeerPort)},
      scratch);
  if (!listed) return false;
  std::istringstream lines(*listed);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    long receive_queue = 0;
    long send_queue = 0;
    if (fields >> receive_queue >> send_queue && send_queue > 0) return true;
  }
  return false;
}

TEST_P(PeersClusterTest, ANodeKilledWhileServingLeavesTheOthersToFinishElsewhere) {
  ASSERT_OK_AND_ASSIGN(imagegen::Image image, MakeImage({6 << 20, 256 << 10, 128 << 10}, 2));
  ASSERT_OK(Push(image, "v1"));
  std::vector<Node*> nodes = StartNodes(kNodes);
  ASSERT_EQ(nodes.size(), static_cast<size_t>(kNodes));
  // The victim is the big layer's first home for every other node.
  std::vector<std::string> everyone;
  everyone.reserve(nodes.size());
  for (Node* node : nodes) everyone.push_back(node->peer_address);
  const std::string home = peers::HomePeers(image.layers[0].blob.digest, everyone, 1).at(0);
  Node* victim = nullptr;
  std::vector<Node*> others;
  for (Node* node : nodes) {
    if (node->peer_address == home) {
      victim = node;
    } else {
      others.push_back(node);
    }
  }
  ASSERT_NE(victim, nullptr);

  // The victim holds the whole image first, so it has the layer to serve, then serves it slowly.
  CommandResult first = Cli(*victim, {"pull", Reference("v1")});
  ExpectImageComplete(*victim, first, image, "v1");
  ASSERT_OK(LimitRate(*victim->ns, "16mbit"));
  std::vector<std::future<CommandResult>> pulls = StartPulls(others, "v1");
  bool served = false;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!served && std::chrono::steady_clock::now() < give_up) {
    served = ServingNow(*victim->ns, victim->dir.path());
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cout << "killing " << victim->peer_address
            << (served ? " while it serves" : " (no transfer seen in 30 s)") << std::endl;
  ASSERT_EQ(::kill(victim->berthd->pid(), SIGKILL), 0);
  ASSERT_OK(victim->berthd->WaitForExit(std::chrono::seconds(20)));

  for (size_t i = 0; i < others.size(); ++i) {
    ASSERT_EQ(pulls[i].wait_for(kPullTimeout), std::future_status::ready);
    ExpectImageComplete(*others[i], pulls[i].get(), image, "v1");
  }
  ReportFetches(image);
  double given_up = 0;
  for (Node* node : others) {
    given_up += SumOf(Metrics(*node),
                      fmt::format("berth_peer_given_up_total{{peer=\"{}\"", victim->peer_address));
  }
  if (served) {
    EXPECT_GE(given_up, 1) << "no node gave up on the killed " << victim->peer_address;
  }
}

// How a fake peer lies about a blob.
enum class Lie {
  kFlippedByte,  // the real bytes with the one in the middle changed: a bit rot or a bad disk
  kGarbage,      // as many bytes, none of them the blob's ('x'): not even the right format
};

// What the liar answers for `blob` (its real bytes).
std::string LieAbout(std::string blob, Lie lie) {
  if (lie == Lie::kGarbage) return std::string(blob.size(), 'x');
  blob[blob.size() / 2] = static_cast<char>(blob[blob.size() / 2] ^ 0x5a);
  return blob;
}

// The lies a fake peer told, by the address of the node it told them to.
class Lies {
 public:
  void Told(const std::string& client) {
    std::lock_guard lock(mutex_);
    ++by_address_[client.substr(0, client.rfind(':'))];
  }
  int To(const std::string& address) {
    std::lock_guard lock(mutex_);
    return by_address_[address];
  }
  int All() {
    std::lock_guard lock(mutex_);
    int all = 0;
    for (const auto& [address, count] : by_address_) all += count;
    return all;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, int> by_address_;
};

// A fake node at `address`: answers GET of every blob of `image` with 200, the blob's digest and
// size, and wrong bytes; counts the lies.
Result<std::unique_ptr<HttpServer>> StartLyingPeer(const NetNamespace& ns,
                                                   const std::string& address,
                                                   const imagegen::Image& image, Lie lie,
                                                   Lies& lies) {
  std::map<std::string, std::string> answers = {
      {image.config.digest.ToString(), LieAbout(image.config_json, lie)}};
  for (const imagegen::Layer& layer : image.layers) {
    answers[layer.blob.digest.ToString()] = LieAbout(layer.bytes, lie);
  }
  auto handler = [answers, &lies](const HttpServerRequest& request) -> HttpServerResponse {
    if (request.path == "/v2/") return {.status = 200, .body = "{}"};
    const size_t blobs = request.path.find("/blobs/");
    if (blobs == std::string::npos) return {.status = 404};
    const std::string digest = request.path.substr(blobs + 7);
    auto found = answers.find(digest);
    if (found == answers.end()) return {.status = 404};
    lies.Told(request.peer);
    return {.status = 200,
            .headers = {{"Content-Type", "application/octet-stream"},
                        {"Docker-Content-Digest", digest}},
            .body = request.method == "HEAD" ? "" : found->second};
  };
  Result<std::unique_ptr<HttpServer>> server = Fail(ErrorCode::kInternal, "not started");
  BERTH_RETURN_IF_ERROR(ns.RunInside(
      [&] { server = HttpServer::Start(handler, {.port = kPeerPort, .address = address}); }));
  return server;
}

// Four real nodes and a liar at the fifth address, the first home of some of the image's blobs
// (a layer among them), pull at once: each image is complete, and each node the liar lied to
// gave up on it for each lie, and says so naming it. (A node need not ask the liar: a blob one
// node is asked for by another is fetched from the registry, never through peers.)
void PeersClusterTest::PullBesideALiar(Lie lie) {
  const int liar_host = kFirstNodeHost + kNodes - 1;
  const std::string liar_address = PeerAddress(liar_host);
  std::vector<int> hosts(kNodes);
  std::iota(hosts.begin(), hosts.end(), kFirstNodeHost);
  std::vector<std::string> everyone;
  everyone.reserve(hosts.size());
  for (int host : hosts) everyone.push_back(PeerAddress(host));
  imagegen::Image image;
  size_t lied_about = 0;
  bool a_layer = false;
  for (uint64_t salt = 30; !a_layer; ++salt) {
    ASSERT_LT(salt, 90U) << "no image found with a layer whose first home is the liar";
    ASSERT_OK_AND_ASSIGN(image, MakeImage({512 << 10, 256 << 10, 128 << 10, 64 << 10}, salt));
    lied_about = 0;
    for (const Digest& digest : Blobs(image)) {
      if (peers::HomePeers(digest, everyone, 1).at(0) != liar_address) continue;
      ++lied_about;
      a_layer = a_layer || digest != image.config.digest;
    }
  }
  ASSERT_OK(Push(image, "v1"));
  ASSERT_OK(SetMembers(hosts));
  ASSERT_OK_AND_ASSIGN(NetNamespace * liar_ns, network_->AddHost("liar", liar_host));
  Lies lies;
  ASSERT_OK_AND_ASSIGN(auto liar, StartLyingPeer(*liar_ns, Address(liar_host), image, lie, lies));
  std::vector<Node*> nodes;
  for (int i = 0; i + 1 < kNodes; ++i) {
    ASSERT_OK_AND_ASSIGN(Node * node, StartNode(kFirstNodeHost + i));
    nodes.push_back(node);
  }

  std::vector<std::future<CommandResult>> pulls = StartPulls(nodes, "v1");
  for (size_t i = 0; i < nodes.size(); ++i) {
    ASSERT_EQ(pulls[i].wait_for(kPullTimeout), std::future_status::ready);
    ExpectImageComplete(*nodes[i], pulls[i].get(), image, "v1");
  }
  ReportFetches(image);
  const std::string given_up = fmt::format("berth_peer_given_up_total{{peer=\"{}\"", liar_address);
  for (Node* node : nodes) {
    const std::map<std::string, double> metrics = Metrics(*node);
    std::cout << node->peer_address << " gave up on the liar: bad_bytes "
              << SumOf(metrics, given_up + ",reason=\"bad_bytes\"") << ", error "
              << SumOf(metrics, given_up + ",reason=\"error\"") << ", all "
              << SumOf(metrics, given_up) << std::endl;
    const int lied_to = lies.To(Address(node->host));
    EXPECT_GE(SumOf(metrics, given_up), static_cast<double>(lied_to))
        << node->peer_address << " did not count the wrong bytes against " << liar_address;
    if (lied_to > 0) {
      EXPECT_THAT(node->berthd->ReadLog(),
                  HasSubstr(fmt::format("peers.peer_given_up peer={}", liar_address)));
    }
  }
  EXPECT_GE(lies.All(), 1) << "no node asked the liar, the first home of " << lied_about
                           << " blobs";
  liar->Stop();
}

TEST_P(PeersClusterTest, APeerServingFlippedBytesIsRejectedAndCounted) {
  PullBesideALiar(Lie::kFlippedByte);
}

TEST_P(PeersClusterTest, APeerServingGarbageIsRejectedAndCounted) {
  PullBesideALiar(Lie::kGarbage);
}

class PeersClusterDnsTest : public ClusterFixture {
 protected:
  void SetUp() override {
    if (std::string missing = MissingPrerequisite(MembershipSource::kDns); !missing.empty()) {
      GTEST_SKIP() << missing;
    }
    SetUpCluster(MembershipSource::kDns);
  }

  // The peers a node's log says it gave up on for `digest` (peers.peer_given_up).
  static std::set<std::string> PeersGivenUpFor(const std::string& log, const Digest& digest) {
    std::set<std::string> peers;
    const std::string blob = fmt::format("what=\"fetch blob {}\"", digest.ToString());
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("peers.peer_given_up peer=");
      if (at == std::string::npos || line.find(blob) == std::string::npos) continue;
      const size_t start = at + std::string_view("peers.peer_given_up peer=").size();
      peers.insert(line.substr(start, line.find(' ', start) - start));
    }
    return peers;
  }

  // The peers `node` asked between two scrapes of its metrics: fetched from or given up on.
  static std::set<std::string> PeersAsked(const std::map<std::string, double>& before,
                                          const std::map<std::string, double>& after) {
    std::set<std::string> asked;
    for (const auto& [name, value] : after) {
      if (!name.starts_with("berth_peer_fetched_bytes_total{") &&
          !name.starts_with("berth_peer_given_up_total{")) {
        continue;
      }
      auto was = before.find(name);
      if (value <= (was == before.end() ? 0 : was->second)) continue;
      const size_t start = name.find("peer=\"") + 6;
      asked.insert(name.substr(start, name.find('"', start) - start));
    }
    return asked;
  }
};

// Nodes 11..14 are the members; pulls start on 11, 12 and 13; meanwhile 14 leaves (out of DNS,
// stopped) and 15 joins and pulls. Every pull finishes whole. Then a pull of a new image on 11
// asks exactly the new members that are its blobs' homes: never the one that left.
TEST_F(PeersClusterDnsTest, MembershipChangesWhilePullsRun) {
  ASSERT_OK_AND_ASSIGN(imagegen::Image image, MakeImage({1 << 20, 1 << 20, 1 << 20, 1 << 20}, 40));
  ASSERT_OK_AND_ASSIGN(imagegen::Image later,
                       MakeImage({256 << 10, 256 << 10, 128 << 10, 128 << 10, 64 << 10}, 41));
  ASSERT_OK(Push(image, "v1"));
  ASSERT_OK(Push(later, "v2"));
  // A far registry: the pulls last while the membership changes.
  ASSERT_OK(LimitRate(*registry_ns_, "40mbit"));
  const int a = kFirstNodeHost;
  const int leaving = kFirstNodeHost + 3;
  const int joining = kFirstNodeHost + 4;
  ASSERT_OK(SetMembers({a, a + 1, a + 2, leaving}));
  std::vector<Node*> pulling;
  for (int host = a; host <= joining; ++host) {
    ASSERT_OK_AND_ASSIGN(Node * node, StartNode(host));
    if (host < leaving) pulling.push_back(node);
  }

  std::vector<std::future<CommandResult>> pulls = StartPulls(pulling, "v1");
  ASSERT_OK(SetMembers({a, a + 1, a + 2, joining}));
  const auto changed = std::chrono::steady_clock::now();
  NodeAt(leaving).berthd->Stop();
  pulling.push_back(&NodeAt(joining));
  std::vector<std::future<CommandResult>> joined = StartPulls({&NodeAt(joining)}, "v1");
  pulls.push_back(std::move(joined[0]));
  for (size_t i = 0; i < pulling.size(); ++i) {
    ASSERT_EQ(pulls[i].wait_for(kPullTimeout), std::future_status::ready);
    ExpectImageComplete(*pulling[i], pulls[i].get(), image, "v1");
  }
  ReportFetches(image);

  // Every node re-resolves each second; give them a few.
  std::this_thread::sleep_until(changed + std::chrono::seconds(4));
  Node& asker = NodeAt(a);
  const std::map<std::string, double> before = Metrics(asker);
  ExpectImageComplete(asker, Cli(asker, {"pull", Reference("v2")}), later, "v2");
  const std::set<std::string> asked = PeersAsked(before, Metrics(asker));
  const std::vector<std::string> old_members = {PeerAddress(a + 1), PeerAddress(a + 2),
                                                PeerAddress(leaving)};
  const std::vector<std::string> members = {PeerAddress(a + 1), PeerAddress(a + 2),
                                            PeerAddress(joining)};
  // The homes the asker asks for a blob: those ranked above itself among the members and itself,
  // at most home_peers (2) of them (pull/peer_endpoints.h); none when it is the first home.
  auto homes_to_ask = [&](const Digest& digest, const std::vector<std::string>& others) {
    std::vector<std::string> everyone = others;
    everyone.push_back(PeerAddress(a));
    std::vector<std::string> ranking = peers::HomePeers(digest, everyone, everyone.size());
    ranking.erase(std::find(ranking.begin(), ranking.end(), PeerAddress(a)), ranking.end());
    if (ranking.size() > 2) ranking.resize(2);
    return ranking;
  };
  std::set<std::string> first_homes;
  std::set<std::string> homes;
  for (const Digest& digest : Blobs(later)) {
    std::vector<std::string> now = homes_to_ask(digest, members);
    std::vector<std::string> then = homes_to_ask(digest, old_members);
    std::cout << digest.ToString() << " homes " << fmt::format("{}", fmt::join(now, ", "))
              << (now == then ? "" : fmt::format(" (moved from {})", fmt::join(then, ", ")))
              << std::endl;
    if (!now.empty()) first_homes.insert(now[0]);
    homes.insert(now.begin(), now.end());
    // Per blob, from the log: the peers given up on for it (404 before the change of issue 17's
    // pull-through; none after) are among its new homes.
    for (const std::string& peer : PeersGivenUpFor(asker.berthd->ReadLog(), digest)) {
      EXPECT_TRUE(std::find(now.begin(), now.end(), peer) != now.end())
          << peer << " was asked for " << digest.ToString() << ", whose homes are "
          << fmt::format("{}", fmt::join(now, ", "));
    }
  }
  const std::string asked_text = fmt::format("{}", fmt::join(asked, ", "));
  EXPECT_FALSE(asked.contains(PeerAddress(leaving))) << "asked: " << asked_text;
  for (const std::string& home : first_homes) {
    EXPECT_TRUE(asked.contains(home)) << home << " is a first home; asked: " << asked_text;
  }
  for (const std::string& peer : asked) {
    EXPECT_TRUE(homes.contains(peer)) << peer << " is no blob's home; asked: " << asked_text;
  }
}

INSTANTIATE_TEST_SUITE_P(Membership, PeersClusterTest,
                         ::testing::Values(MembershipSource::kStatic, MembershipSource::kDns),
                         [](const ::testing::TestParamInfo<MembershipSource>& tested) {
                           return SourceName(tested.param);
                         });

}  // namespace
}  // namespace berth
