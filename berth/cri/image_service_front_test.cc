// Front mode against a fake upstream CRI ImageService served in-process: every call is forwarded
// as it came, the upstream's answer comes back as it went, failures keep the upstream's code and
// name it, deadlines and cancellation reach the upstream, and a pull's credentials are held
// exactly while the upstream works on it.
#include "berth/cri/image_service_front.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "berth/base/log.h"
#include "testing/result_matchers.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"

namespace berth::cri {
namespace {

namespace v1 = runtime::v1;
namespace v1alpha2 = runtime::v1alpha2;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::string_view kEndpoint = "unix:///run/fake-containerd/containerd.sock";
constexpr std::string_view kImageId =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

template <typename Condition>
bool Eventually(Condition condition) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A pull the upstream holds until the test lets it go, and what the upstream saw meanwhile.
struct PullGate {
  std::mutex mutex;
  std::condition_variable changed;
  int in_flight = 0;
  bool release = false;
  bool cancelled_seen = false;
  std::chrono::system_clock::time_point deadline_seen;
  std::string password_seen;
};

// The upstream: canned answers, and pulls that wait at `gate` when it is set.
class FakeUpstreamV1 final : public v1::ImageService::Service {
 public:
  PullGate* gate = nullptr;

  grpc::Status ListImages(grpc::ServerContext*, const v1::ListImagesRequest* request,
                          v1::ListImagesResponse* response) override {
    v1::Image& image = *response->add_images();
    image.set_id(std::string(kImageId));
    image.add_repo_tags("registry.test/app:v1");
    image.set_size(1234);
    last_filter = request->filter().image().image();
    return grpc::Status::OK;
  }
  grpc::Status ImageStatus(grpc::ServerContext*, const v1::ImageStatusRequest* request,
                           v1::ImageStatusResponse* response) override {
    if (request->image().image() != "registry.test/app:v1") return grpc::Status::OK;
    response->mutable_image()->set_id(std::string(kImageId));
    if (request->verbose()) (*response->mutable_info())["info"] = "{\"upstream\":true}";
    return grpc::Status::OK;
  }
  grpc::Status PullImage(grpc::ServerContext* context, const v1::PullImageRequest* request,
                         v1::PullImageResponse* response) override {
    if (request->image().image() == "registry.test/denied:v1") {
      return grpc::Status(grpc::StatusCode::UNKNOWN,
                          "failed to resolve reference: 401 Unauthorized");
    }
    if (gate != nullptr) {
      std::unique_lock lock(gate->mutex);
      gate->password_seen = request->auth().password();
      gate->deadline_seen = context->deadline();
      ++gate->in_flight;
      gate->changed.notify_all();
      while (!gate->release) {
        if (context->IsCancelled()) {
          gate->cancelled_seen = true;
          gate->changed.notify_all();
          return grpc::Status(grpc::StatusCode::CANCELLED, "pull cancelled");
        }
        gate->changed.wait_for(lock, std::chrono::milliseconds(10));
      }
    }
    response->set_image_ref(std::string(kImageId));
    return grpc::Status::OK;
  }
  grpc::Status RemoveImage(grpc::ServerContext*, const v1::RemoveImageRequest* request,
                           v1::RemoveImageResponse*) override {
    removed = request->image().image();
    return grpc::Status::OK;
  }
  grpc::Status ImageFsInfo(grpc::ServerContext*, const v1::ImageFsInfoRequest*,
                           v1::ImageFsInfoResponse* response) override {
    response->add_image_filesystems()->mutable_fs_id()->set_mountpoint("/upstream/snapshots");
    response->add_container_filesystems()->mutable_fs_id()->set_mountpoint("/upstream/rw");
    return grpc::Status::OK;
  }

  std::string last_filter;
  std::string removed;
};

// runtime.v1alpha2 upstream: only ListImages, to see v1alpha2 calls reach v1alpha2.
class FakeUpstreamV1alpha2 final : public v1alpha2::ImageService::Service {
 public:
  grpc::Status ListImages(grpc::ServerContext*, const v1alpha2::ListImagesRequest*,
                          v1alpha2::ListImagesResponse* response) override {
    response->add_images()->set_id("sha256:v1alpha2");
    return grpc::Status::OK;
  }
};

class ImageServiceFrontTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder upstream_builder;
    upstream_builder.RegisterService(&upstream_v1_);
    upstream_builder.RegisterService(&upstream_v1alpha2_);
    upstream_server_ = upstream_builder.BuildAndStart();
    ASSERT_NE(upstream_server_, nullptr);
    StartFront({.endpoint = std::string(kEndpoint),
                .channel = upstream_server_->InProcessChannel(grpc::ChannelArguments())});
  }

  void TearDown() override {
    if (front_server_) front_server_->Shutdown();
    if (upstream_server_) upstream_server_->Shutdown();
  }

  void StartFront(const Upstream& upstream) {
    if (front_server_) front_server_->Shutdown();
    front_v1_ = std::make_unique<ImageServiceFrontV1>(upstream, credentials_);
    front_v1alpha2_ = std::make_unique<ImageServiceFrontV1alpha2>(upstream, credentials_);
    grpc::ServerBuilder builder;
    builder.RegisterService(front_v1_.get());
    builder.RegisterService(front_v1alpha2_.get());
    front_server_ = builder.BuildAndStart();
    ASSERT_NE(front_server_, nullptr);
    auto channel = front_server_->InProcessChannel(grpc::ChannelArguments());
    v1_ = v1::ImageService::NewStub(channel);
    v1alpha2_ = v1alpha2::ImageService::NewStub(channel);
  }

  static std::unique_ptr<grpc::ClientContext> Call(
      std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + timeout);
    return context;
  }

  static v1::PullImageRequest PullRequest(const std::string& image, const std::string& password) {
    v1::PullImageRequest request;
    request.mutable_image()->set_image(image);
    request.mutable_auth()->set_username("kubelet");
    request.mutable_auth()->set_password(password);
    return request;
  }

  // Waits until `count` pulls are waiting at `gate`.
  static bool WaitForPulls(PullGate& gate, int count) {
    std::unique_lock lock(gate.mutex);
    return gate.changed.wait_for(lock, std::chrono::seconds(10),
                                 [&] { return gate.in_flight >= count; });
  }

  static void Release(PullGate& gate) {
    std::lock_guard lock(gate.mutex);
    gate.release = true;
    gate.changed.notify_all();
  }

  FakeUpstreamV1 upstream_v1_;
  FakeUpstreamV1alpha2 upstream_v1alpha2_;
  std::unique_ptr<grpc::Server> upstream_server_;
  registry::PullCredentials credentials_;
  std::unique_ptr<ImageServiceFrontV1> front_v1_;
  std::unique_ptr<ImageServiceFrontV1alpha2> front_v1alpha2_;
  std::unique_ptr<grpc::Server> front_server_;
  std::unique_ptr<v1::ImageService::Stub> v1_;
  std::unique_ptr<v1alpha2::ImageService::Stub> v1alpha2_;
};

TEST_F(ImageServiceFrontTest, ForwardsEveryCallAndReturnsTheUpstreamAnswer) {
  v1::ListImagesRequest list;
  list.mutable_filter()->mutable_image()->set_image("registry.test/app");
  v1::ListImagesResponse listed;
  ASSERT_TRUE(v1_->ListImages(Call().get(), list, &listed).ok());
  ASSERT_EQ(listed.images_size(), 1);
  EXPECT_EQ(listed.images(0).id(), kImageId);
  EXPECT_EQ(listed.images(0).repo_tags(0), "registry.test/app:v1");
  EXPECT_EQ(listed.images(0).size(), 1234u);
  EXPECT_EQ(upstream_v1_.last_filter, "registry.test/app");

  v1::ImageStatusRequest status;
  status.mutable_image()->set_image("registry.test/app:v1");
  status.set_verbose(true);
  v1::ImageStatusResponse found;
  ASSERT_TRUE(v1_->ImageStatus(Call().get(), status, &found).ok());
  EXPECT_EQ(found.image().id(), kImageId);
  EXPECT_EQ(found.info().at("info"), "{\"upstream\":true}");
  status.mutable_image()->set_image("registry.test/absent:v1");
  v1::ImageStatusResponse absent;
  ASSERT_TRUE(v1_->ImageStatus(Call().get(), status, &absent).ok());
  EXPECT_FALSE(absent.has_image());

  v1::PullImageResponse pulled;
  ASSERT_TRUE(
      v1_->PullImage(Call().get(), PullRequest("registry.test/app:v1", "pw"), &pulled).ok());
  EXPECT_EQ(pulled.image_ref(), kImageId);

  v1::RemoveImageRequest remove;
  remove.mutable_image()->set_image(std::string(kImageId));
  v1::RemoveImageResponse removed;
  ASSERT_TRUE(v1_->RemoveImage(Call().get(), remove, &removed).ok());
  EXPECT_EQ(upstream_v1_.removed, kImageId);

  v1::ImageFsInfoResponse fs;
  ASSERT_TRUE(v1_->ImageFsInfo(Call().get(), v1::ImageFsInfoRequest(), &fs).ok());
  ASSERT_EQ(fs.image_filesystems_size(), 1);
  EXPECT_EQ(fs.image_filesystems(0).fs_id().mountpoint(), "/upstream/snapshots");
  EXPECT_EQ(fs.container_filesystems(0).fs_id().mountpoint(), "/upstream/rw");
}

TEST_F(ImageServiceFrontTest, V1alpha2GoesToTheUpstreamV1alpha2) {
  v1alpha2::ListImagesResponse listed;
  ASSERT_TRUE(v1alpha2_->ListImages(Call().get(), v1alpha2::ListImagesRequest(), &listed).ok());
  ASSERT_EQ(listed.images_size(), 1);
  EXPECT_EQ(listed.images(0).id(), "sha256:v1alpha2");
  // What the upstream does not serve comes back as its UNIMPLEMENTED, naming it.
  v1alpha2::ImageFsInfoResponse fs;
  grpc::Status status = v1alpha2_->ImageFsInfo(Call().get(), v1alpha2::ImageFsInfoRequest(), &fs);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(status.error_message(),
            fmt::format("upstream image service {}: UNIMPLEMENTED without a message", kEndpoint));
}

TEST_F(ImageServiceFrontTest, AFailureKeepsTheUpstreamCodeAndNamesTheUpstream) {
  v1::PullImageResponse response;
  grpc::Status status =
      v1_->PullImage(Call().get(), PullRequest("registry.test/denied:v1", "pw"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(status.error_message(),
            fmt::format("upstream image service {}: failed to resolve reference: 401 Unauthorized",
                        kEndpoint));
  EXPECT_EQ(credentials_.size(), 0u) << "a failed pull still drops its credentials";
}

TEST_F(ImageServiceFrontTest, AnUpstreamThatDoesNotAnswerIsUnavailableNamingIt) {
  ASSERT_OK_AND_ASSIGN(berth::testing::TempDir dir, berth::testing::TempDir::Create("front"));
  const std::string endpoint = "unix://" + (dir.path() / "nothing.sock").string();
  ASSERT_OK_AND_ASSIGN(Upstream upstream, ConnectUpstream(endpoint));
  ASSERT_NO_FATAL_FAILURE(StartFront(upstream));
  v1::ListImagesResponse listed;
  grpc::Status status = v1_->ListImages(Call().get(), v1::ListImagesRequest(), &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(),
              StartsWith(fmt::format("upstream image service {}: ", endpoint)));
  v1::PullImageResponse pulled;
  status = v1_->PullImage(Call().get(), PullRequest("registry.test/app:v1", "pw"), &pulled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(credentials_.size(), 0u);
}

TEST_F(ImageServiceFrontTest, ConnectUpstreamWantsAUnixSocketUrl) {
  EXPECT_THAT(ConnectUpstream("tcp://127.0.0.1:1234"),
              berth::testing::FailsWith(ErrorCode::kInvalidArgument));
  EXPECT_THAT(ConnectUpstream("/run/containerd/containerd.sock"),
              berth::testing::FailsWith(ErrorCode::kInvalidArgument));
}

// The credentials are findable while the upstream works on the pull, exactly as sent, and gone
// once the call has returned; two pulls of one image each hold theirs.
TEST_F(ImageServiceFrontTest, PullCredentialsAreHeldWhileTheUpstreamPulls) {
  PullGate gate;
  upstream_v1_.gate = &gate;
  const std::string password = berth::testing::SentinelSecret("front-pull-password");
  auto first = std::async(std::launch::async, [&] {
    v1::PullImageResponse response;
    return v1_->PullImage(Call().get(), PullRequest("registry.test/app:v1", password), &response);
  });
  ASSERT_TRUE(WaitForPulls(gate, 1));
  std::optional<registry::CriAuthConfig> held = credentials_.ForImage("registry.test/app:v1");
  ASSERT_TRUE(held) << credentials_.ToString();
  EXPECT_EQ(held->username, "kubelet");
  EXPECT_EQ(held->password.reveal(), password);
  EXPECT_EQ(gate.password_seen, password) << "the upstream gets the AuthConfig as given";
  EXPECT_TRUE(credentials_.ForHost("registry.test"));

  auto second = std::async(std::launch::async, [&] {
    v1alpha2::PullImageRequest request;
    request.mutable_image()->set_image("registry.test/app:v1");
    request.mutable_auth()->set_username("second");
    request.mutable_auth()->set_password(password);
    v1alpha2::PullImageResponse response;
    return v1alpha2_->PullImage(Call().get(), request, &response);
  });
  // The v1alpha2 upstream fake has no PullImage: it fails at once, and drops its credentials.
  grpc::Status second_status = second.get();
  EXPECT_EQ(second_status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(credentials_.HoldersOf("registry.test/app:v1"), 1u);

  auto third = std::async(std::launch::async, [&] {
    v1::PullImageRequest request = PullRequest("registry.test/app:v1", password);
    request.mutable_auth()->set_username("third");
    v1::PullImageResponse response;
    return v1_->PullImage(Call().get(), request, &response);
  });
  ASSERT_TRUE(WaitForPulls(gate, 2));
  EXPECT_EQ(credentials_.HoldersOf("registry.test/app:v1"), 2u);
  EXPECT_EQ(credentials_.ForImage("registry.test/app:v1")->username, "third");

  Release(gate);
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(third.get().ok());
  EXPECT_EQ(credentials_.size(), 0u) << credentials_.ToString();
}

TEST_F(ImageServiceFrontTest, AnAnonymousPullHoldsNothing) {
  PullGate gate;
  upstream_v1_.gate = &gate;
  auto pull = std::async(std::launch::async, [&] {
    v1::PullImageRequest request;
    request.mutable_image()->set_image("registry.test/app:v1");
    v1::PullImageResponse response;
    return v1_->PullImage(Call().get(), request, &response);
  });
  ASSERT_TRUE(WaitForPulls(gate, 1));
  EXPECT_EQ(credentials_.size(), 0u);
  Release(gate);
  EXPECT_TRUE(pull.get().ok());
}

TEST_F(ImageServiceFrontTest, TheDeadlineAndTheCancellationReachTheUpstream) {
  PullGate gate;
  upstream_v1_.gate = &gate;
  grpc::ClientContext context;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(40);
  context.set_deadline(deadline);
  auto pull = std::async(std::launch::async, [&] {
    v1::PullImageResponse response;
    return v1_->PullImage(&context, PullRequest("registry.test/app:v1", "pw"), &response);
  });
  ASSERT_TRUE(WaitForPulls(gate, 1));
  {
    std::lock_guard lock(gate.mutex);
    EXPECT_LE(gate.deadline_seen, deadline + std::chrono::seconds(1));
    EXPECT_GE(gate.deadline_seen, deadline - std::chrono::seconds(5));
  }
  context.TryCancel();
  EXPECT_EQ(pull.get().error_code(), grpc::StatusCode::CANCELLED);
  std::unique_lock lock(gate.mutex);
  EXPECT_TRUE(gate.changed.wait_for(lock, std::chrono::seconds(10), [&] {
    return gate.cancelled_seen;
  })) << "the upstream pull was not cancelled with the incoming call";
  lock.unlock();
  // The handler returns once the upstream has answered; then the credentials are gone.
  EXPECT_TRUE(Eventually([&] { return credentials_.size() == 0; }));
}

// At debug level the held and dropped lines name the image and count the holders; no line
// carries the password.
TEST_F(ImageServiceFrontTest, LogsNameTheImageAndNeverTheSecret) {
  auto captured = std::make_shared<std::ostringstream>();
  ASSERT_TRUE(log::Init({.level = log::Level::kTrace}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(*captured));
  const std::string password = berth::testing::SentinelSecret("front-log-password");
  v1::PullImageResponse response;
  ASSERT_TRUE(
      v1_->PullImage(Call().get(), PullRequest("registry.test/app:v1", password), &response).ok());
  v1::PullImageRequest denied = PullRequest("registry.test/denied:v1", password);
  denied.mutable_auth()->set_auth(password);
  denied.mutable_auth()->set_identity_token(password);
  EXPECT_FALSE(v1_->PullImage(Call().get(), denied, &response).ok());
  ASSERT_TRUE(log::Init({}));

  const std::string text = captured->str();
  EXPECT_THAT(text, HasSubstr("cri.pull_credentials_held image=registry.test/app:v1 holders=1"));
  EXPECT_THAT(text, HasSubstr("cri.pull_credentials_dropped image=registry.test/app:v1 holders=0"));
  EXPECT_THAT(text, HasSubstr("cri.request method=PullImage ref=registry.test/app:v1"));
  EXPECT_THAT(text, HasSubstr("cri.pull_credentials_held image=registry.test/denied:v1"));
  EXPECT_LT(text.find("cri.pull_credentials_dropped image=registry.test/app:v1"),
            text.find("cri.request method=PullImage ref=registry.test/app:v1"))
      << "credentials are dropped before the call returns";
  EXPECT_THAT(text, Not(HasSubstr(password)));
  EXPECT_THAT(text, Not(HasSubstr("berth-sentinel")));
}

}  // namespace
}  // namespace berth::cri
