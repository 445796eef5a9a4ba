// Disk admission end to end (issue 6): a root on a small tmpfs the test mounts, a real registry
// behind a FaultProxy that counts blob requests, the image service built as berthd builds it
// (stack::ImageStack) and the berth CLI's `check` on the root afterwards.
//
//   - An image clearly bigger than the filesystem is refused before any layer is fetched
//     (kResourceExhausted, zero layer GETs at the proxy); nothing is reported and a small image
//     still pulls.
//   - An image whose compressed size passes admission but whose unpacked size does not fit (a
//     layer of zeros, a few KiB gzipped) fails mid-pull on ENOSPC, cleanly: nothing reported, a
//     small image still pulls, `berth check` finds the store clean.
//   - Decompression bombs (issue 12), on a 64 MiB tmpfs: a layer of 128 MiB of zeros (a few
//     hundred KiB gzipped) with pull.min_free_space set is stopped as it crosses the reserve
//     (kResourceExhausted naming the layer, how far it inflated, the filesystem and the
//     reserve), its partial layer discarded; with pull.max_inflate_ratio it is refused as a bomb
//     (kInvalidArgument) while an ordinary image pulls.
//   - `berth pull` without berthd explains a full disk with berthd's words (ExplainFullDisk).
//
// Mounting needs root; without it the tests are skipped, saying so.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>

#include "berth/base/cancel.h"
#include "berth/config/config.h"
#include "berth/cri/full_disk.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "berth/stack/image_stack.h"
#include "testing/fault_proxy.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace berth {
namespace {

using ::berth::testing::FailsWith;

namespace fs = std::filesystem;
using json = nlohmann::json;
using berth::testing::CommandResult;
using berth::testing::FaultProxy;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Incompressible bytes, the same for a seed.
std::string RandomBytes(size_t bytes, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; i += sizeof(uint64_t)) {
    uint64_t value = random();
    std::memcpy(data.data() + i, &value, std::min(sizeof(value), bytes - i));
  }
  return data;
}

Result<imagegen::Image> MakeImage(const std::vector<std::pair<std::string, std::string>>& files) {
  std::vector<imagegen::Layer> layers;
  for (const auto& [path, content] : files) {
    imagegen::FileTree tree;
    tree.AddFile(path, content);
    BERTH_ASSIGN_OR_RETURN(imagegen::Layer layer, imagegen::BuildLayer(tree));
    layers.push_back(std::move(layer));
  }
  return imagegen::AssembleImage({}, std::move(layers));
}

class AdmissionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_OK(registry);
    registry_ = registry->release();
    auto client = imagegen::RegistryClient::Create({.base_url = registry_->url()});
    ASSERT_OK(client);
    auto push = [&](const std::string& repository, imagegen::Image*& slot,
                    const std::vector<std::pair<std::string, std::string>>& files) {
      auto image = MakeImage(files);
      ASSERT_OK(image);
      slot = new imagegen::Image(std::move(*image));
      auto pushed = imagegen::PushImage(**client, repository, "1", *slot);
      ASSERT_OK(pushed);
    };
    // 12 MiB of layer blobs: cannot fit in 8 MiB however it is counted.
    push("test/big", big_,
         {{"big0.bin", RandomBytes(6 << 20, 1)}, {"big1.bin", RandomBytes(6 << 20, 2)}});
    // 20 MiB of zeros: a few KiB gzipped, 20 MiB unpacked.
    push("test/zeros", zeros_, {{"zeros.bin", std::string(20 << 20, '\0')}});
    // 128 MiB of zeros: a decompression bomb for a 64 MiB filesystem.
    push("test/bomb", bomb_, {{"zeros", std::string(128 << 20, '\0')}});
    push("test/small", small_, {{"small.txt", "small image\n"}});
  }
  static void TearDownTestSuite() {
    delete big_;
    delete zeros_;
    delete bomb_;
    delete small_;
    delete registry_;
  }

  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "mounting a tmpfs for the root needs root (running as uid " << ::geteuid()
                   << ")";
    }
    auto dir = berth::testing::TempDir::Create("admission");
    ASSERT_OK(dir);
    dir_.emplace(std::move(*dir));
    fs::create_directories(root());
    ASSERT_EQ(::mount("tmpfs", root().c_str(), "tmpfs", 0, TmpfsOptions()), 0)
        << std::strerror(errno);
    mounted_ = true;
    auto proxy = FaultProxy::Start(registry_->host());
    ASSERT_OK(proxy);
    proxy_ = std::move(*proxy);
    ASSERT_NO_FATAL_FAILURE(OpenStack());
  }

  // The filesystem under the root: 8 MiB.
  virtual const char* TmpfsOptions() const { return "size=8m,mode=0700"; }

  // (Re)opens the stack on the root with a config of `pull_settings` (lines of [pull]). No
  // free-space reserve unless they set one: the default (1 GiB at least) exceeds these
  // filesystems.
  void OpenStack(const std::string& pull_settings = "min_free_space = \"0\"\n") {
    stack_.reset();
    const std::string snapshotter =
        snapshot::OverlaySnapshotter::KernelSupportsOverlay() ? "overlayfs" : "native";
    std::ofstream(config_file()) << "[pull]\nsnapshotter = \"" << snapshotter
                                 << "\"\nsync = \"none\"\n"
                                 << pull_settings;
    auto config = config::LoadConfigFile(config_file());
    ASSERT_OK(config);
    config->root = root();
    auto stack = stack::ImageStack::Open(*config);
    ASSERT_OK(stack);
    stack_ = std::move(*stack);
  }

  // statvfs's available bytes of the root's filesystem.
  uint64_t AvailableBytes() const {
    struct statvfs st {};
    EXPECT_EQ(::statvfs(root().c_str(), &st), 0) << std::strerror(errno);
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  }

  // `berth` run on the root itself (no berthd answers at the address).
  Result<CommandResult> RunCli(std::vector<std::string> args) const {
    std::vector<std::string> argv = {BERTH_CLI_PATH,
                                     "--config",
                                     config_file().string(),
                                     "--root",
                                     root().string(),
                                     "--address",
                                     "unix://" + (dir_->path() / "nobody.sock").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return berth::testing::RunCommand(argv, dir_->path());
  }

  void TearDown() override {
    stack_.reset();
    if (mounted_) ::umount2(root().c_str(), MNT_DETACH);
  }

  fs::path root() const { return dir_->path() / "root"; }
  fs::path config_file() const { return dir_->path() / "config.toml"; }
  std::string Ref(const std::string& repository) const {
    return proxy_->host() + "/test/" + repository + ":1";
  }

  Result<service::PullResult> Pull(const std::string& repository) {
    return stack_->images().Pull({.image = Ref(repository)}, CancelToken::Never());
  }

  // GETs of the image's layer blobs the proxy saw.
  uint64_t LayerGets(const imagegen::Image& image) const {
    uint64_t gets = 0;
    for (const imagegen::Layer& layer : image.layers) {
      gets += proxy_->RequestCount("GET", layer.blob.digest.encoded());
    }
    return gets;
  }

  // The small image still pulls and is the only image reported; then `berth check --verify` on
  // the root (the stack closed first: the CLI takes the root's lock) finds it clean.
  void ExpectSmallPullsAndCheckIsClean() {
    auto small = Pull("small");
    ASSERT_OK(small);
    EXPECT_EQ(small->image_id.ToString(), small_->config.digest.ToString());
    auto listed = stack_->images().List();
    ASSERT_OK(listed);
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_EQ((*listed)[0].id.ToString(), small_->config.digest.ToString());
    stack_.reset();

    auto check = RunCli({"check", "--verify", "--json"});
    ASSERT_OK(check);
    EXPECT_EQ(check->exit_code, 0) << check->out << check->err;
    json report = json::parse(check->out, nullptr, false);
    EXPECT_TRUE(report.is_object() && report.value("clean", false)) << check->out << check->err;
  }

  static inline TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* big_ = nullptr;
  static inline imagegen::Image* zeros_ = nullptr;
  static inline imagegen::Image* bomb_ = nullptr;
  static inline imagegen::Image* small_ = nullptr;
  std::optional<berth::testing::TempDir> dir_;
  bool mounted_ = false;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<stack::ImageStack> stack_;
};

TEST_F(AdmissionTest, ImageBiggerThanTheFilesystemIsRefusedBeforeAnyLayerIsFetched) {
  auto refused = Pull("big");
  ASSERT_FALSE(refused) << "a 12 MiB image was admitted into an 8 MiB filesystem";
  EXPECT_THAT(refused, FailsWith(ErrorCode::kResourceExhausted));
  const std::string message = refused.error().ToString();
  std::printf("refused: %s\n", message.c_str());
  EXPECT_THAT(message, HasSubstr(Ref("big")));
  EXPECT_THAT(message, HasSubstr("not enough disk space"));
  EXPECT_THAT(message, HasSubstr(root().string()));
  EXPECT_THAT(message, HasSubstr("free space there (berth rmi, berth gc)"));

  // The pull got as far as the config (admission needs it), and not one layer was requested.
  EXPECT_EQ(proxy_->RequestCount("GET", big_->config.digest.encoded()), 1u);
  EXPECT_EQ(LayerGets(*big_), 0u);
  std::error_code error;
  EXPECT_TRUE(fs::is_empty(root() / "content" / "ingest", error)) << error.message();

  auto listed = stack_->images().List();
  ASSERT_OK(listed);
  EXPECT_THAT(*listed, IsEmpty());
  auto status = stack_->images().Status(Ref("big"));
  ASSERT_OK(status);
  EXPECT_FALSE(status->has_value());

  ExpectSmallPullsAndCheckIsClean();
}

TEST_F(AdmissionTest, DiskFullMidPullStillFailsCleanly) {
  auto failed = Pull("zeros");
  ASSERT_FALSE(failed) << "20 MiB unpacked into an 8 MiB filesystem";
  EXPECT_THAT(failed, FailsWith(ErrorCode::kResourceExhausted));
  // Admitted (the compressed layer is tiny): it failed on the full disk, not up front.
  std::printf("failed: %s\n", failed.error().ToString().c_str());
  EXPECT_THAT(failed.error().ToString(), Not(HasSubstr("not enough disk space")));
  EXPECT_GE(LayerGets(*zeros_), 1u);

  auto listed = stack_->images().List();
  ASSERT_OK(listed);
  EXPECT_THAT(*listed, IsEmpty());
  auto status = stack_->images().Status(Ref("zeros"));
  ASSERT_OK(status);
  EXPECT_FALSE(status->has_value());

  ExpectSmallPullsAndCheckIsClean();
}

// berth pull on the root itself, onto a disk that fills up: the error carries the explanation
// berthd's CRI server adds (cri::ExplainFullDisk), word for word.
TEST_F(AdmissionTest, EmbeddedPullExplainsAFullDiskAsBerthdDoes) {
  stack_.reset();  // the CLI takes the root's lock
  auto pulled = RunCli({"pull", Ref("zeros")});
  ASSERT_OK(pulled);
  EXPECT_NE(pulled->exit_code, 0) << pulled->out << pulled->err;
  std::printf("berth pull: %s\n", pulled->err.c_str());
  EXPECT_THAT(pulled->err, HasSubstr(std::strerror(ENOSPC)));
  // What berthd appends, less the byte counts of the moment.
  const fs::path directories[] = {root()};
  const std::string explained =
      cri::ExplainFullDisk(Error(ErrorCode::kResourceExhausted, std::strerror(ENOSPC)), directories)
          .ToString();
  const size_t counts = explained.find(" (");
  const size_t full = explained.find(") is full: ");
  ASSERT_NE(counts, std::string::npos) << explained;
  ASSERT_NE(full, std::string::npos) << explained;
  EXPECT_THAT(
      pulled->err,
      HasSubstr(explained.substr(0, counts).substr(explained.find("; the filesystem holding "))));
  EXPECT_THAT(pulled->err, HasSubstr(explained.substr(full)));
}

class BombTest : public AdmissionTest {
 protected:
  const char* TmpfsOptions() const override { return "size=64m,mode=0700"; }
};

TEST_F(BombTest, BombCrossingTheFreeSpaceReserveFailsAndIsDiscarded) {
  ASSERT_NO_FATAL_FAILURE(OpenStack("min_free_space = \"40MiB\"\n"));
  auto failed = Pull("bomb");
  ASSERT_FALSE(failed) << "128 MiB of zeros unpacked onto 64 MiB with a 40 MiB reserve";
  EXPECT_THAT(failed, FailsWith(ErrorCode::kResourceExhausted));
  const std::string message = failed.error().ToString();
  std::printf("failed: %s\n", message.c_str());
  EXPECT_THAT(message,
              HasSubstr("layer " + bomb_->layers[0].blob.digest.ToString() + " had inflated to "));
  EXPECT_THAT(message, HasSubstr("the filesystem at " + root().string() + " was left with "));
  EXPECT_THAT(message, HasSubstr("below the reserve of 40.0 MiB (pull.min_free_space: 40.0 MiB)"));
  EXPECT_THAT(message, HasSubstr("the partial layer was discarded"));
  EXPECT_THAT(message, Not(HasSubstr(std::strerror(ENOSPC))));
  // The partial layer's space is back: the filesystem holds little more than the blob.
  EXPECT_GT(AvailableBytes(), uint64_t{56} << 20);

  auto listed = stack_->images().List();
  ASSERT_OK(listed);
  EXPECT_THAT(*listed, IsEmpty());
  ExpectSmallPullsAndCheckIsClean();
}

TEST_F(BombTest, InflateRatioRefusesABombAndAcceptsAnOrdinaryImage) {
  ASSERT_NO_FATAL_FAILURE(OpenStack("min_free_space = \"0\"\nmax_inflate_ratio = 100\n"));
  auto refused = Pull("bomb");
  ASSERT_FALSE(refused) << "a layer inflating ~1000x was accepted with max_inflate_ratio = 100";
  EXPECT_THAT(refused, FailsWith(ErrorCode::kInvalidArgument));
  const std::string message = refused.error().ToString();
  std::printf("refused: %s\n", message.c_str());
  const imagegen::Descriptor& layer = bomb_->layers[0].blob;
  EXPECT_THAT(message, HasSubstr(fmt::format("layer {} is ", layer.digest.ToString())));
  EXPECT_THAT(message, HasSubstr(fmt::format("({} bytes) compressed and inflated to more than ",
                                             layer.size)));
  EXPECT_THAT(message, HasSubstr("decompression bomb"));
  EXPECT_GT(AvailableBytes(), uint64_t{56} << 20);

  // Random bytes inflate about 1x: pulled, then removed again for the check below.
  auto big = Pull("big");
  ASSERT_OK(big);
  ASSERT_TRUE(stack_->images().Remove(Ref("big"), service::RemovePinned::kRefuse).has_value());
  ExpectSmallPullsAndCheckIsClean();
}

}  // namespace
}  // namespace berth
