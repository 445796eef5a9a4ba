// berthd end to end: the built daemon on a temp root and socket, real registries
// (docker-registry, plain and token auth), and a gRPC client speaking CRI runtime.v1 and
// runtime.v1alpha2 through the generated stubs, as kubelet and crictl would.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "berth/base/base64.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "proto/runtime/v1alpha2/api.grpc.pb.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/fault_proxy.h"
#include "testing/run_command.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::ProxiedRequest;
using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using berth::testing::TestRegistryOptions;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;

namespace v1 = ::runtime::v1;

// A wrong password that is still a sentinel: the hygiene check fails a test where it leaks.
const std::string kWrongPassword = berth::testing::SentinelSecret("wrong-cri-password");
namespace v1alpha2 = ::runtime::v1alpha2;

std::unique_ptr<grpc::ClientContext> Call(std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// Polls `done` every 50 ms until it holds; false after `limit`. The limit only bounds a broken
// build's wait: tests wait for events, never for time to pass.
bool WaitUntil(const std::function<bool()>& done,
               std::chrono::seconds limit = std::chrono::seconds(60)) {
  auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// An image of one layer holding `bytes` of incompressible data (seeded, so the same each run).
Result<imagegen::Image> MakeRandomImage(size_t bytes, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; i += sizeof(uint64_t)) {
    uint64_t value = random();
    std::memcpy(data.data() + i, &value, std::min(sizeof(value), bytes - i));
  }
  imagegen::FileTree tree;
  tree.AddFile("random.bin", std::move(data));
  BERTH_ASSIGN_OR_RETURN(imagegen::Layer layer, imagegen::BuildLayer(tree));
  imagegen::ImageConfig config;
  config.cmd = {"/random.bin"};
  std::vector<imagegen::Layer> layers;
  layers.push_back(std::move(layer));
  return imagegen::AssembleImage(config, std::move(layers));
}

// The requests a proxy saw for one blob.
std::vector<ProxiedRequest> BlobGets(const FaultProxy& proxy, const imagegen::Descriptor& blob) {
  std::vector<ProxiedRequest> found;
  for (const ProxiedRequest& request : proxy.requests()) {
    if (request.method == "GET" &&
        request.target.find("/blobs/" + blob.digest.ToString()) != std::string::npos) {
      found.push_back(request);
    }
  }
  return found;
}

uint64_t BytesSent(const std::vector<ProxiedRequest>& requests) {
  uint64_t sent = 0;
  for (const ProxiedRequest& request : requests) sent += request.body_bytes_sent;
  return sent;
}

bool AllClientsGone(const std::vector<ProxiedRequest>& requests) {
  return std::all_of(requests.begin(), requests.end(),
                     [](const ProxiedRequest& request) { return request.client_gone; });
}

class CriTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = registry->release();
    TestRegistryOptions token_options{.mode = TestRegistryMode::kTokenAuth, .log_level = "warn"};
    token_options.token.allow_anonymous = false;
    auto token_registry = TestRegistry::Start(std::move(token_options));
    ASSERT_TRUE(token_registry) << token_registry.error().ToString();
    token_registry_ = token_registry->release();

    auto a = service::testing::MakeTestImage("a");
    auto b = service::testing::MakeTestImage("b");
    ASSERT_TRUE(a && b);
    image_a_ = new imagegen::Image(std::move(*a));
    image_b_ = new imagegen::Image(std::move(*b));
    for (auto [tag, image] : {std::pair{"a", image_a_}, std::pair{"b", image_b_}}) {
      auto pushed = service::testing::PushTestImage(registry_->url(), "test/img", tag, *image);
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
    auto pushed =
        service::testing::PushTestImage(token_registry_->url(), "team/app", "token", *image_a_,
                                        token_registry_->username(), token_registry_->password());
    ASSERT_TRUE(pushed) << pushed.error().ToString();

    auto c = service::testing::MakeTestImage("c");
    ASSERT_TRUE(c) << c.error().ToString();
    image_c_ = new imagegen::Image(std::move(*c));
    pushed = service::testing::PushTestImage(registry_->url(), "test/img", "c", *image_c_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
    // 4 MiB: dripped at 80 KiB/s by the tests' proxies, a pull of it takes the better part of
    // a minute, so it is reliably still downloading when a test interrupts it.
    auto big = MakeRandomImage(4 << 20, 1);
    ASSERT_TRUE(big) << big.error().ToString();
    big_ = new imagegen::Image(std::move(*big));
    pushed = service::testing::PushTestImage(registry_->url(), "test/big", "1", *big_);
    ASSERT_TRUE(pushed) << pushed.error().ToString();
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete token_registry_;
    delete image_a_;
    delete image_b_;
    delete image_c_;
    delete big_;
  }

  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("cri");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    root_ = dir_->path() / "root";
    WriteConfig();
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
  }

  void TearDown() override {
    if (mounted_) {
      // The daemon goes first: it holds files on the mount.
      if (daemon_) daemon_->Stop(std::chrono::seconds(20));
      ::umount2(mounted_->c_str(), MNT_DETACH);
    }
  }

  static std::string SnapshotterName() {
    return snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native";
  }

  // config.toml: the snapshotter, then `pull_section` (lines of the [pull] table).
  void WriteConfig(const std::string& pull_section = {}) {
    std::ofstream(dir_->path() / "config.toml")
        << "[pull]\nsnapshotter = \"" << SnapshotterName() << "\"\n"
        << pull_section;
  }

  std::string socket() const { return (dir_->path() / "run" / "berth.sock").string(); }

  void StartDaemon(const std::vector<std::string>& extra_args = {}) {
    auto daemon = berth::testing::StartBerthd({.config_file = dir_->path() / "config.toml",
                                               .root = root_,
                                               .state = dir_->path() / "state",
                                               .socket = socket(),
                                               .extra_args = extra_args,
                                               .log_file = dir_->path() / "berthd.log"});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
    channel_ = grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(
        channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)))
        << daemon_->ReadLog();
    v1_ = v1::ImageService::NewStub(channel_);
    v1alpha2_ = v1alpha2::ImageService::NewStub(channel_);
  }

  // SIGTERM, and the daemon must exit 0.
  void StopDaemon() {
    v1_.reset();
    v1alpha2_.reset();
    channel_.reset();
    berth::testing::ExitStatus status = daemon_->Stop(std::chrono::seconds(20));
    EXPECT_TRUE(status.success()) << status.ToString() << "\n" << daemon_->ReadLog();
  }

  std::string Ref(std::string_view tag) const {
    return registry_->host() + "/test/img:" + std::string(tag);
  }

  static v1::PullImageRequest PullRequestV1(const std::string& image) {
    v1::PullImageRequest request;
    request.mutable_image()->set_image(image);
    request.mutable_sandbox_config()->mutable_metadata()->set_name("pod");
    return request;
  }

  grpc::Status PullV1(const std::string& image, v1::PullImageResponse* response,
                      const v1::AuthConfig* auth = nullptr) {
    v1::PullImageRequest request = PullRequestV1(image);
    if (auth != nullptr) *request.mutable_auth() = *auth;
    grpc::Status status = v1_->PullImage(Call().get(), request, response);
    // Checked for sentinel credentials at the end of the test (test/hygiene).
    berth::testing::NoteProductOutput("gRPC status", status.error_message());
    return status;
  }

  // A proxy in front of the plain registry that drips the big image's layer at 80 KiB/s.
  std::unique_ptr<FaultProxy> StartDrippingProxy() {
    auto proxy = FaultProxy::Start(registry_->host());
    EXPECT_TRUE(proxy) << proxy.error().ToString();
    if (!proxy) return nullptr;
    auto rule = (*proxy)->AddRule(
        {.method = "GET",
         .target_contains = big_->layers[0].blob.digest.ToString(),
         .action = FaultAction::SlowDrip(8 << 10, std::chrono::milliseconds(100))});
    EXPECT_TRUE(rule) << rule.error().ToString();
    return std::move(*proxy);
  }

  // Waits until berthd has logged the end of a request (its handler returned).
  bool WaitForRequestLogged(const std::string& method, const std::string& reference) {
    return WaitUntil([&] {
      return daemon_->ReadLog().find("cri.request method=" + method + " ref=" + reference + " ") !=
             std::string::npos;
    });
  }

  std::string RequestLine(const std::string& method, const std::string& reference) {
    std::string log = daemon_->ReadLog();
    size_t at = log.find("cri.request method=" + method + " ref=" + reference + " ");
    if (at == std::string::npos) return {};
    return log.substr(at, log.find('\n', at) - at);
  }

  std::string MustPullV1(const std::string& image) {
    v1::PullImageResponse response;
    grpc::Status status = PullV1(image, &response);
    EXPECT_TRUE(status.ok()) << status.error_message() << "\n" << daemon_->ReadLog();
    return response.image_ref();
  }

  std::vector<v1::Image> ListV1(const std::string& filter = {}) {
    v1::ListImagesRequest request;
    if (!filter.empty()) request.mutable_filter()->mutable_image()->set_image(filter);
    v1::ListImagesResponse response;
    grpc::Status status = v1_->ListImages(Call().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.images().begin(), response.images().end()};
  }

  v1::ImageStatusResponse StatusV1(const std::string& image, bool verbose = false) {
    v1::ImageStatusRequest request;
    request.mutable_image()->set_image(image);
    request.set_verbose(verbose);
    v1::ImageStatusResponse response;
    grpc::Status status = v1_->ImageStatus(Call().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status RemoveV1(const std::string& image) {
    v1::RemoveImageRequest request;
    request.mutable_image()->set_image(image);
    v1::RemoveImageResponse response;
    return v1_->RemoveImage(Call().get(), request, &response);
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline TestRegistry* token_registry_ = nullptr;
  static inline imagegen::Image* image_a_ = nullptr;
  static inline imagegen::Image* image_b_ = nullptr;
  static inline imagegen::Image* image_c_ = nullptr;
  static inline imagegen::Image* big_ = nullptr;
  std::optional<berth::testing::TempDir> dir_;
  std::filesystem::path root_;
  std::optional<std::filesystem::path> mounted_;  // a filesystem the test mounted, if any
  std::unique_ptr<ChildProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ImageService::Stub> v1_;
  std::unique_ptr<v1alpha2::ImageService::Stub> v1alpha2_;
};

TEST_F(CriTest, SocketIsGroupAccessibleOnly) {
  struct stat st {};
  ASSERT_EQ(::stat(socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(CriTest, PullListStatusRemoveV1) {
  std::string id_a = MustPullV1(Ref("a"));
  EXPECT_EQ(id_a, image_a_->config.digest.ToString());
  std::string id_b = MustPullV1(Ref("b"));

  EXPECT_EQ(ListV1().size(), 2u);
  std::vector<v1::Image> by_tag = ListV1(Ref("a"));
  ASSERT_EQ(by_tag.size(), 1u);
  EXPECT_EQ(by_tag[0].id(), id_a);
  EXPECT_THAT(by_tag[0].repo_tags(), ElementsAre(Ref("a")));
  EXPECT_THAT(by_tag[0].repo_digests(),
              ElementsAre(registry_->host() + "/test/img@" + image_a_->manifest.digest.ToString()));
  ASSERT_EQ(ListV1(id_b.substr(7, 12)).size(), 1u);
  EXPECT_EQ(ListV1(id_b.substr(7, 12))[0].id(), id_b);
  EXPECT_THAT(ListV1("docker.io/library/absent:1"), IsEmpty());

  v1::ImageStatusResponse status = StatusV1(Ref("a"), /*verbose=*/true);
  ASSERT_TRUE(status.has_image());
  EXPECT_EQ(status.image().id(), id_a);
  ASSERT_TRUE(status.image().has_uid());
  EXPECT_EQ(status.image().uid().value(), 1000);
  int64_t size = image_a_->manifest.size + image_a_->config.size;
  for (const auto& layer : image_a_->layers) size += layer.blob.size;
  EXPECT_EQ(status.image().size(), static_cast<uint64_t>(size));
  EXPECT_FALSE(status.image().pinned());
  ASSERT_TRUE(status.info().contains("info"));
  auto info = nlohmann::json::parse(status.info().at("info"));
  EXPECT_TRUE(info["chainID"].get<std::string>().starts_with("sha256:"));
  EXPECT_EQ(info["imageSpec"]["config"]["User"], "1000:1000");
  EXPECT_FALSE(info["snapshotter"].get<std::string>().empty());
  EXPECT_TRUE(StatusV1(Ref("a")).info().empty());  // info only when verbose

  v1::ImageStatusResponse b = StatusV1(id_b);
  ASSERT_TRUE(b.has_image());
  EXPECT_FALSE(b.image().has_uid());
  EXPECT_EQ(b.image().username(), "nobody");

  // Remove A by tag: all of A's names go; B, which shares A's base layer, is untouched.
  ASSERT_TRUE(RemoveV1(Ref("a")).ok());
  EXPECT_FALSE(StatusV1(id_a).has_image());
  EXPECT_FALSE(StatusV1(image_a_->manifest.digest.ToString()).has_image());
  std::vector<v1::Image> left = ListV1();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id(), id_b);
  EXPECT_TRUE(StatusV1(Ref("b"), true).has_image());
  // Unknown images: success (idempotent).
  EXPECT_TRUE(RemoveV1(Ref("a")).ok());
  EXPECT_TRUE(RemoveV1("docker.io/library/never-pulled:1").ok());
  // A comes back on a re-pull, reusing the shared base layer.
  EXPECT_EQ(MustPullV1(Ref("a")), id_a);

  std::string log = daemon_->ReadLog();
  EXPECT_THAT(log, HasSubstr("cri.request method=PullImage ref=" + Ref("a")));
  EXPECT_THAT(log, HasSubstr("code=OK"));
}

// ListImages' filter over CRI: a repository without tag or digest (`crictl images <repo>`)
// lists every image with a tag or digest in it, a tag that tag, a digest that digest, an image
// ID prefix that image.
TEST_F(CriTest, ListImagesFiltersByRepositoryTagDigestOrId) {
  std::string id_a = MustPullV1(Ref("a"));
  std::string id_b = MustPullV1(Ref("b"));
  auto ids = [&](const std::string& filter) {
    std::vector<std::string> found;
    for (const v1::Image& image : ListV1(filter)) found.push_back(image.id());
    std::sort(found.begin(), found.end());
    return found;
  };
  std::vector<std::string> both = {id_a, id_b};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(ids(registry_->host() + "/test/img"), both);
  EXPECT_THAT(ids(Ref("b")), ElementsAre(id_b));
  EXPECT_THAT(ids(registry_->host() + "/test/img@" + image_a_->manifest.digest.ToString()),
              ElementsAre(id_a));
  EXPECT_THAT(ids(id_b.substr(7, 12)), ElementsAre(id_b));
  EXPECT_THAT(ids(registry_->host() + "/test/other"), IsEmpty());
}

TEST_F(CriTest, V1alpha2ServesTheSameImages) {
  v1alpha2::PullImageRequest pull;
  pull.mutable_image()->set_image(Ref("b"));
  v1alpha2::PullImageResponse pulled;
  grpc::Status status = v1alpha2_->PullImage(Call().get(), pull, &pulled);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(pulled.image_ref(), image_b_->config.digest.ToString());

  v1alpha2::ListImagesRequest list;
  list.mutable_filter()->mutable_image()->set_image(Ref("b"));
  v1alpha2::ListImagesResponse listed;
  ASSERT_TRUE(v1alpha2_->ListImages(Call().get(), list, &listed).ok());
  ASSERT_EQ(listed.images_size(), 1);
  EXPECT_EQ(listed.images(0).username(), "nobody");

  v1alpha2::ImageStatusRequest status_request;
  status_request.mutable_image()->set_image(pulled.image_ref());
  status_request.set_verbose(true);
  v1alpha2::ImageStatusResponse image_status;
  ASSERT_TRUE(v1alpha2_->ImageStatus(Call().get(), status_request, &image_status).ok());
  EXPECT_THAT(image_status.image().repo_tags(), ElementsAre(Ref("b")));
  EXPECT_TRUE(image_status.info().contains("info"));
  // The same image through v1.
  EXPECT_EQ(StatusV1(Ref("b")).image().id(), pulled.image_ref());

  v1alpha2::ImageFsInfoResponse fs;
  ASSERT_TRUE(v1alpha2_->ImageFsInfo(Call().get(), v1alpha2::ImageFsInfoRequest(), &fs).ok());
  ASSERT_GE(fs.image_filesystems_size(), 1);
  EXPECT_FALSE(fs.image_filesystems(0).fs_id().mountpoint().empty());
  EXPECT_GT(fs.image_filesystems(0).used_bytes().value(), 0u);
  EXPECT_GT(fs.image_filesystems(0).inodes_used().value(), 0u);
  EXPECT_GT(fs.image_filesystems(0).timestamp(), 0);

  v1alpha2::RemoveImageRequest remove;
  remove.mutable_image()->set_image(Ref("b"));
  v1alpha2::RemoveImageResponse removed;
  ASSERT_TRUE(v1alpha2_->RemoveImage(Call().get(), remove, &removed).ok());
  EXPECT_FALSE(StatusV1(Ref("b")).has_image());
}

TEST_F(CriTest, AuthConfigReachesTheTokenRegistry) {
  const std::string reference = token_registry_->host() + "/team/app:token";
  v1::PullImageResponse response;
  grpc::Status anonymous = PullV1(reference, &response);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED) << anonymous.error_message();

  v1::AuthConfig wrong;
  wrong.set_username(token_registry_->username());
  wrong.set_password(kWrongPassword);
  grpc::Status refused = PullV1(reference, &response, &wrong);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), Not(HasSubstr(kWrongPassword)));

  v1::AuthConfig right;
  right.set_username(token_registry_->username());
  right.set_password(token_registry_->password().reveal());
  grpc::Status pulled = PullV1(reference, &response, &right);
  ASSERT_TRUE(pulled.ok()) << pulled.error_message();
  EXPECT_EQ(response.image_ref(), image_a_->config.digest.ToString());
  EXPECT_THAT(daemon_->ReadLog(), Not(HasSubstr(token_registry_->password().reveal())));
  EXPECT_THAT(daemon_->ReadLog(), Not(HasSubstr(kWrongPassword)));

  // Docker's `auth` field (base64 of user:password), wrong and right.
  v1::AuthConfig wrong_auth;
  wrong_auth.set_auth(Base64Encode(token_registry_->username() + ":" + kWrongPassword));
  grpc::Status refused_auth = PullV1(reference, &response, &wrong_auth);
  EXPECT_EQ(refused_auth.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << refused_auth.error_message();
  v1::AuthConfig right_auth;
  right_auth.set_auth(
      Base64Encode(token_registry_->username() + ":" + token_registry_->password().reveal()));
  grpc::Status pulled_auth = PullV1(reference, &response, &right_auth);
  EXPECT_TRUE(pulled_auth.ok()) << pulled_auth.error_message();
}

TEST_F(CriTest, ErrorCodes) {
  v1::PullImageResponse response;
  EXPECT_EQ(PullV1("Not A Reference", &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status missing = PullV1(Ref("missing"), &response);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << missing.error_message();
  EXPECT_THAT(missing.error_message(), HasSubstr("test/img:missing"));
  // Port 1 on loopback: nothing listens there.
  grpc::Status unreachable = PullV1("127.0.0.1:1/test/img:a", &response);
  EXPECT_EQ(unreachable.error_code(), grpc::StatusCode::UNAVAILABLE) << unreachable.error_message();
  // A missing image is an empty status, not an error.
  EXPECT_FALSE(StatusV1("docker.io/library/absent:1").has_image());
  EXPECT_THAT(daemon_->ReadLog(), HasSubstr("code=NOT_FOUND"));
}

TEST_F(CriTest, RestartKeepsEveryImageAndSigtermExitsZero) {
  std::string id_a = MustPullV1(Ref("a"));
  std::string id_b = MustPullV1(Ref("b"));
  std::vector<v1::Image> before = ListV1();
  ASSERT_EQ(before.size(), 2u);
  ASSERT_NO_FATAL_FAILURE(StopDaemon());
  EXPECT_THAT(daemon_->ReadLog(), HasSubstr("berthd.stopped"));
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::vector<v1::Image> after = ListV1();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].SerializeAsString(), before[i].SerializeAsString()) << after[i].id();
  }
}

TEST_F(CriTest, SecondDaemonOnTheSameRootRefuses) {
  auto second = berth::testing::StartBerthd({.config_file = dir_->path() / "config.toml",
                                             .root = dir_->path() / "root",
                                             .socket = dir_->path() / "other.sock",
                                             .log_level = "",
                                             .log_file = dir_->path() / "second.log",
                                             .wait = berth::testing::BerthdStartWait::kNone});
  ASSERT_TRUE(second);
  auto status = (*second)->WaitForExit(std::chrono::seconds(20));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->exit_code, 1);
  EXPECT_THAT((*second)->ReadLog(), HasSubstr("another berthd"));
}

TEST_F(CriTest, ClientDeadlineStopsThePull) {
  v1::PullImageRequest request;
  request.mutable_image()->set_image(Ref("a"));
  v1::PullImageResponse response;
  // Too short for any pull: the client gives up, and the daemon must stay healthy.
  grpc::Status status = v1_->PullImage(Call(std::chrono::seconds(0)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(MustPullV1(Ref("a")), image_a_->config.digest.ToString());
}

// The client gives up while the layer is downloading: the daemon's pull stops (its download
// connection closes long before the blob's end, its request ends CANCELLED), no image is
// reported, and a later pull completes (resuming the partial download).
TEST_F(CriTest, ClientCancellationMidPullStopsTheDownload) {
  std::unique_ptr<FaultProxy> proxy = StartDrippingProxy();
  ASSERT_TRUE(proxy);
  const std::string reference = proxy->host() + "/test/big:1";
  const imagegen::Descriptor& layer = big_->layers[0].blob;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
  grpc::Status status;
  std::thread caller([&] {
    v1::PullImageResponse response;
    status = v1_->PullImage(&context, PullRequestV1(reference), &response);
  });
  bool downloading = WaitUntil([&] { return BytesSent(BlobGets(*proxy, layer)) > 0; });
  context.TryCancel();
  caller.join();
  ASSERT_TRUE(downloading) << daemon_->ReadLog();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();

  ASSERT_TRUE(WaitForRequestLogged("PullImage", reference)) << daemon_->ReadLog();
  EXPECT_THAT(RequestLine("PullImage", reference), HasSubstr("code=CANCELLED"));
  EXPECT_TRUE(WaitUntil([&] { return AllClientsGone(BlobGets(*proxy, layer)); }))
      << "berthd kept downloading after the client cancelled";
  EXPECT_LT(BytesSent(BlobGets(*proxy, layer)), static_cast<uint64_t>(layer.size));
  EXPECT_FALSE(StatusV1(reference).has_image());
  EXPECT_THAT(ListV1(), IsEmpty());

  proxy->ClearRules();
  EXPECT_EQ(MustPullV1(reference), big_->config.digest.ToString());
  EXPECT_TRUE(StatusV1(reference).has_image());
}

// The same when the client's deadline passes mid-pull: the client sees DEADLINE_EXCEEDED and
// the daemon's pull stops.
TEST_F(CriTest, ClientDeadlineMidPullStopsTheDownload) {
  std::unique_ptr<FaultProxy> proxy = StartDrippingProxy();
  ASSERT_TRUE(proxy);
  const std::string reference = proxy->host() + "/test/big:1";
  const imagegen::Descriptor& layer = big_->layers[0].blob;
  v1::PullImageResponse response;
  // The whole blob takes about 50 s through the proxy.
  grpc::Status status =
      v1_->PullImage(Call(std::chrono::seconds(3)).get(), PullRequestV1(reference), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();

  ASSERT_TRUE(WaitForRequestLogged("PullImage", reference)) << daemon_->ReadLog();
  EXPECT_THAT(RequestLine("PullImage", reference),
              AnyOf(HasSubstr("code=DEADLINE_EXCEEDED"), HasSubstr("code=CANCELLED")));
  EXPECT_TRUE(WaitUntil([&] { return AllClientsGone(BlobGets(*proxy, layer)); }))
      << "berthd kept downloading after the deadline";
  EXPECT_LT(BytesSent(BlobGets(*proxy, layer)), static_cast<uint64_t>(layer.size));
  EXPECT_FALSE(StatusV1(reference).has_image());

  proxy->ClearRules();
  EXPECT_EQ(MustPullV1(reference), big_->config.digest.ToString());
}

// SIGTERM while a pull outlasts the grace period: berthd cancels it and exits 0, the client
// gets an error, nothing half-pulled is reported after a restart, and a re-pull works.
TEST_F(CriTest, SigtermDuringAPullCancelsItAfterTheGracePeriod) {
  StopDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--grace-period", "1"}));
  std::unique_ptr<FaultProxy> proxy = StartDrippingProxy();
  ASSERT_TRUE(proxy);
  const std::string reference = proxy->host() + "/test/big:1";
  const imagegen::Descriptor& layer = big_->layers[0].blob;
  grpc::Status status;
  std::thread caller([&] {
    v1::PullImageResponse response;
    status =
        v1_->PullImage(Call(std::chrono::seconds(300)).get(), PullRequestV1(reference), &response);
  });
  bool downloading = WaitUntil([&] { return BytesSent(BlobGets(*proxy, layer)) > 0; });
  // SIGTERM; SIGKILL only if berthd is still there after 60 s (a hang, which fails below).
  berth::testing::ExitStatus exit = daemon_->Stop(std::chrono::seconds(60));
  caller.join();
  ASSERT_TRUE(downloading) << daemon_->ReadLog();
  EXPECT_TRUE(exit.success()) << exit.ToString() << "\n" << daemon_->ReadLog();
  EXPECT_THAT(daemon_->ReadLog(), HasSubstr("berthd.stopped"));
  EXPECT_THAT(status.error_code(),
              AnyOf(grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::CANCELLED))
      << status.error_message();
  // The proxy notices at its next write to the closed connection.
  EXPECT_TRUE(WaitUntil([&] { return AllClientsGone(BlobGets(*proxy, layer)); }));
  EXPECT_LT(BytesSent(BlobGets(*proxy, layer)), static_cast<uint64_t>(layer.size));

  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  EXPECT_FALSE(StatusV1(reference).has_image());
  EXPECT_THAT(ListV1(), IsEmpty());
  proxy->ClearRules();
  EXPECT_EQ(MustPullV1(reference), big_->config.digest.ToString());
}

// SIGTERM while a pull that fits in the grace period runs: berthd stops accepting but lets it
// finish, then exits 0; the image is there after a restart.
TEST_F(CriTest, SigtermLetsAnInFlightPullFinishWithinTheGracePeriod) {
  StopDaemon();
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--grace-period", "120"}));
  auto proxy = FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  const imagegen::Descriptor& layer = image_a_->layers[1].blob;
  // The layer's answer waits 2 s, so the pull is surely in flight when SIGTERM arrives.
  ASSERT_TRUE((*proxy)->AddRule({.method = "GET",
                                 .target_contains = layer.digest.ToString(),
                                 .action = FaultAction::Delay(std::chrono::seconds(2))}));
  const std::string reference = (*proxy)->host() + "/test/img:a";
  grpc::Status status;
  v1::PullImageResponse response;
  std::thread caller([&] {
    status =
        v1_->PullImage(Call(std::chrono::seconds(300)).get(), PullRequestV1(reference), &response);
  });
  bool in_flight = WaitUntil([&] { return !BlobGets(**proxy, layer).empty(); });
  berth::testing::ExitStatus exit = daemon_->Stop(std::chrono::seconds(180));
  caller.join();
  ASSERT_TRUE(in_flight) << daemon_->ReadLog();
  EXPECT_TRUE(exit.success()) << exit.ToString() << "\n" << daemon_->ReadLog();
  ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << daemon_->ReadLog();
  EXPECT_EQ(response.image_ref(), image_a_->config.digest.ToString());
  EXPECT_THAT(daemon_->ReadLog(), HasSubstr("berthd.stopping"));

  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  EXPECT_TRUE(StatusV1(reference).has_image());
}

// The registry serves a layer whose bytes do not match its digest: DATA_LOSS, naming the
// reference and the registry; nothing is reported, and the pull works once the bytes are right.
TEST_F(CriTest, CorruptBlobIsDataLoss) {
  auto proxy = FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  const imagegen::Descriptor& layer = image_a_->layers[0].blob;
  ASSERT_TRUE((*proxy)->AddRule({.method = "GET",
                                 .target_contains = layer.digest.ToString(),
                                 .action = FaultAction::CorruptByteAt(layer.size / 2)}));
  const std::string reference = (*proxy)->host() + "/test/img:a";
  v1::PullImageResponse response;
  grpc::Status corrupt = PullV1(reference, &response);
  EXPECT_EQ(corrupt.error_code(), grpc::StatusCode::DATA_LOSS) << corrupt.error_message();
  EXPECT_THAT(corrupt.error_message(), HasSubstr(reference));
  EXPECT_THAT(corrupt.error_message(), HasSubstr((*proxy)->host()));
  EXPECT_FALSE(StatusV1(reference).has_image());
  EXPECT_THAT(ListV1(), IsEmpty());

  (*proxy)->ClearRules();
  EXPECT_EQ(MustPullV1(reference), image_a_->config.digest.ToString());
}

// Every code a failed pull maps to names the reference and the registry endpoint.
TEST_F(CriTest, ErrorMessagesNameTheReferenceAndEndpoint) {
  v1::PullImageResponse response;
  grpc::Status missing = PullV1(Ref("missing"), &response);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(missing.error_message(), HasSubstr(Ref("missing")));
  EXPECT_THAT(missing.error_message(), HasSubstr(registry_->host()));

  grpc::Status unreachable = PullV1("127.0.0.1:1/test/img:a", &response);
  EXPECT_EQ(unreachable.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(unreachable.error_message(), HasSubstr("127.0.0.1:1/test/img:a"));
  // A loopback host on an ambiguous port is tried over https first (containerd's rule); a
  // refused connection is not a reason to fall back to plain http.
  EXPECT_THAT(unreachable.error_message(), HasSubstr("https://127.0.0.1:1"));

  const std::string reference = token_registry_->host() + "/team/app:token";
  v1::AuthConfig wrong;
  wrong.set_username(token_registry_->username());
  wrong.set_password(kWrongPassword);
  grpc::Status refused = PullV1(reference, &response, &wrong);
  EXPECT_THAT(refused.error_code(),
              AnyOf(grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_THAT(refused.error_message(), HasSubstr(reference));
  EXPECT_THAT(refused.error_message(), HasSubstr(token_registry_->host()));
  EXPECT_THAT(refused.error_message(), Not(HasSubstr(kWrongPassword)));

  // A digest reference reads name@digest in every part of the message, never name:digest.
  const std::string absent = "sha256:" + std::string(64, '0');
  grpc::Status by_digest = PullV1(registry_->host() + "/test/img@" + absent, &response);
  EXPECT_EQ(by_digest.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(by_digest.error_message(), HasSubstr("test/img@" + absent));
  EXPECT_THAT(by_digest.error_message(), Not(HasSubstr("test/img:" + absent)));

  grpc::Status invalid = PullV1("Not A Reference", &response);
  EXPECT_EQ(invalid.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(invalid.error_message(), HasSubstr("Not A Reference"));
}

// The root is on an 8 MiB tmpfs and the image needs more: RESOURCE_EXHAUSTED naming where and
// what to do; afterwards nothing is reported and a small image still pulls.
TEST_F(CriTest, FullDiskIsResourceExhaustedAndLeavesTheStoreUsable) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  StopDaemon();
  std::filesystem::path small = dir_->path() / "small-root";
  std::filesystem::create_directories(small);
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=8m,mode=0700"), 0)
      << std::strerror(errno);
  mounted_ = small;
  root_ = small;
  // No free-space reserve (the default, 1 GiB at least, exceeds the filesystem): this test is
  // about the disk filling up.
  WriteConfig("min_free_space = \"0\"\n");
  ASSERT_NO_FATAL_FAILURE(StartDaemon());

  auto huge = MakeRandomImage(12 << 20, 2);
  ASSERT_TRUE(huge) << huge.error().ToString();
  auto pushed = service::testing::PushTestImage(registry_->url(), "test/huge", "1", *huge);
  ASSERT_TRUE(pushed) << pushed.error().ToString();
  const std::string reference = registry_->host() + "/test/huge:1";
  v1::PullImageResponse response;
  grpc::Status full = PullV1(reference, &response);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << full.error_message();
  EXPECT_THAT(full.error_message(), HasSubstr(reference));
  EXPECT_THAT(full.error_message(), HasSubstr(small.string()));
  EXPECT_THAT(full.error_message(), HasSubstr("free space"));
  EXPECT_FALSE(StatusV1(reference).has_image());
  EXPECT_THAT(ListV1(), IsEmpty());

  EXPECT_EQ(MustPullV1(Ref("a")), image_a_->config.digest.ToString());
  EXPECT_TRUE(StatusV1(Ref("a")).has_image());
}

// pinned_images (one exact name, one glob): ImageStatus and ListImages say pinned; CRI
// RemoveImage refuses them, by any name, and they stay; the metadata berth rmi --force sends
// removes them; the CLI's --force removes them through berthd.
TEST_F(CriTest, PinnedImagesAreReportedAndKeptByRemoveImage) {
  StopDaemon();
  WriteConfig("pinned_images = [\"" + Ref("a") + "\", \"*/test/img:b*\"]\n");
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  std::string id_a = MustPullV1(Ref("a"));
  std::string id_b = MustPullV1(Ref("b"));
  std::string id_c = MustPullV1(Ref("c"));

  std::map<std::string, bool> pinned;
  for (const v1::Image& image : ListV1()) pinned[image.id()] = image.pinned();
  EXPECT_EQ(pinned, (std::map<std::string, bool>{{id_a, true}, {id_b, true}, {id_c, false}}));
  EXPECT_TRUE(StatusV1(Ref("a")).image().pinned());
  EXPECT_TRUE(StatusV1(id_b).image().pinned());
  EXPECT_FALSE(StatusV1(Ref("c")).image().pinned());

  for (const std::string& name : {Ref("a"), id_a, id_b.substr(7, 12)}) {
    grpc::Status refused = RemoveV1(name);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << name;
    EXPECT_THAT(refused.error_message(), HasSubstr("pinned"));
  }
  v1alpha2::RemoveImageRequest old_remove;
  old_remove.mutable_image()->set_image(Ref("b"));
  v1alpha2::RemoveImageResponse old_removed;
  EXPECT_EQ(v1alpha2_->RemoveImage(Call().get(), old_remove, &old_removed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(StatusV1(Ref("a")).has_image());
  EXPECT_TRUE(StatusV1(Ref("b")).has_image());
  EXPECT_TRUE(RemoveV1(Ref("c")).ok());
  EXPECT_FALSE(StatusV1(id_c).has_image());

  // The override berth rmi --force sends.
  v1::RemoveImageRequest forced;
  forced.mutable_image()->set_image(Ref("a"));
  v1::RemoveImageResponse forced_response;
  auto context = Call();
  context->AddMetadata("berth-remove-pinned", "true");
  EXPECT_TRUE(v1_->RemoveImage(context.get(), forced, &forced_response).ok());
  EXPECT_FALSE(StatusV1(id_a).has_image());

  // The CLI through this berthd: refused without --force, removed with it.
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {BERTH_CLI_PATH,
                                     "--config",
                                     (dir_->path() / "config.toml").string(),
                                     "--root",
                                     root_.string(),
                                     "--address",
                                     "unix://" + socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = berth::testing::RunCommand(argv, dir_->path());
    EXPECT_TRUE(run) << run.error().ToString();
    return run.value_or(berth::testing::CommandResult{});
  };
  berth::testing::CommandResult refused = cli({"rmi", Ref("b")});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("--force"));
  EXPECT_TRUE(StatusV1(Ref("b")).has_image());
  berth::testing::CommandResult removed = cli({"rmi", "--force", Ref("b")});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(removed.out, "Deleted: " + id_b + "\n");
  EXPECT_FALSE(StatusV1(id_b).has_image());
  EXPECT_THAT(daemon_->ReadLog(), HasSubstr("cri.request method=RemoveImage ref=" + Ref("b")));
}

// Runs `script` with /bin/sh -c and returns its stdout without the trailing newline.
std::string Shell(const std::string& script, const std::filesystem::path& scratch) {
  auto run = berth::testing::RunCommand({"/bin/sh", "-c", script}, scratch);
  EXPECT_TRUE(run) << run.error().ToString();
  if (!run) return {};
  EXPECT_EQ(run->exit_code, 0) << script << "\n" << run->err;
  std::string out = run->out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// ImageFsInfo's figures, checked against an independent count of the same definition: bytes
// allocated (du -B1: st_blocks × 512) and inodes (each counted once) under the snapshot root
// and the content store; the mountpoint is the snapshot root's filesystem's (findmnt). The
// writable layers (active snapshots) live under the snapshot root too, so
// container_filesystems reports the same filesystem.
TEST_F(CriTest, ImageFsInfoFiguresMatchDuAndFindmnt) {
  MustPullV1(Ref("a"));
  MustPullV1(Ref("b"));
  const std::filesystem::path snapshots = root_ / "snapshots" / SnapshotterName();
  const std::filesystem::path content = root_ / "content";
  ASSERT_TRUE(std::filesystem::is_directory(snapshots));
  ASSERT_TRUE(std::filesystem::is_directory(content));
  v1::ImageFsInfoResponse fs;
  ASSERT_TRUE(v1_->ImageFsInfo(Call().get(), v1::ImageFsInfoRequest(), &fs).ok());

  const std::string roots = "'" + snapshots.string() + "' '" + content.string() + "'";
  const uint64_t du_bytes =
      std::stoull(Shell("du -s -c -B1 " + roots + " | tail -n1 | cut -f1", dir_->path()));
  const uint64_t inodes =
      std::stoull(Shell("find " + roots + " -printf '%D:%i\\n' | sort -u | wc -l", dir_->path()));
  const std::string mountpoint =
      Shell("findmnt -n -o TARGET --target '" + snapshots.string() + "'", dir_->path());
  ASSERT_EQ(fs.image_filesystems_size(), 1);  // content and snapshots share the temp dir's fs
  const v1::FilesystemUsage& image_fs = fs.image_filesystems(0);
  EXPECT_EQ(image_fs.fs_id().mountpoint(), mountpoint);
  EXPECT_EQ(image_fs.used_bytes().value(), du_bytes);
  EXPECT_EQ(image_fs.inodes_used().value(), inodes);
  EXPECT_GT(image_fs.timestamp(), 0);

  ASSERT_EQ(fs.container_filesystems_size(), 1);
  EXPECT_EQ(fs.container_filesystems(0).fs_id().mountpoint(), mountpoint);
  EXPECT_EQ(fs.container_filesystems(0).used_bytes().value(), du_bytes);
  EXPECT_EQ(fs.container_filesystems(0).inodes_used().value(), inodes);

  // Removing an image shrinks the figures by what it alone used.
  ASSERT_TRUE(RemoveV1(Ref("a")).ok());
  v1::ImageFsInfoResponse after;
  ASSERT_TRUE(v1_->ImageFsInfo(Call().get(), v1::ImageFsInfoRequest(), &after).ok());
  ASSERT_EQ(after.image_filesystems_size(), 1);
  EXPECT_EQ(after.image_filesystems(0).used_bytes().value(),
            std::stoull(Shell("du -s -c -B1 " + roots + " | tail -n1 | cut -f1", dir_->path())));
  EXPECT_LT(after.image_filesystems(0).inodes_used().value(), inodes);
}

}  // namespace
}  // namespace berth
