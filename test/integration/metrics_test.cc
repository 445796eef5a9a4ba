// berthd's Prometheus metrics end to end: the built berthd with metrics_address on loopback,
// pulling from a real registry (docker-registry) over CRI; Debian's promtool checks the
// exposition it serves, and a real Prometheus server (its own config and storage in the test's
// temp dir, scraping every second) is queried through its HTTP API for the pull's count and
// bytes.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "proto/runtime/v1/api.grpc.pb.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/http_fetch.h"
#include "testing/net_util.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;

namespace v1 = ::runtime::v1;

constexpr char kPromtool[] = "/usr/bin/promtool";
constexpr char kPrometheus[] = "/usr/bin/prometheus";

// Percent-encodes `text` for a URL's query.
std::string QueryEscape(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Polls `done` every 200 ms until it holds; false after `limit` (which only bounds a broken
// build's wait).
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

class MetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = registry->release();
    auto image = service::testing::MakeTestImage("a");
    ASSERT_TRUE(image) << image.error().ToString();
    image_ = new imagegen::Image(std::move(*image));
    auto pushed = service::testing::PushTestImage(registry_->url(), "test/img", "a", *image_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete image_;
  }

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, berth::testing::TempDir::Create("metrics"));
    ASSERT_OK_AND_ASSIGN(metrics_port_, berth::testing::FreeLoopbackPort());
    std::ofstream(dir_.Join("config.toml")) << "[pull]\nsnapshotter = \"native\"\n";
    ASSERT_OK_AND_ASSIGN(
        daemon_,
        berth::testing::StartBerthd(
            {.config_file = dir_.Join("config.toml"),
             .root = dir_.Join("root"),
             .state = dir_.Join("state"),
             .socket = dir_.Join("run/berth.sock"),
             .extra_args = {"--metrics-address", fmt::format("127.0.0.1:{}", metrics_port_)},
             .log_file = dir_.Join("berthd.log")}));
    channel_ = grpc::CreateChannel("unix:" + dir_.Join("run/berth.sock").string(),
                                   grpc::InsecureChannelCredentials());
    v1_ = v1::ImageService::NewStub(channel_);
  }

  std::string MetricsUrl() const {
    return fmt::format("http://127.0.0.1:{}/v1/metrics", metrics_port_);
  }

  std::string Ref() const { return registry_->host() + "/test/img:a"; }

  void Pull() {
    v1::PullImageRequest request;
    request.mutable_image()->set_image(Ref());
    v1::PullImageResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    grpc::Status status = v1_->PullImage(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << daemon_->ReadLog();
  }

  // Bytes of each kind of blob the pull fetched from the registry.
  int64_t LayerBytes() const {
    int64_t bytes = 0;
    for (const auto& layer : image_->layers) bytes += layer.blob.size;
    return bytes;
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* image_ = nullptr;
  berth::testing::TempDir dir_;
  uint16_t metrics_port_ = 0;
  std::unique_ptr<ChildProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ImageService::Stub> v1_;
};

TEST_F(MetricsTest, PromtoolAcceptsTheExpositionAfterAPull) {
  ASSERT_NO_FATAL_FAILURE(Pull());
  ASSERT_OK_AND_ASSIGN(berth::testing::HttpFetchResponse scraped,
                       berth::testing::HttpFetch({.url = MetricsUrl()}));
  ASSERT_EQ(scraped.status, 200);
  EXPECT_EQ(scraped.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  // What the pull touched is there, with registry hosts and no reference in any label.
  EXPECT_THAT(scraped.body, HasSubstr("berth_pulls_total{code=\"OK\",snapshotter=\"native\"} 1\n"));
  EXPECT_THAT(scraped.body,
              HasSubstr("berth_grpc_requests_total{service=\"runtime.v1.ImageService\","
                        "method=\"PullImage\",code=\"OK\"} 1\n"));
  EXPECT_THAT(scraped.body, HasSubstr(fmt::format("berth_registry_requests_total{{host=\"{}\","
                                                  "status=\"200\"}}",
                                                  registry_->host())));
  EXPECT_THAT(scraped.body, HasSubstr("berth_images 1\n"));
  EXPECT_THAT(scraped.body, HasSubstr("process_resident_memory_bytes "));
  EXPECT_EQ(scraped.body.find("test/img"), std::string::npos);

  const std::filesystem::path file = dir_.Join("scraped.prom");
  std::ofstream(file) << scraped.body;
  // promtool reads the exposition on stdin; RunCommand gives it /dev/null, so a shell redirects.
  ASSERT_OK_AND_ASSIGN(
      berth::testing::CommandResult checked,
      berth::testing::RunCommand(
          {"/bin/sh", "-c", fmt::format("{} check metrics < {}", kPromtool, file.string())},
          dir_.path()));
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  // promtool prints lint findings (names, units, help) even when it exits 0: there are none.
  EXPECT_EQ(checked.out + checked.err, "");
}

TEST_F(MetricsTest, AnAddressThatCannotBeServedStopsBerthdAtStartNamingIt) {
  // The port is taken, or the address has no port: a second berthd (its own root) exits 1.
  ASSERT_OK_AND_ASSIGN(berth::testing::LoopbackListener taken, berth::testing::ListenOnLoopback());
  for (const std::string& address :
       {fmt::format("127.0.0.1:{}", taken.port), std::string("127.0.0.1")}) {
    const std::filesystem::path second = dir_.Join("second");
    std::filesystem::create_directories(second);
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<ChildProcess> refused,
        berth::testing::StartBerthd({.config_file = dir_.Join("config.toml"),
                                     .root = second / "root",
                                     .state = second / "state",
                                     .socket = second / "run/berth.sock",
                                     .extra_args = {"--metrics-address", address},
                                     .log_file = second / "berthd.log",
                                     .wait = berth::testing::BerthdStartWait::kNone}));
    ASSERT_OK_AND_ASSIGN(berth::testing::ExitStatus status,
                         refused->WaitForExit(std::chrono::seconds(20)));
    EXPECT_EQ(status.exit_code, 1) << refused->ReadLog();
    EXPECT_THAT(refused->ReadLog(), HasSubstr(address)) << address;
    EXPECT_FALSE(std::filesystem::exists(second / "run/berth.sock")) << "served CRI anyway";
  }
}

class PrometheusServer {
 public:
  // Starts Prometheus on a free loopback port scraping `target` (host:port) at /v1/metrics every
  // second, with its config and storage under `dir`; returns once it is ready.
  static Result<std::unique_ptr<PrometheusServer>> Start(const std::filesystem::path& dir,
                                                         const std::string& target) {
    auto server = std::unique_ptr<PrometheusServer>(new PrometheusServer());
    BERTH_ASSIGN_OR_RETURN(server->port_, berth::testing::FreeLoopbackPort());
    std::filesystem::create_directories(dir / "data");
    std::ofstream(dir / "prometheus.yml") << "global:\n"
                                             "  scrape_interval: 1s\n"
                                             "  scrape_timeout: 1s\n"
                                             "scrape_configs:\n"
                                             "  - job_name: berthd\n"
                                             "    metrics_path: /v1/metrics\n"
                                             "    static_configs:\n"
                                             "      - targets: ['"
                                          << target << "']\n";
    BERTH_ASSIGN_OR_RETURN(
        server->process_,
        ChildProcess::Start(
            {.argv = {kPrometheus, "--config.file=" + (dir / "prometheus.yml").string(),
                      "--storage.tsdb.path=" + (dir / "data").string(),
                      fmt::format("--web.listen-address=127.0.0.1:{}", server->port_),
                      "--log.level=warn"},
             .log_file = dir / "prometheus.log"}));
    BERTH_RETURN_IF_ERROR(berth::testing::WaitForHttp(
        fmt::format("http://127.0.0.1:{}/-/ready", server->port_), std::chrono::seconds(60)));
    return server;
  }

  // The value of the one series `query` selects now, or nullopt (none yet, or an error).
  std::optional<double> Query(const std::string& query) const {
    Result<berth::testing::HttpFetchResponse> response =
        berth::testing::HttpFetch({.url = fmt::format("http://127.0.0.1:{}/api/v1/query?query={}",
                                                      port_, QueryEscape(query))});
    if (!response || response->status != 200) return std::nullopt;
    nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
    if (body.is_discarded() || body["status"] != "success") return std::nullopt;
    const nlohmann::json& result = body["data"]["result"];
    if (!result.is_array() || result.size() != 1) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  std::string ReadLog() const { return process_->ReadLog(); }

 private:
  PrometheusServer() = default;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

TEST_F(MetricsTest, PrometheusScrapesThePullCountAndBytes) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PrometheusServer> prometheus,
      PrometheusServer::Start(dir_.Join("prometheus"), fmt::format("127.0.0.1:{}", metrics_port_)));
  // Scraped before the pull: berthd is up and has pulled nothing.
  ASSERT_TRUE(WaitUntil([&] { return prometheus->Query("up{job=\"berthd\"}") == 1.0; }))
      << prometheus->ReadLog();
  EXPECT_EQ(prometheus->Query("berth_pulls_total{code=\"OK\"}"), 0.0);

  ASSERT_NO_FATAL_FAILURE(Pull());

  const std::string host = registry_->host();
  auto fetched = [&](std::string_view kind) {
    return fmt::format("berth_registry_fetched_bytes_total{{host=\"{}\",kind=\"{}\"}}", host, kind);
  };
  ASSERT_TRUE(WaitUntil([&] {
    return prometheus->Query("berth_pulls_total{code=\"OK\",snapshotter=\"native\"}") == 1.0 &&
           prometheus->Query(fetched("layer")).has_value();
  })) << prometheus->ReadLog();
  EXPECT_EQ(prometheus->Query(fetched("layer")), static_cast<double>(LayerBytes()));
  EXPECT_EQ(prometheus->Query(fetched("config")), static_cast<double>(image_->config.size));
  EXPECT_EQ(prometheus->Query(fetched("manifest")), static_cast<double>(image_->manifest.size));
  EXPECT_EQ(prometheus->Query("berth_pull_duration_seconds_count"), 1.0);
  EXPECT_EQ(prometheus->Query("berth_pulls_in_flight"), 0.0);
  EXPECT_EQ(
      prometheus->Query(
          "berth_grpc_requests_total{method=\"PullImage\",service=\"runtime.v1.ImageService\"}"),
      1.0);
  EXPECT_EQ(prometheus->Query("berth_layer_unpack_duration_seconds_count"),
            static_cast<double>(image_->layers.size()));
  uint64_t uncompressed = 0;
  for (const auto& layer : image_->layers) uncompressed += layer.uncompressed_size;
  EXPECT_EQ(prometheus->Query("berth_layer_unpacked_bytes_total"),
            static_cast<double>(uncompressed));
}

}  // namespace
}  // namespace berth
