// berthd end to end: the built daemon on a temp root and socket, real registries
// (docker-registry, plain and token auth), and a gRPC client speaking CRI runtime.v1 and
// runtime.v1alpha2 through the generated stubs, as kubelet and crictl would.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "berth/service/test_images.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "berth/testing/child_process.h"
#include "berth/testing/temp_dir.h"
#include "berth/testing/test_registry.h"
#include "proto/runtime/v1/api.grpc.pb.h"
#include "proto/runtime/v1alpha2/api.grpc.pb.h"

namespace berth {
namespace {

using berth::testing::ChildProcess;
using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using berth::testing::TestRegistryOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

namespace v1 = ::runtime::v1;
namespace v1alpha2 = ::runtime::v1alpha2;

std::unique_ptr<grpc::ClientContext> Call(std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
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
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete token_registry_;
    delete image_a_;
    delete image_b_;
  }

  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("cri");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    std::ofstream(dir_->path() / "config.toml")
        << "[pull]\nsnapshotter = \""
        << (snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native")
        << "\"\n";
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
  }

  std::string socket() const { return (dir_->path() / "run" / "berth.sock").string(); }

  void StartDaemon() {
    auto daemon = ChildProcess::Start(
        {.argv = {BERTHD_PATH, "--config", (dir_->path() / "config.toml").string(), "--root",
                  (dir_->path() / "root").string(), "--state", (dir_->path() / "state").string(),
                  "--address", "unix://" + socket(), "--log-level", "info"},
         .log_file = dir_->path() / "berthd.log"});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
    channel_ = grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials());
    auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(20);
    while (!channel_->WaitForConnected(std::chrono::system_clock::now() +
                                       std::chrono::milliseconds(200))) {
      ASSERT_TRUE(daemon_->Running()) << daemon_->ReadLog();
      ASSERT_LT(std::chrono::system_clock::now(), deadline) << daemon_->ReadLog();
    }
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

  grpc::Status PullV1(const std::string& image, v1::PullImageResponse* response,
                      const v1::AuthConfig* auth = nullptr) {
    v1::PullImageRequest request;
    request.mutable_image()->set_image(image);
    if (auth != nullptr) *request.mutable_auth() = *auth;
    request.mutable_sandbox_config()->mutable_metadata()->set_name("pod");
    return v1_->PullImage(Call().get(), request, response);
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
  std::optional<berth::testing::TempDir> dir_;
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
  wrong.set_password("not-the-password");
  grpc::Status refused = PullV1(reference, &response, &wrong);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), Not(HasSubstr("not-the-password")));

  v1::AuthConfig right;
  right.set_username(token_registry_->username());
  right.set_password(token_registry_->password().reveal());
  grpc::Status pulled = PullV1(reference, &response, &right);
  ASSERT_TRUE(pulled.ok()) << pulled.error_message();
  EXPECT_EQ(response.image_ref(), image_a_->config.digest.ToString());
  EXPECT_THAT(daemon_->ReadLog(), Not(HasSubstr(token_registry_->password().reveal())));
  EXPECT_THAT(daemon_->ReadLog(), Not(HasSubstr("not-the-password")));
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
  auto second = ChildProcess::Start(
      {.argv = {BERTHD_PATH, "--config", (dir_->path() / "config.toml").string(), "--root",
                (dir_->path() / "root").string(), "--address",
                "unix://" + (dir_->path() / "other.sock").string()},
       .log_file = dir_->path() / "second.log"});
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

}  // namespace
}  // namespace berth
