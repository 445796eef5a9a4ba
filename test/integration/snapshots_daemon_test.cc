// berthd as containerd's proxy snapshotter: the Snapshots API on its own socket, over the same
// root as the CRI ImageService, through a SnapshotsClient as containerd's proxy would call it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/containerd/snapshots_client.h"
#include "testing/berthd_process.h"
#include "testing/child_process.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth {
namespace {

namespace fs = std::filesystem;
using ::berth::testing::ChildProcess;
using ::berth::testing::FailsWith;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class SnapshotsDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "berthd's overlay snapshotter needs root";
    ASSERT_OK_AND_ASSIGN(auto dir, berth::testing::TempDir::Create("snapd"));
    dir_.emplace(std::move(dir));
  }

  fs::path run() const { return dir_->path() / "run"; }
  std::string address() const { return "unix://" + (run() / "snapshotter.sock").string(); }

  // Starts berthd with its CRI socket in run() and the Snapshots API at `snapshotter_socket`
  // (BerthdOptions: nullopt is berthd's default, run()/snapshotter.sock; an empty path, none).
  // Waits until its sockets accept connections.
  void StartDaemon(std::optional<fs::path> snapshotter_socket = std::nullopt) {
    ASSERT_OK_AND_ASSIGN(daemon_,
                         berth::testing::StartBerthd({.root = dir_->path() / "root",
                                                      .state = dir_->path() / "state",
                                                      .socket = run() / "berth.sock",
                                                      .snapshotter_socket = snapshotter_socket,
                                                      .log_level = "debug",
                                                      .log_file = dir_->path() / "berthd.log"}));
  }

  void StopDaemon() {
    berth::testing::ExitStatus status = daemon_->Stop(std::chrono::seconds(20));
    EXPECT_TRUE(status.success()) << status.ToString() << "\n" << daemon_->ReadLog();
  }

  std::unique_ptr<containerd::SnapshotsClient> Client() {
    auto client = containerd::SnapshotsClient::Connect(address());
    EXPECT_OK(client);
    return client ? std::move(*client) : nullptr;
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<ChildProcess> daemon_;
};

TEST_F(SnapshotsDaemonTest, ServesTheSnapshotsApiAndKeepsContainerdsSnapshotsAcrossRestarts) {
  // A stale socket left by a berthd that died is replaced.
  fs::create_directories(run());
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un stale{};
    stale.sun_family = AF_UNIX;
    std::strncpy(stale.sun_path, (run() / "snapshotter.sock").c_str(), sizeof(stale.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&stale), sizeof(stale)), 0);
    ::close(fd);
  }
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto client = Client();
  ASSERT_TRUE(client);
  ASSERT_OK(client->Prepare("default/1/extract-1 sha256:c1", "", {}));
  ASSERT_OK(client->Commit("default/2/sha256:c1", "default/1/extract-1 sha256:c1",
                           {{"containerd.io/snapshot.ref", "sha256:c1"}}));
  ASSERT_OK(client->Prepare("default/3/container", "default/2/sha256:c1", {}));
  // A committed top layer nothing is built on: only the ownership rule keeps it.
  ASSERT_OK(client->Prepare("default/4/extract-2 sha256:c2", "default/2/sha256:c1", {}));
  ASSERT_OK(client->Commit("default/5/sha256:c2", "default/4/extract-2 sha256:c2", {}));
  EXPECT_THAT(daemon_->ReadLog(), ::testing::HasSubstr("containerd.snapshots method=Commit"));
  client.reset();  // an open connection holds berthd's shutdown for seconds (within the grace)
  ASSERT_NO_FATAL_FAILURE(StopDaemon());
  EXPECT_FALSE(fs::exists(run() / "snapshotter.sock"));

  // berthd starts with a garbage collection (Recover): containerd's snapshots, referenced by no
  // berth image, are still there, and so is what containerd reads back.
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  client = Client();
  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Info> listed, client->List({}));
  std::vector<std::string> names;
  for (const snapshot::Info& info : listed) names.push_back(info.name);
  EXPECT_THAT(names, UnorderedElementsAre("default/2/sha256:c1", "default/3/container",
                                          "default/5/sha256:c2"));
  EXPECT_EQ(client->Stat("default/2/sha256:c1")->labels,
            (snapshot::Labels{{"containerd.io/snapshot.ref", "sha256:c1"}}));
  ASSERT_OK(client->Remove("default/3/container"));
  ASSERT_OK(client->Remove("default/5/sha256:c2"));
  ASSERT_OK(client->Remove("default/2/sha256:c1"));
  EXPECT_THAT(client->Stat("default/2/sha256:c1"), FailsWith(ErrorCode::kNotFound));
  client.reset();
  ASSERT_NO_FATAL_FAILURE(StopDaemon());
}

TEST_F(SnapshotsDaemonTest, AnEmptySnapshotterAddressServesNone) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon(fs::path()));  // --snapshotter-address ""
  EXPECT_FALSE(fs::exists(run() / "snapshotter.sock"));
  ASSERT_NO_FATAL_FAILURE(StopDaemon());

  // An explicit address elsewhere.
  const fs::path elsewhere = dir_->path() / "other" / "snap.sock";
  ASSERT_NO_FATAL_FAILURE(StartDaemon(elsewhere));
  EXPECT_FALSE(fs::exists(run() / "snapshotter.sock"));
  ASSERT_NO_FATAL_FAILURE(StopDaemon());
}

}  // namespace
}  // namespace berth
