// Hostile CRI requests: the built berthd on a temp root, serving CRI on a real unix socket, as
// in test/integration/cri_test.cc. A request must be refused with a clear status, quickly, and
// leave the daemon healthy; its log must stay readable (no megabyte lines).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "proto/runtime/v1/api.grpc.pb.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"

namespace berth::hostile {
namespace {

namespace v1 = ::runtime::v1;
using berth::testing::ChildProcess;

std::unique_ptr<grpc::ClientContext> Call() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return context;
}

class CriHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("cri-hostile");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    std::ofstream(dir_->path() / "config.toml") << "[pull]\nsnapshotter = \"native\"\n";
    const std::string socket = (dir_->path() / "berth.sock").string();
    auto daemon = berth::testing::StartBerthd({.config_file = dir_->path() / "config.toml",
                                               .root = dir_->path() / "root",
                                               .state = dir_->path() / "state",
                                               .socket = socket,
                                               .log_file = dir_->path() / "berthd.log"});
    ASSERT_TRUE(daemon) << daemon.error().ToString();
    daemon_ = std::move(*daemon);
    channel_ = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
    ASSERT_TRUE(
        channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)))
        << daemon_->ReadLog();
    stub_ = v1::ImageService::NewStub(channel_);
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<ChildProcess> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ImageService::Stub> stub_;
};

TEST_F(CriHostileTest, OneMegabyteImageNameIsInvalidArgument) {
  const std::string name = "example.com/" + std::string(1 << 20, 'a') + ":latest";
  for (int method = 0; method < 3; ++method) {
    SCOPED_TRACE(method);
    grpc::Status status;
    if (method == 0) {
      v1::PullImageRequest request;
      request.mutable_image()->set_image(name);
      v1::PullImageResponse response;
      status = stub_->PullImage(Call().get(), request, &response);
    } else if (method == 1) {
      v1::ImageStatusRequest request;
      request.mutable_image()->set_image(name);
      v1::ImageStatusResponse response;
      status = stub_->ImageStatus(Call().get(), request, &response);
      // An image that cannot exist: either an empty answer or a refusal, never a crash.
      if (status.ok()) {
        EXPECT_FALSE(response.has_image());
        continue;
      }
    } else {
      v1::RemoveImageRequest request;
      request.mutable_image()->set_image(name);
      v1::RemoveImageResponse response;
      status = stub_->RemoveImage(Call().get(), request, &response);
      if (status.ok()) continue;  // removing what does not exist is a success in CRI
    }
    berth::testing::NoteProductOutput("gRPC status", status.error_message());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find("must not be more than 255 characters"),
              std::string::npos)
        << status.error_message().substr(0, 2000);
    EXPECT_LT(status.error_message().size(), 4096u) << "the name is echoed back in full";
  }

  // The daemon is healthy, and its log holds no megabyte line.
  v1::ListImagesResponse listed;
  grpc::Status list = stub_->ListImages(Call().get(), v1::ListImagesRequest(), &listed);
  EXPECT_TRUE(list.ok()) << list.error_message();
  EXPECT_TRUE(daemon_->Running()) << daemon_->ReadLog().substr(0, 4096);
  std::istringstream log(daemon_->ReadLog());
  size_t lines = 0;
  for (std::string line; std::getline(log, line); ++lines) {
    EXPECT_LT(line.size(), 8192u) << line.substr(0, 200);
  }
  EXPECT_GT(lines, 0u);
}

}  // namespace
}  // namespace berth::hostile
