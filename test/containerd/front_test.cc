// berthd in front mode (config upstream_image_endpoint) before a real containerd 1.6, end to end:
// a CRI client talks to berthd only, and containerd's image store is what it sees and changes.
// The images come from a token-auth registry (Distribution with a token server), so a pull works
// only when the credentials of the CRI AuthConfig reach containerd; while it runs berthd holds them
// (its debug lines say so, naming the image), and afterwards neither a file under berthd's
// directories nor its trace-level log holds the password.
//
// Tests skip, saying why, only when containerd or runc is not installed. Needs root (containerd).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/base64.h"
#include "berth/base/file_util.h"
#include "berth/cri/admin_client.h"
#include "berth/cri/image_service_client.h"
#include "proto/runtime/v1alpha2/api.grpc.pb.h"
#include "test/containerd/containerd_images.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/containerd_process.h"
#include "testing/eventually.h"
#include "testing/fault_proxy.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/secret_sentinel.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "tools/imagegen/registry_client.h"

namespace berth::containerd_test {
namespace {

using ::berth::testing::Eventually;

namespace fs = std::filesystem;
using berth::testing::ChildProcess;
using berth::testing::CommandResult;
using berth::testing::ContainerdOptions;
using berth::testing::ContainerdProcess;
using berth::testing::FaultAction;
using berth::testing::FaultProxy;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// containerd's CRI keeps its images in this namespace.
constexpr std::string_view kCriNamespace = "k8s.io";
// How long the proxy holds the busybox layer: a pull is reliably in flight meanwhile.
constexpr auto kLayerDelay = std::chrono::seconds(3);

// The token-auth registry with busybox, and the proxy containerd reaches it through.
struct SharedRegistry {
  std::unique_ptr<TestRegistry> registry;
  std::unique_ptr<FaultProxy> proxy;
  imagegen::Image busybox;
};

SharedRegistry* shared = nullptr;

Result<void> PrepareRegistry() {
  auto prepared = std::make_unique<SharedRegistry>();
  BERTH_ASSIGN_OR_RETURN(prepared->registry,
                         TestRegistry::Start({.mode = TestRegistryMode::kTokenAuth}));
  BERTH_ASSIGN_OR_RETURN(prepared->busybox, MakeBusyboxImage());
  BERTH_ASSIGN_OR_RETURN(
      auto client, imagegen::RegistryClient::Create({.base_url = prepared->registry->url(),
                                                     .username = prepared->registry->username(),
                                                     .password = prepared->registry->password()}));
  BERTH_RETURN_IF_ERROR(imagegen::PushImage(*client, "busybox", "latest", prepared->busybox));
  BERTH_ASSIGN_OR_RETURN(prepared->proxy, FaultProxy::Start(prepared->registry->host()));
  BERTH_RETURN_IF_ERROR(prepared->proxy->AddRule(
      {.method = "GET",
       .target_contains = prepared->busybox.layers[0].blob.digest.ToString(),
       .action = FaultAction::Delay(
           std::chrono::duration_cast<std::chrono::milliseconds>(kLayerDelay))}));
  shared = prepared.release();
  return {};
}

class FrontTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<void> prepared = PrepareRegistry();
    if (!prepared) {
      std::fprintf(stderr, "preparing the registry failed: %s\n",
                   prepared.error().ToString().c_str());
    }
  }
  static void TearDownTestSuite() {
    delete shared;
    shared = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(shared, nullptr) << "the registry or the image could not be prepared (see above)";
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("front"));
  }

  void TearDown() override {
    if (HasFailure() && berthd_) std::fprintf(stderr, "berthd:\n%s\n", berthd_->ReadLog().c_str());
    if (HasFailure() && containerd_) std::fprintf(stderr, "%s\n", containerd_->LogTail(60).c_str());
    front_.reset();
    if (berthd_) {
      berth::testing::ExitStatus status = berthd_->Stop(std::chrono::seconds(20));
      EXPECT_TRUE(status.success()) << status.ToString();
    }
    containerd_.reset();
  }

  // Where containerd and berthd reach the registry: through the proxy.
  static std::vector<berth::testing::RegistryHost> RegistryHosts() {
    return {{std::string(kRegistryHost), shared->proxy->url()}};
  }

  // containerd, with its own overlayfs snapshotter or with berthd's (at berthd's default
  // snapshotter_address beside its CRI socket, StartBerthd).
  enum class Snapshotter { kContainerds, kBerths };
  void StartContainerd(Snapshotter snapshotter = Snapshotter::kContainerds) {
    if (Result<void> installed = ContainerdProcess::CheckInstalled(); !installed) {
      GTEST_SKIP() << installed.error().message();
    }
    ContainerdOptions options{.registry_hosts = RegistryHosts()};
    if (snapshotter == Snapshotter::kBerths) {
      options.UseProxySnapshotter("berth", dir_.path() / "run" / "snapshotter.sock");
    }
    ASSERT_OK_AND_ASSIGN(containerd_, ContainerdProcess::Start(options));
  }

  std::string socket() const { return (dir_.path() / "run" / "berth.sock").string(); }
  std::string address() const { return "unix://" + socket(); }

  // berthd in front mode for `upstream`, logging at trace level, everything under dir_.
  void StartBerthd(const std::string& upstream) {
    ASSERT_OK(berth::testing::WriteHostsDir(dir_.path() / "hosts", RegistryHosts()));
    std::ofstream(dir_.path() / "config.toml") << fmt::format(
        "upstream_image_endpoint = \"{}\"\n[pull]\nsnapshotter = \"native\"\n"
        "[registry]\nconfig_path = \"{}\"\n",
        upstream, (dir_.path() / "hosts").string());
    auto berthd = berth::testing::StartBerthd({.config_file = dir_.path() / "config.toml",
                                               .root = dir_.path() / "root",
                                               .state = dir_.path() / "state",
                                               .socket = socket(),
                                               .log_level = "trace",
                                               .log_file = dir_.path() / "berthd.log"});
    ASSERT_OK(berthd);
    berthd_ = std::move(*berthd);
    ASSERT_OK_AND_ASSIGN(front_, cri::ImageServiceClient::Connect(address()));
  }

  service::PullRequest PullRequest(const std::string& image, bool with_credentials) const {
    service::PullRequest request{.image = image};
    if (with_credentials) {
      request.auth.username = shared->registry->username();
      request.auth.password = shared->registry->password();
    }
    return request;
  }

  // Runs the berth CLI against berthd (its config, root and address) with `args`.
  CommandResult Berth(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BERTH_CLI_PATH,
                                     "--config",
                                     (dir_.path() / "config.toml").string(),
                                     "--root",
                                     (dir_.path() / "root").string(),
                                     "--address",
                                     address()};
    argv.insert(argv.end(), args.begin(), args.end());
    Result<CommandResult> run = berth::testing::RunCommand(argv, dir_.path());
    EXPECT_OK(run);
    return run.value_or(CommandResult{});
  }

  // `ctr -n k8s.io images ls -q`: containerd's own list of the CRI's image names.
  std::vector<std::string> CtrImageNames() {
    Result<CommandResult> run = containerd_->Ctr(kCriNamespace, {"images", "ls", "-q"});
    EXPECT_OK(run);
    if (!run) return {};
    EXPECT_EQ(run->exit_code, 0) << run->err;
    std::vector<std::string> names;
    std::istringstream lines(run->out);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) names.push_back(line);
    }
    return names;
  }

  // Every file under dir_ (berthd's root, state, config and log) in which a sentinel or the
  // registry password shows, in any form the hygiene checker knows.
  std::vector<std::string> FilesHoldingSecrets() const {
    std::vector<std::string> found;
    const std::string& password = shared->registry->password().reveal();
    const std::string basic = Base64Encode(shared->registry->username() + ":" + password);
    std::error_code error;
    for (auto it = fs::recursive_directory_iterator(dir_.path(), error);
         it != fs::recursive_directory_iterator(); it.increment(error)) {
      if (error) break;
      if (!it->is_regular_file() || it->is_symlink()) continue;
      Result<std::string> text = ReadFile(it->path(), /*max_bytes=*/256 << 20);
      if (!text) continue;
      if (text->find(password) != std::string::npos || text->find(basic) != std::string::npos ||
          !berth::testing::FindSecrets(*text).empty()) {
        found.push_back(it->path().string());
      }
    }
    return found;
  }

  TempDir dir_;
  std::unique_ptr<ContainerdProcess> containerd_;
  std::unique_ptr<ChildProcess> berthd_;
  std::unique_ptr<cri::ImageServiceClient> front_;
};

// The whole loop through berthd: the pull needs (and gets) the AuthConfig's credentials, berthd
// holds them exactly while containerd pulls, and list, status, fs info and remove all show and
// change containerd's image store.
TEST_F(FrontTest, CriCallsThroughBerthdActOnContainerdsImages) {
  ASSERT_NO_FATAL_FAILURE(StartContainerd());
  const std::string upstream = "unix://" + containerd_->address().string();
  ASSERT_NO_FATAL_FAILURE(StartBerthd(upstream));
  ASSERT_OK_AND_ASSIGN(auto containerd_cri, cri::ImageServiceClient::Connect(upstream));
  const std::string image = ImageName("busybox", "latest");
  const std::string image_id = shared->busybox.config.digest.ToString();

  // Without credentials the registry refuses containerd: the error is containerd's, named.
  Result<service::PullResult> anonymous = front_->Pull(PullRequest(image, false));
  ASSERT_FALSE(anonymous) << "the registry should want credentials";
  EXPECT_THAT(anonymous.error().ToString(), HasSubstr("upstream image service " + upstream));
  berth::testing::NoteProductOutput("gRPC status", anonymous.error().ToString());

  // With them it works, and berthd holds them while containerd pulls (the layer is delayed).
  auto pull =
      std::async(std::launch::async, [&] { return front_->Pull(PullRequest(image, true)); });
  const std::string held = "cri.pull_credentials_held image=" + image + " holders=1";
  const std::string dropped = "cri.pull_credentials_dropped image=" + image + " holders=0";
  ASSERT_TRUE(Eventually([&] { return berthd_->ReadLog().find(held) != std::string::npos; },
                         std::chrono::seconds(20)))
      << "berthd never logged that it holds the pull's credentials";
  EXPECT_EQ(pull.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the pull should still be in flight (its layer is delayed by " << kLayerDelay.count()
      << " s)";
  EXPECT_THAT(berthd_->ReadLog(), Not(HasSubstr(dropped))) << "dropped while the pull runs";
  Result<service::PullResult> pulled = pull.get();
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->image_id.ToString(), image_id);
  EXPECT_THAT(berthd_->ReadLog(), HasSubstr(dropped));

  // ctr and containerd's own CRI see what berthd reports.
  EXPECT_THAT(CtrImageNames(), Contains(image));
  EXPECT_THAT(CtrImageNames(), Contains(image_id)) << "the CRI records the image ID as a name";
  ASSERT_OK_AND_ASSIGN(std::vector<service::Image> listed, front_->List());
  ASSERT_OK_AND_ASSIGN(std::vector<service::Image> listed_upstream, containerd_cri->List());
  ASSERT_EQ(listed.size(), 1u);
  ASSERT_EQ(listed_upstream.size(), 1u);
  EXPECT_EQ(listed[0].id.ToString(), image_id);
  EXPECT_EQ(listed[0].id, listed_upstream[0].id);
  EXPECT_EQ(listed[0].repo_tags, listed_upstream[0].repo_tags);
  EXPECT_THAT(listed[0].repo_tags, Contains(image));
  EXPECT_EQ(listed[0].size, listed_upstream[0].size);

  // runtime.v1alpha2 reaches containerd's v1alpha2 through the front as well.
  auto channel = grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials());
  auto v1alpha2 = runtime::v1alpha2::ImageService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  runtime::v1alpha2::ListImagesResponse listed_v1alpha2;
  grpc::Status listed_status =
      v1alpha2->ListImages(&context, runtime::v1alpha2::ListImagesRequest(), &listed_v1alpha2);
  ASSERT_TRUE(listed_status.ok()) << listed_status.error_message();
  ASSERT_EQ(listed_v1alpha2.images_size(), 1);
  EXPECT_EQ(listed_v1alpha2.images(0).id(), image_id);

  ASSERT_OK_AND_ASSIGN(std::optional<service::Image> status, front_->Status(image));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->id.ToString(), image_id);

  ASSERT_OK_AND_ASSIGN(std::vector<service::FilesystemUsage> filesystems, front_->FsInfo());
  ASSERT_OK_AND_ASSIGN(std::vector<service::FilesystemUsage> upstream_filesystems,
                       containerd_cri->FsInfo());
  ASSERT_FALSE(filesystems.empty());
  ASSERT_EQ(filesystems.size(), upstream_filesystems.size());
  EXPECT_EQ(filesystems[0].mountpoint, upstream_filesystems[0].mountpoint);
  EXPECT_THAT(filesystems[0].mountpoint, HasSubstr(containerd_->root().string()))
      << "ImageFsInfo should describe containerd's snapshotter, not berth's root";

  // berth's own Admin service keeps serving berth's root.
  ASSERT_OK_AND_ASSIGN(auto admin, cri::AdminClient::Connect(address()));
  EXPECT_OK(admin->CollectGarbage(/*dry_run=*/false));

  // The CLI against berthd: `berth images` is containerd's list (through the front), `berth gc`
  // and `berth check` work on berth's own root (contrib/config.toml).
  CommandResult images = Berth({"images"});
  EXPECT_EQ(images.exit_code, 0) << images.err;
  EXPECT_THAT(images.out, HasSubstr(image_id.substr(7, 12)));
  for (std::string command : {"gc", "check"}) {
    CommandResult run = Berth({command});
    EXPECT_EQ(run.exit_code, 0) << command << ":\n" << run.out << run.err;
  }

  EXPECT_OK(front_->Remove(image));
  EXPECT_THAT(CtrImageNames(), Not(Contains(image)));
  ASSERT_OK_AND_ASSIGN(std::optional<service::Image> gone, front_->Status(image));
  EXPECT_FALSE(gone);
  ASSERT_OK_AND_ASSIGN(std::optional<service::Image> gone_upstream, containerd_cri->Status(image));
  EXPECT_FALSE(gone_upstream);

  // The password went to containerd and nowhere on berthd's disk, trace log included.
  // (berthd ran with --log-level trace; its debug lines above show the level took.)
  EXPECT_THAT(FilesHoldingSecrets(), IsEmpty());
  EXPECT_THAT(berthd_->ReadLog(), Not(HasSubstr(shared->registry->password().reveal())));
}

// kubelet's credentials reach berth's fetch: with berthd as containerd's snapshotter too, a CRI
// pull through the front of an image on the token-auth registry has berth fetch every layer
// (remote snapshots) with the AuthConfig the pull carried, and the password stays out of every
// file and log line.
TEST_F(FrontTest, BerthFetchesTheLayersWithTheCredentialsOfThePullInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartContainerd(Snapshotter::kBerths));
  const std::string upstream = "unix://" + containerd_->address().string();
  ASSERT_NO_FATAL_FAILURE(StartBerthd(upstream));
  // containerd started first and may have dialled berthd's socket before it existed.
  ASSERT_OK(containerd_->WaitForSnapshotter("k8s.io", "berth"));
  const std::string image = ImageName("busybox", "latest");

  const size_t log_before = shared->registry->ReadLog().size();
  ASSERT_OK(front_->Pull(PullRequest(image, true)));
  const std::string registry_log = shared->registry->ReadLog().substr(log_before);
  for (const imagegen::Layer& layer : shared->busybox.layers) {
    EXPECT_THAT(BlobFetchers(registry_log, layer.blob.digest),
                ::testing::AllOf(Not(IsEmpty()), ::testing::Each(::testing::StartsWith("berth/"))))
        << "layer " << layer.blob.digest.ToString() << " was not fetched by berth alone:\n"
        << registry_log;
  }
  const std::string log = berthd_->ReadLog();
  EXPECT_THAT(log, HasSubstr("containerd.remote.taken"));
  EXPECT_THAT(log, Not(HasSubstr("containerd.remote.fallback")));
  EXPECT_THAT(CtrImageNames(), Contains(image));

  EXPECT_THAT(FilesHoldingSecrets(), IsEmpty());
  EXPECT_THAT(log, Not(HasSubstr(shared->registry->password().reveal())));
}

// Fallback for want of credentials: a pull sent to containerd's CRI directly (not through
// berth's front) carries credentials berth never sees. berth's fetch is refused by the registry,
// so containerd fetches every layer itself into berth's snapshots, and the pull works.
TEST_F(FrontTest, WithoutThePullsCredentialsContainerdFetchesTheLayersItself) {
  ASSERT_NO_FATAL_FAILURE(StartContainerd(Snapshotter::kBerths));
  const std::string upstream = "unix://" + containerd_->address().string();
  ASSERT_NO_FATAL_FAILURE(StartBerthd(upstream));
  // containerd started first and may have dialled berthd's socket before it existed.
  ASSERT_OK(containerd_->WaitForSnapshotter("k8s.io", "berth"));
  ASSERT_OK_AND_ASSIGN(auto containerd_cri, cri::ImageServiceClient::Connect(upstream));
  const std::string image = ImageName("busybox", "latest");

  const size_t log_before = shared->registry->ReadLog().size();
  ASSERT_OK(containerd_cri->Pull(PullRequest(image, true)));
  const std::string registry_log = shared->registry->ReadLog().substr(log_before);
  for (const imagegen::Layer& layer : shared->busybox.layers) {
    EXPECT_THAT(BlobFetchers(registry_log, layer.blob.digest),
                Contains(::testing::StartsWith("containerd/")))
        << registry_log;
  }
  const std::string log = berthd_->ReadLog();
  EXPECT_THAT(log, HasSubstr("containerd.remote.fallback"));
  EXPECT_THAT(log, Not(HasSubstr("containerd.remote.taken")));
  EXPECT_THAT(CtrImageNames(), Contains(image));
}

// An upstream that is not there: every call is UNAVAILABLE naming the endpoint, and a pull's
// credentials are still dropped when it returns.
TEST_F(FrontTest, ABadUpstreamIsUnavailableNamingTheEndpoint) {
  const std::string upstream = "unix://" + (dir_.path() / "no-containerd.sock").string();
  ASSERT_NO_FATAL_FAILURE(StartBerthd(upstream));
  const std::string image = ImageName("busybox", "latest");

  Result<std::vector<service::Image>> listed = front_->List();
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(listed.error().ToString(), HasSubstr("upstream image service " + upstream));

  Result<service::PullResult> pulled = front_->Pull(PullRequest(image, true));
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code(), ErrorCode::kUnavailable);
  EXPECT_THAT(pulled.error().ToString(), HasSubstr(upstream));
  berth::testing::NoteProductOutput("gRPC status", pulled.error().ToString());
  const std::string log = berthd_->ReadLog();
  EXPECT_THAT(log, HasSubstr("cri.pull_credentials_held image=" + image + " holders=1"));
  EXPECT_THAT(log, HasSubstr("cri.pull_credentials_dropped image=" + image + " holders=0"));
  EXPECT_THAT(FilesHoldingSecrets(), IsEmpty());
}

}  // namespace
}  // namespace berth::containerd_test
