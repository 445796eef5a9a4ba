// End-to-end tests of pull + unpack: images generated with imagegen, pushed to a real
// Distribution registry, pulled by berth::pull::Puller with berth::unpack::Unpacker as its layer
// handler into real overlay and native snapshotters, and mounted for real. The reference for
// "correct" is umoci (`umoci raw unpack` of the same image copied out by skopeo); the proof that
// a rootfs is usable is crun running a static busybox in it. Needs root (mounts, devices,
// ownership); tests skip with the reason otherwise.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/unique_fd.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "berth/snapshot/erofs_snapshotter.h"
#include "berth/snapshot/mount.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "berth/snapshot/snapshot_test_util.h"
#include "berth/unpack/unpacker.h"
#include "test/integration/pull_fixture.h"
#include "testing/child_process.h"
#include "testing/fault_proxy.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

extern char** environ;

using ::berth::testing::FailsWith;

namespace berth::unpack {
namespace {

namespace fs = std::filesystem;
using berth::testing::ChildProcess;
using berth::testing::FaultProxy;
using berth::testing::TestRegistry;
using ::testing::HasSubstr;

enum class Snapshotters { kOverlay, kNative, kErofs };

std::string SnapshotterName(Snapshotters kind) {
  switch (kind) {
    case Snapshotters::kOverlay:
      return "overlay";
    case Snapshotters::kNative:
      return "native";
    case Snapshotters::kErofs:
      return "erofs";
  }
  return "unknown";
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool HaveTool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// Runs a program to completion; its output goes to `log`. Returns the exit status text.
Result<berth::testing::ExitStatus> RunTool(
    const std::vector<std::string>& argv, const fs::path& log,
    std::chrono::seconds timeout = std::chrono::seconds(120)) {
  BERTH_ASSIGN_OR_RETURN(auto child, ChildProcess::Start({.argv = argv, .log_file = log}));
  return child->WaitForExit(timeout);
}

// ---------------------------------------------------------------------------------------------
// Trees compared file by file.

struct Node {
  std::string type;  // "file", "dir", "symlink", "char", "block", "fifo", "socket"
  unsigned mode = 0;
  unsigned uid = 0;
  unsigned gid = 0;
  int64_t mtime = 0;
  std::string content_digest;  // regular files
  std::string link_target;     // symlinks
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  dev_t dev = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;

  std::string Describe() const {
    std::string text =
        fmt::format("{} mode={:o} owner={}:{} mtime={}", type, mode, uid, gid, mtime);
    if (!content_digest.empty()) text += " content=" + content_digest.substr(7, 12);
    if (!link_target.empty()) text += " -> " + link_target;
    if (type == "char" || type == "block")
      text += fmt::format(" dev={}:{}", rdev_major, rdev_minor);
    for (const auto& [name, value] : xattrs) text += fmt::format(" {}={}", name, value.size());
    return text;
  }
  bool SameAs(const Node& other) const {
    return type == other.type && mode == other.mode && uid == other.uid && gid == other.gid &&
           mtime == other.mtime && content_digest == other.content_digest &&
           link_target == other.link_target && rdev_major == other.rdev_major &&
           rdev_minor == other.rdev_minor && xattrs == other.xattrs;
  }
};

using Tree = std::map<std::string, Node>;

std::map<std::string, std::string> Xattrs(const fs::path& path) {
  std::map<std::string, std::string> xattrs;
  char names[8192];
  ssize_t length = ::llistxattr(path.c_str(), names, sizeof(names));
  for (ssize_t offset = 0; length > 0 && offset < length;) {
    std::string name(names + offset);
    offset += static_cast<ssize_t>(name.size()) + 1;
    // overlayfs' own bookkeeping is not part of the image.
    if (name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")) continue;
    char value[8192];
    ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof(value));
    xattrs[name] = size >= 0 ? std::string(value, static_cast<size_t>(size)) : "<unreadable>";
  }
  return xattrs;
}

Tree Scan(const fs::path& root) {
  Tree tree;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(root, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    const fs::path path = it->path();
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
      ADD_FAILURE() << "lstat " << path;
      continue;
    }
    Node node;
    node.mode = st.st_mode & 07777;
    node.uid = st.st_uid;
    node.gid = st.st_gid;
    node.mtime = st.st_mtim.tv_sec;
    node.dev = st.st_dev;
    node.ino = st.st_ino;
    node.nlink = st.st_nlink;
    switch (st.st_mode & S_IFMT) {
      case S_IFREG:
        node.type = "file";
        node.content_digest = Digest::Sha256Of(ReadAll(path)).ToString();
        break;
      case S_IFDIR:
        node.type = "dir";
        break;
      case S_IFLNK:
        node.type = "symlink";
        node.link_target = fs::read_symlink(path).string();
        break;
      case S_IFCHR:
        node.type = "char";
        break;
      case S_IFBLK:
        node.type = "block";
        break;
      case S_IFIFO:
        node.type = "fifo";
        break;
      default:
        node.type = "other";
    }
    if (node.type == "char" || node.type == "block") {
      node.rdev_major = major(st.st_rdev);
      node.rdev_minor = minor(st.st_rdev);
    }
    node.xattrs = Xattrs(path);
    tree[path.lexically_relative(root).string()] = std::move(node);
  }
  EXPECT_FALSE(error) << "walk " << root << ": " << error.message();
  return tree;
}

// Groups of paths that are one inode (regular files with more than one name in the tree).
std::set<std::set<std::string>> HardlinkGroups(const Tree& tree) {
  std::map<std::pair<dev_t, ino_t>, std::set<std::string>> by_inode;
  for (const auto& [path, node] : tree) {
    if (node.type == "file") by_inode[{node.dev, node.ino}].insert(path);
  }
  std::set<std::set<std::string>> groups;
  for (auto& [inode, paths] : by_inode) {
    if (paths.size() > 1) groups.insert(paths);
  }
  return groups;
}

// Compares `actual` (berth) with `expected` (umoci). Returns the differences, one per line.
std::vector<std::string> CompareTrees(const Tree& actual, const Tree& expected) {
  std::vector<std::string> differences;
  for (const auto& [path, node] : expected) {
    auto found = actual.find(path);
    if (found == actual.end()) {
      differences.push_back("missing in berth: " + path + " (" + node.Describe() + ")");
      continue;
    }
    if (!found->second.SameAs(node)) {
      differences.push_back("differs: " + path + "\n    berth: " + found->second.Describe() +
                            "\n    umoci: " + node.Describe());
    }
  }
  for (const auto& [path, node] : actual) {
    if (!expected.contains(path)) {
      differences.push_back("only in berth: " + path + " (" + node.Describe() + ")");
    }
  }
  return differences;
}

// ---------------------------------------------------------------------------------------------
// Images

imagegen::Attributes At(int64_t mtime, std::optional<uint32_t> mode = std::nullopt,
                        uint32_t uid = 0, uint32_t gid = 0) {
  return {.mode = mode, .uid = uid, .gid = gid, .mtime_seconds = mtime};
}

constexpr uint64_t kMiB = 1 << 20;

// The sparse files of RichLayers()' base layer, with the bytes of data each holds (the rest of
// the file is holes).
std::map<std::string, uint64_t> RichSparseFiles() {
  return {{"var/lib/disk.img", 68 * 1024}, {"var/lib/empty.img", 0}, {"var/lib/no-map.img", 0}};
}

imagegen::FileTree RichTopTree() {
  imagegen::FileTree top;
  top.AddDirectory("srv", At(4000))
      .AddFile("srv/data", std::string(300000, 'z'), At(4001))
      .AddHardlink("srv/data-2", "srv/data", At(4001))
      .AddDirectory("home", At(4002))
      .AddDirectory("home/user", At(4003, 0750, 1000, 1000))
      .AddFile("home/user/notes", "notes", At(4004, 0640, 1000, 1000));
  return top;
}

// Four layers exercising every entry type and the layer semantics umoci and berth must agree
// on: whiteouts, opaque directories, hardlinks within and across layers, symlinks, devices,
// fifos, long names, xattrs, setuid/sticky modes, owners, mtimes, sparse files (in the base
// layer, so the native snapshotter copies them three times); the last layer is zstd.
std::vector<imagegen::Layer> RichLayers() {
  const std::string long_dir = "opt/" + std::string(120, 'd');
  const std::string long_name = long_dir + "/" + std::string(150, 'f');
  imagegen::FileTree base;
  base.AddDirectory("bin", At(1000))
      .AddFile("bin/tool", "#!/bin/sh\necho tool\n", At(1001, 0755))
      .AddFile("bin/su", "setuid", At(1002, 04755))
      .AddHardlink("bin/tool-link", "bin/tool", At(1001, 0755))
      .AddDirectory("etc", At(1003))
      .AddFile("etc/motd", "welcome\n", At(1004))
      .AddFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n", At(1005, 0644))
      .AddDirectory("var", At(1006))
      .AddDirectory("var/cache", At(1007))
      .AddFile("var/cache/a", "cached a", At(1008))
      .AddDirectory("var/cache/sub", At(1009))
      .AddFile("var/cache/sub/b", "cached b", At(1010))
      .AddDirectory("var/lib", At(1019))
      // Data at the start, a hole in the middle, data at the end.
      .AddSparseFile("var/lib/disk.img", 4 * kMiB,
                     {{.offset = 0, .data = std::string(64 * 1024, 'A')},
                      {.offset = 4 * kMiB - 4096, .data = std::string(4096, 'Z')}},
                     At(1020, 0640, 0, 6))
      // All hole, with GNU tar's map: one empty segment at the end.
      .AddSparseFile("var/lib/empty.img", 8 * kMiB, {}, At(1021))
      // All hole, with no segment at all in the map.
      .Add({.path = "var/lib/no-map.img",
            .mode = 0600,
            .mtime_seconds = 1022,
            .size = 8 * kMiB,
            .sparse_map = std::vector<imagegen::SparseSegment>{}})
      .AddDirectory("tmp", At(1011, 01777))
      .AddDirectory("home", At(1012))
      .AddDirectory("home/user", At(1013, 0700, 1000, 1000))
      .AddFile("home/user/.profile", "PS1='$ '\n", At(1014, 0600, 1000, 1000))
      .AddDirectory("dev", At(1015))
      .AddCharDevice("dev/null", 1, 3, At(1016, 0666))
      .AddBlockDevice("dev/loop9", 7, 9, At(1017, 0660, 0, 6))
      .AddFifo("dev/fifo", At(1018, 0620));
  imagegen::FileTree middle;
  middle.AddDirectory("etc", At(2000))
      .AddWhiteout("etc/motd", At(2000))
      .AddFile("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
               At(2001))
      .AddDirectory("opt", At(2002))
      .AddDirectory(long_dir, At(2003))
      .AddFile(long_name, "a long name", At(2004))
      .AddSymlink("opt/abs-link", "/etc/passwd", At(2005))
      .AddSymlink("opt/rel-link", "../bin/tool", At(2006))
      .AddSymlink("opt/dangling", "/nowhere/at/all", At(2007))
      .AddFile("opt/caps", "capable",
               {.mode = 0755, .mtime_seconds = 2008, .xattrs = {{"user.comment", "hello xattr"}}});
  imagegen::FileTree upper;
  upper.AddDirectory("var", At(3000))
      .AddDirectory("var/cache", At(3001))
      .AddOpaqueWhiteout("var/cache", At(3001))
      .AddFile("var/cache/fresh", "fresh", At(3002))
      .AddDirectory("usr", At(3003))
      .AddDirectory("usr/bin", At(3004))
      // Across layers: a new name for a file of the base layer.
      .AddHardlink("usr/bin/tool", "bin/tool", At(1001, 0755))
      .AddWhiteout("bin/su", At(3005));
  imagegen::FileTree top = RichTopTree();
  std::vector<imagegen::Layer> layers;
  for (auto [tree, compression] : {std::pair{&base, imagegen::Compression::kGzip},
                                   {&middle, imagegen::Compression::kGzip},
                                   {&upper, imagegen::Compression::kNone},
                                   {&top, imagegen::Compression::kZstd}}) {
    Result<imagegen::Layer> layer = imagegen::BuildLayer(*tree, {.compression = compression});
    EXPECT_OK(layer);
    if (layer) layers.push_back(std::move(*layer));
  }
  return layers;
}

imagegen::Image Assemble(std::vector<imagegen::Layer> layers,
                         std::vector<std::string> cmd = {"/bin/sh"}) {
  Result<imagegen::Image> image =
      imagegen::AssembleImage({.cmd = std::move(cmd)}, std::move(layers));
  EXPECT_OK(image);
  return image ? std::move(*image) : imagegen::Image{};
}

// ---------------------------------------------------------------------------------------------

class UnpackIntegrationTest : public pull::PullFixture {
 protected:
  UnpackIntegrationTest() : PullFixture("unpack-it") {}

  void SetUp() override {
    std::string reason = snapshot::testing::OverlaySkipReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
    ASSERT_NO_FATAL_FAILURE(PullFixture::SetUp());
    auto registry = TestRegistry::Start({.log_level = "warn"});
    ASSERT_OK(registry);
    registry_ = std::move(*registry);
  }

  void TearDown() override {
    mounts_.clear();
    overlay_.reset();
    native_.reset();
    erofs_.reset();
    if (!dir_.path().empty()) (void)snapshot::UnmountAll(dir_.Join("mnt"));
  }

  snapshot::Snapshotter& Snapshotter(Snapshotters kind) {
    snapshot::LocalSnapshotterOptions options{
        .root = dir_.path() / "snapshots" / SnapshotterName(kind),
        .metadata_path = dir_.path() / "metadata.db",
        .sync = Durability::kNone};
    if (kind == Snapshotters::kOverlay) {
      if (!overlay_) {
        snapshot::OverlaySnapshotterOptions overlay;
        static_cast<snapshot::LocalSnapshotterOptions&>(overlay) = options;
        auto opened = snapshot::OverlaySnapshotter::Open(overlay);
        EXPECT_OK(opened);
        overlay_ = std::move(*opened);
      }
      return *overlay_;
    }
    if (kind == Snapshotters::kErofs) {
      if (!erofs_) {
        snapshot::ErofsSnapshotterOptions erofs;
        static_cast<snapshot::LocalSnapshotterOptions&>(erofs) = options;
        auto opened = snapshot::ErofsSnapshotter::Open(erofs);
        EXPECT_OK(opened);
        erofs_ = std::move(*opened);
      }
      return *erofs_;
    }
    if (!native_) {
      snapshot::NativeSnapshotterOptions native;
      static_cast<snapshot::LocalSnapshotterOptions&>(native) = options;
      auto opened = snapshot::NativeSnapshotter::Open(native);
      EXPECT_OK(opened);
      native_ = std::move(*opened);
    }
    return *native_;
  }

  // The maintenance side of Snapshotter(kind).
  snapshot::Cleaner& Cleaner(Snapshotters kind) {
    Snapshotter(kind);  // opens it
    if (kind == Snapshotters::kErofs) return *erofs_;
    return kind == Snapshotters::kOverlay ? *overlay_ : *native_;
  }

  bool Push(const imagegen::Image& image, std::string_view repository, std::string_view tag) {
    auto client = imagegen::RegistryClient::Create({.base_url = registry_->url()});
    EXPECT_OK(client);
    if (!client) return false;
    auto pushed = imagegen::PushImage(**client, repository, tag, image);
    EXPECT_OK(pushed);
    return pushed.has_value();
  }

  // Pulls `reference` with an Unpacker into `kind`; returns the top chain ID.
  Result<Digest> PullAndUnpack(const std::string& reference, Snapshotters kind,
                               UnpackStats* stats = nullptr) {
    config::Config config = config::DefaultConfig();
    std::unique_ptr<pull::Puller> puller = MakePuller(config);
    Unpacker unpacker(Snapshotter(kind), *store_, threads_, {});
    pull::PullOptions options;
    options.platform = {.os = "linux", .architecture = "amd64"};
    options.layer_handler = &unpacker;
    Result<pull::PulledImage> pulled = puller->Pull(reference, options, {}, CancelToken::Never());
    if (stats != nullptr) *stats = unpacker.stats();
    if (!pulled) return Fail(std::move(pulled).error());
    return unpacker.chain_id();
  }

  // A read-only view of `chain_id`, mounted; lives until the test ends.
  fs::path MountView(Snapshotters kind, const Digest& chain_id) {
    const std::string key = "view-" + std::to_string(views_++);
    auto mounts = Snapshotter(kind).View(key, chain_id.ToString());
    EXPECT_OK(mounts);
    fs::path target = dir_.path() / "mnt" / key;
    fs::create_directories(target);
    if (!mounts) return target;
    auto mounted = snapshot::ScopedMount::Create(*mounts, target);
    EXPECT_OK(mounted);
    if (mounted) mounts_.push_back(std::move(*mounted));
    return target;
  }

  std::map<std::string, snapshot::Kind> Snapshots(Snapshotters kind) {
    std::map<std::string, snapshot::Kind> found;
    auto walked = Snapshotter(kind).Walk([&](const snapshot::Info& info) -> Result<void> {
      found[info.name] = info.kind;
      return Ok();
    });
    EXPECT_OK(walked);
    return found;
  }

  // umoci's rootfs of `repository:tag`, copied out of the registry with skopeo.
  Result<fs::path> UmociRootfs(const std::string& repository, const std::string& tag) {
    const fs::path layout = dir_.path() / "oci-layout";
    const fs::path rootfs = dir_.path() / ("umoci-" + tag);
    const fs::path log = dir_.path() / "tools.log";
    BERTH_ASSIGN_OR_RETURN(auto copied,
                           RunTool({"skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                    "docker://" + registry_->host() + "/" + repository + ":" + tag,
                                    "oci:" + layout.string() + ":" + tag},
                                   log));
    if (!copied.success()) {
      return Fail(ErrorCode::kInternal, "skopeo copy failed: " + ReadAll(log));
    }
    BERTH_ASSIGN_OR_RETURN(auto unpacked, RunTool({"umoci", "raw", "unpack", "--image",
                                                   layout.string() + ":" + tag, rootfs.string()},
                                                  log));
    if (!unpacked.success()) {
      return Fail(ErrorCode::kInternal, "umoci raw unpack failed: " + ReadAll(log));
    }
    return rootfs;
  }

  std::unique_ptr<TestRegistry> registry_;
  LayerThreadBudget threads_;
  std::unique_ptr<snapshot::LocalSnapshotter> overlay_;
  std::unique_ptr<snapshot::LocalSnapshotter> native_;
  std::unique_ptr<snapshot::LocalSnapshotter> erofs_;
  std::vector<snapshot::ScopedMount> mounts_;
  int views_ = 0;
};

// ---------------------------------------------------------------------------------------------
// 1. The rootfs equals umoci's, file by file.

// Where the first hole of the file at `path` starts (its size when it has none; -1 when it
// cannot be read).
off_t FirstHole(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd ? ::lseek(fd.get(), 0, SEEK_HOLE) : -1;
}

TEST_F(UnpackIntegrationTest, RootfsEqualsUmociForEverySnapshotter) {
  for (const char* tool : {"skopeo", "umoci"}) {
    if (!HaveTool(tool)) GTEST_SKIP() << tool << " is not installed (scripts/setup.sh)";
  }
  std::vector<imagegen::Layer> layers = RichLayers();
  ASSERT_EQ(layers.size(), 4u);
  ASSERT_EQ(layers[3].compression, imagegen::Compression::kZstd);
  imagegen::Image image = Assemble(layers);
  ASSERT_TRUE(Push(image, "rich", "v1"));
  const std::string reference = registry_->host() + "/rich:v1";
  // umoci 0.4.7 (Debian 12) cannot read zstd layers, so it unpacks a twin of the image whose
  // last layer is the same tar (same diffID) gzip-compressed.
  Result<imagegen::Layer> gzip_top = imagegen::BuildLayer(RichTopTree());
  ASSERT_TRUE(gzip_top);
  ASSERT_EQ(gzip_top->diff_id, layers[3].diff_id);
  layers[3] = std::move(*gzip_top);
  ASSERT_TRUE(Push(Assemble(std::move(layers)), "rich", "gzip"));
  auto umoci = UmociRootfs("rich", "gzip");
  ASSERT_OK(umoci);
  Tree expected = Scan(*umoci);
  ASSERT_GE(expected.size(), 33u);
  // What umoci made is what the layers say (so the comparison is not vacuous).
  EXPECT_FALSE(expected.contains("etc/motd"));
  EXPECT_FALSE(expected.contains("bin/su"));
  EXPECT_FALSE(expected.contains("var/cache/a"));
  EXPECT_EQ(expected.at("dev/loop9").type, "block");
  for (const auto& [path, data_bytes] : RichSparseFiles()) {
    ASSERT_TRUE(expected.contains(path)) << path;
    EXPECT_EQ(expected.at(path).type, "file") << path;
  }

  std::vector<Snapshotters> kinds = {Snapshotters::kOverlay, Snapshotters::kNative};
  if (snapshot::ErofsSnapshotter::KernelSupportsErofs()) kinds.push_back(Snapshotters::kErofs);
  for (Snapshotters kind : kinds) {
    SCOPED_TRACE(SnapshotterName(kind));
    UnpackStats stats;
    Result<Digest> chain_id = PullAndUnpack(reference, kind, &stats);
    ASSERT_OK(chain_id);
    EXPECT_EQ(stats.committed, 4u);
    const fs::path view = MountView(kind, *chain_id);
    Tree actual = Scan(view);
    // "bin" has no entry of its own in the layer that whites out bin/su. On overlay the upper
    // dir created for the whiteout takes the lower layer's mode, owner and mtime; on native the
    // deletion's change to the lower directory is undone: both as umoci's does (compared).
    std::vector<std::string> differences = CompareTrees(actual, expected);
    EXPECT_TRUE(differences.empty()) << ::testing::PrintToString(differences);

    // Same content as umoci's (compared above), and the holes are still holes: on native, after
    // three copies of the base layer. (EROFS reports blocks from a file's size; there a hole
    // shows through SEEK_HOLE before the end.)
    for (const auto& [path, data_bytes] : RichSparseFiles()) {
      struct stat st;
      ASSERT_EQ(::lstat((view / path).c_str(), &st), 0) << path;
      EXPECT_GE(static_cast<uint64_t>(st.st_size), 4 * kMiB) << path;
      if (kind == Snapshotters::kErofs) {
        const off_t hole = FirstHole(view / path);
        EXPECT_GE(hole, 0) << path;
        EXPECT_LT(hole, st.st_size) << path << " lost its holes";
        continue;
      }
      EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, data_bytes + 64 * 1024)
          << path << " lost its holes: " << st.st_blocks << " blocks of 512 bytes for "
          << st.st_size << " bytes";
    }

    std::set<std::set<std::string>> expected_groups = HardlinkGroups(expected);
    EXPECT_TRUE(expected_groups.contains({"bin/tool", "bin/tool-link", "usr/bin/tool"}));
    EXPECT_TRUE(expected_groups.contains({"srv/data", "srv/data-2"}));
    std::set<std::set<std::string>> actual_groups = HardlinkGroups(actual);
    if (kind == Snapshotters::kNative) {
      EXPECT_EQ(actual_groups, expected_groups);
    } else {
      // Known difference: an overlay (or erofs) layer cannot hold a hard link to a lower
      // layer's inode, so berth copies the file into the upper layer (same content and
      // metadata, checked above) and that one name leaves the group. Links within a layer stay
      // links.
      EXPECT_EQ(actual_groups, (std::set<std::set<std::string>>{{"bin/tool", "bin/tool-link"},
                                                                {"srv/data", "srv/data-2"}}));
    }
  }
}

// The erofs snapshotter's rootfs (each layer streamed into an EROFS image, stacked by overlayfs
// over read-only mounts of the images) equals the overlayfs snapshotter's for the same image.
TEST_F(UnpackIntegrationTest, ErofsRootfsEqualsOverlayfs) {
  if (!snapshot::ErofsSnapshotter::KernelSupportsErofs()) GTEST_SKIP() << "no erofs in the kernel";
  ASSERT_TRUE(Push(Assemble(RichLayers()), "rich", "v1"));
  const std::string reference = registry_->host() + "/rich:v1";
  std::map<Snapshotters, Tree> trees;
  for (Snapshotters kind : {Snapshotters::kOverlay, Snapshotters::kErofs}) {
    SCOPED_TRACE(SnapshotterName(kind));
    UnpackStats stats;
    Result<Digest> chain_id = PullAndUnpack(reference, kind, &stats);
    ASSERT_OK(chain_id);
    EXPECT_EQ(stats.committed, 4u);
    trees[kind] = Scan(MountView(kind, *chain_id));
  }
  const Tree& expected = trees[Snapshotters::kOverlay];
  ASSERT_GE(expected.size(), 33u);
  EXPECT_EQ(expected.at("dev/loop9").type, "block");
  std::vector<std::string> differences = CompareTrees(trees[Snapshotters::kErofs], expected);
  EXPECT_TRUE(differences.empty()) << ::testing::PrintToString(differences);
  EXPECT_EQ(HardlinkGroups(trees[Snapshotters::kErofs]), HardlinkGroups(expected));
  // The layers are images: one layer.erofs per committed snapshot, each clean to erofs-utils'
  // fsck.erofs, every file's data read through.
  size_t images = 0;
  for (const auto& entry : fs::directory_iterator(dir_.path() / "snapshots/erofs/snapshots")) {
    const fs::path image = entry.path() / "layer.erofs";
    if (!fs::is_regular_file(image)) continue;
    ++images;
    auto fsck = berth::testing::RunCommand({"/usr/bin/fsck.erofs", "--extract", image.string()},
                                           dir_.path());
    ASSERT_OK(fsck);
    EXPECT_EQ(fsck->exit_code, 0) << image << ": " << fsck->out << fsck->err;
  }
  EXPECT_EQ(images, 4u);
}

// A POSIX ACL as the value of system.posix_acl_access/_default: version 2, then little-endian
// {tag, permissions, id} entries sorted by tag (user_obj 1, user 2, group_obj 4, group 8,
// mask 0x10, other 0x20) and id.
std::string AclXattr(std::initializer_list<std::array<uint32_t, 3>> entries) {
  std::string value;
  auto put = [&](auto number) {
    value.append(reinterpret_cast<const char*>(&number), sizeof(number));
  };
  put(uint32_t{2});
  for (const auto& [tag, permissions, id] : entries) {
    put(static_cast<uint16_t>(tag));
    put(static_cast<uint16_t>(permissions));
    put(id);
  }
  return value;
}

// A layer writes a file under a directory of a lower layer without an entry for the directory
// itself. In the merged view of every snapshotter, the directory shows exactly what the lower
// layer gave it: mode, owner, mtime and every xattr (user.*, trusted.*, POSIX ACLs), as
// overlayfs copy-up, containerd and umoci keep them. On overlay berth makes that directory in
// the new layer's upper dir; on erofs in the layer's image, from the lower layer's mount, once
// that layer is committed; on native it is the copy of the parent's tree.
TEST_F(UnpackIntegrationTest, ImplicitParentDirectoriesKeepTheLowerXattrs) {
  constexpr uint32_t kNoId = 0xffffffff;
  const std::map<std::string, std::string> xattrs = {
      {"user.comment", "lower"},
      {"trusted.origin", "lower-layer"},
      {"system.posix_acl_access",
       AclXattr({{1, 7, kNoId}, {2, 5, 1234}, {4, 5, kNoId}, {0x10, 5, kNoId}, {0x20, 0, kNoId}})},
      {"system.posix_acl_default",
       AclXattr({{1, 7, kNoId}, {4, 5, kNoId}, {8, 7, 42}, {0x10, 7, kNoId}, {0x20, 0, kNoId}})},
  };
  imagegen::FileTree lower;
  lower.AddDirectory("srv", At(100))
      .AddDirectory("srv/data",
                    {.mode = 0750, .uid = 7, .gid = 8, .mtime_seconds = 101, .xattrs = xattrs})
      .AddFile("srv/data/old", "old", At(102));
  imagegen::FileTree upper;
  upper.AddFile("srv/data/new", "new", At(200));
  std::vector<imagegen::Layer> layers;
  for (const imagegen::FileTree* tree : {&lower, &upper}) {
    Result<imagegen::Layer> layer = imagegen::BuildLayer(*tree);
    ASSERT_OK(layer);
    layers.push_back(std::move(*layer));
  }
  ASSERT_TRUE(Push(Assemble(std::move(layers)), "implicit", "xattrs"));
  const std::string reference = registry_->host() + "/implicit:xattrs";

  std::optional<Tree> umoci_tree;
  if (HaveTool("skopeo") && HaveTool("umoci")) {
    auto umoci = UmociRootfs("implicit", "xattrs");
    ASSERT_OK(umoci);
    umoci_tree = Scan(*umoci);
    EXPECT_EQ(umoci_tree->at("srv/data").xattrs, xattrs) << "umoci";
  }
  std::vector<Snapshotters> kinds = {Snapshotters::kOverlay, Snapshotters::kNative};
  if (snapshot::ErofsSnapshotter::KernelSupportsErofs()) kinds.push_back(Snapshotters::kErofs);
  for (Snapshotters kind : kinds) {
    SCOPED_TRACE(SnapshotterName(kind));
    Result<Digest> chain_id = PullAndUnpack(reference, kind);
    ASSERT_OK(chain_id);
    const fs::path view = MountView(kind, *chain_id);
    EXPECT_EQ(ReadAll(view / "srv/data/new"), "new");
    Tree actual = Scan(view);
    ASSERT_TRUE(actual.contains("srv/data"));
    EXPECT_EQ(actual.at("srv/data").xattrs, xattrs);
    struct stat st;
    ASSERT_EQ(::lstat((view / "srv/data").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    EXPECT_EQ(st.st_uid, 7u);
    EXPECT_EQ(st.st_gid, 8u);
    EXPECT_EQ(st.st_mtim.tv_sec, 101);
    // The whole tree as umoci made it: the files created under the directory's default ACL
    // too, which get the archive's mode and ACLs, not inherited ones.
    if (umoci_tree) {
      std::vector<std::string> differences = CompareTrees(actual, *umoci_tree);
      EXPECT_TRUE(differences.empty()) << ::testing::PrintToString(differences);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Wrong diffID.

TEST_F(UnpackIntegrationTest, WrongDiffIdIsDataLossAndLeavesNoSnapshot) {
  imagegen::FileTree tree;
  tree.AddFile("hello", "world");
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  ASSERT_TRUE(layer);
  layer->diff_id = Digest::Sha256Of("a different layer");
  imagegen::Image image = Assemble({std::move(*layer)});
  ASSERT_TRUE(Push(image, "wrong", "v1"));
  for (Snapshotters kind : {Snapshotters::kOverlay, Snapshotters::kNative}) {
    SCOPED_TRACE(SnapshotterName(kind));
    Result<Digest> chain_id = PullAndUnpack(registry_->host() + "/wrong:v1", kind);
    ASSERT_FALSE(chain_id);
    EXPECT_THAT(chain_id, FailsWith(ErrorCode::kDataLoss));
    EXPECT_THAT(chain_id.error().ToString(), HasSubstr("diff_ids[0]"));
    EXPECT_TRUE(Snapshots(kind).empty()) << "no committed and no active snapshot";
    auto cleaned = Cleaner(kind).Cleanup();
    ASSERT_TRUE(cleaned);
    EXPECT_TRUE(cleaned->empty()) << "no stray directories either";
  }
}

// ---------------------------------------------------------------------------------------------
// 3. A second image sharing three layers: only the new layer is fetched and unpacked.

TEST_F(UnpackIntegrationTest, SharedLayersAreNeitherFetchedNorUnpackedAgain) {
  std::vector<imagegen::Layer> layers;
  for (int i = 0; i < 4; ++i) {
    imagegen::FileTree tree;
    tree.AddFile("layer-" + std::to_string(i), std::string(50000 + i, static_cast<char>('a' + i)));
    Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
    ASSERT_TRUE(layer);
    layers.push_back(std::move(*layer));
  }
  imagegen::Image first = Assemble({layers[0], layers[1], layers[2]});
  imagegen::Image second = Assemble({layers[0], layers[1], layers[2], layers[3]}, {"/bin/other"});
  ASSERT_TRUE(Push(first, "shared", "first"));
  ASSERT_TRUE(Push(second, "shared", "second"));
  auto proxy = FaultProxy::Start(registry_->host());
  ASSERT_OK(proxy);

  UnpackStats stats;
  Result<Digest> first_chain =
      PullAndUnpack((*proxy)->host() + "/shared:first", Snapshotters::kOverlay, &stats);
  ASSERT_OK(first_chain);
  EXPECT_EQ(stats.committed, 3u);
  EXPECT_EQ((*proxy)->RequestCount("GET", "/blobs/"), 4u);  // config + 3 layers

  (*proxy)->ResetCounters();
  Result<Digest> second_chain =
      PullAndUnpack((*proxy)->host() + "/shared:second", Snapshotters::kOverlay, &stats);
  ASSERT_OK(second_chain);
  EXPECT_EQ((*proxy)->RequestCount("GET", "/blobs/"), 2u) << "config + the one new layer";
  EXPECT_EQ((*proxy)->RequestCount("GET", layers[3].blob.digest.ToString()), 1u);
  EXPECT_EQ(stats.already_present, 3u);
  EXPECT_EQ(stats.committed, 1u);
  EXPECT_EQ(Snapshots(Snapshotters::kOverlay).size(), 4u);
  EXPECT_EQ(Snapshotter(Snapshotters::kOverlay).Stat(second_chain->ToString())->parent,
            first_chain->ToString());
  fs::path root = MountView(Snapshotters::kOverlay, *second_chain);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ReadAll(root / ("layer-" + std::to_string(i))).size(), 50000u + i);
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Hostile layers.

TEST_F(UnpackIntegrationTest, HostileLayersAreRefusedAndChangeNothingOutside) {
  const fs::path outside = dir_.path() / "outside";
  fs::create_directories(outside);
  struct Case {
    std::string name;
    imagegen::FileTree tree;
    ErrorCode code;
  };
  std::vector<Case> cases;
  {
    imagegen::FileTree tree;
    tree.AddFile("ok", "ok");
    tree.Add({.path = "../../../../../../../" + outside.string().substr(1) + "/dotdot"}, "pwned");
    cases.push_back({"dotdot", tree, ErrorCode::kPermissionDenied});
  }
  {
    imagegen::FileTree tree;
    tree.Add({.path = "x/../../escape"}, "pwned");
    cases.push_back({"inner-dotdot", tree, ErrorCode::kPermissionDenied});
  }
  {
    imagegen::FileTree tree;
    tree.AddWhiteout("..");
    cases.push_back({"whiteout-dotdot", tree, ErrorCode::kPermissionDenied});
  }
  for (Case& hostile : cases) {
    SCOPED_TRACE(hostile.name);
    Result<imagegen::Layer> layer = imagegen::BuildLayer(hostile.tree);
    ASSERT_OK(layer);
    imagegen::Image image = Assemble({std::move(*layer)});
    ASSERT_TRUE(Push(image, "hostile", hostile.name));
    for (Snapshotters kind : {Snapshotters::kOverlay, Snapshotters::kNative}) {
      SCOPED_TRACE(SnapshotterName(kind));
      Result<Digest> chain_id = PullAndUnpack(registry_->host() + "/hostile:" + hostile.name, kind);
      ASSERT_FALSE(chain_id);
      EXPECT_TRUE(chain_id.error().code() == hostile.code ||
                  chain_id.error().code() == ErrorCode::kInvalidArgument)
          << chain_id.error().ToString();
      EXPECT_THAT(chain_id.error().ToString(), HasSubstr(".."));
      EXPECT_TRUE(Snapshots(kind).empty());
    }
  }
  EXPECT_TRUE(fs::is_empty(outside)) << "something was written outside the snapshot root";
  EXPECT_FALSE(fs::exists(dir_.path() / "escape"));
  EXPECT_FALSE(fs::exists(dir_.path() / "snapshots" / "escape"));
}

// A symlink pointing out of the root, then a file written through it: contained in the root.
TEST_F(UnpackIntegrationTest, SymlinkEscapeIsContained) {
  const fs::path outside = dir_.path() / "outside";
  fs::create_directories(outside);
  imagegen::FileTree tree;
  tree.AddSymlink("evil", outside.string());
  tree.AddFile("evil/pwned", "pwned");
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  ASSERT_TRUE(layer);
  ASSERT_TRUE(Push(Assemble({std::move(*layer)}), "hostile", "symlink"));
  for (Snapshotters kind : {Snapshotters::kOverlay, Snapshotters::kNative}) {
    SCOPED_TRACE(SnapshotterName(kind));
    Result<Digest> chain_id = PullAndUnpack(registry_->host() + "/hostile:symlink", kind);
    if (chain_id) {
      // Resolved inside the root: the file lands under <rootfs>/<outside path>.
      fs::path root = MountView(kind, *chain_id);
      EXPECT_EQ(ReadAll(root / outside.relative_path() / "pwned"), "pwned");
    }
  }
  EXPECT_TRUE(fs::is_empty(outside)) << "a write went through the symlink";
}

// ---------------------------------------------------------------------------------------------
// 5. The end-to-end proof: busybox runs in the rootfs that `berth pull` + `berth mount` made.

// Runs the berth binary with `args`.
berth::testing::CommandResult RunCli(const fs::path& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BERTH_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  Result<berth::testing::CommandResult> run = berth::testing::RunCommand(argv, dir);
  EXPECT_OK(run);
  return run.value_or(berth::testing::CommandResult{});
}

// Runs `busybox echo ok` in `rootfs` with an OCI runtime: crun, then runc, and as a last
// resort chroot (crun refuses hybrid cgroup v1/v2 hosts such as this VM). The one used is
// returned in `how`.
Result<std::string> RunBusybox(const fs::path& work, const fs::path& rootfs, std::string& how) {
  const fs::path bundle = work / "bundle";
  fs::create_directories(bundle);
  const fs::path log = work / "runtime.log";
  for (const char* runtime : {"crun", "runc"}) {
    if (!HaveTool(runtime)) continue;
    fs::remove(bundle / "config.json");
    BERTH_ASSIGN_OR_RETURN(auto spec, RunTool({runtime, "spec", "--bundle", bundle.string()}, log));
    if (!spec.success()) continue;
    nlohmann::json config = nlohmann::json::parse(ReadAll(bundle / "config.json"));
    config["root"] = {{"path", rootfs.string()}, {"readonly", false}};
    config["process"]["args"] = {"/bin/busybox", "echo", "ok"};
    config["process"]["terminal"] = false;
    std::ofstream(bundle / "config.json") << config.dump(2);
    const fs::path out = work / (std::string(runtime) + ".out");
    fs::remove(out);
    BERTH_ASSIGN_OR_RETURN(
        auto ran, RunTool({runtime, "run", "--bundle", bundle.string(), "berth-unpack-test"}, out));
    if (ran.success()) {
      how = runtime;
      return ReadAll(out);
    }
    std::fprintf(stderr, "%s could not run the container here (%s): %s\n", runtime,
                 ran.ToString().c_str(), ReadAll(out).c_str());
    (void)RunTool({runtime, "delete", "-f", "berth-unpack-test"}, log);
  }
  const fs::path out = work / "chroot.out";
  BERTH_ASSIGN_OR_RETURN(auto ran,
                         RunTool({"chroot", rootfs.string(), "/bin/busybox", "echo", "ok"}, out));
  how = "chroot";
  if (!ran.success()) {
    return Fail(ErrorCode::kInternal, "chroot busybox failed: " + ReadAll(out));
  }
  return ReadAll(out);
}

// The /proc/self/mounts line of the filesystem mounted at `target` ("" if none).
std::string MountLineOf(const fs::path& target) {
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source;
    std::string where;
    fields >> source >> where;
    if (where == target.string()) return line;
  }
  return "";
}

// On each snapshotter (overlayfs; erofs where the kernel has it).
TEST_F(UnpackIntegrationTest, BusyboxRunsInTheMountedRootfs) {
  if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "busybox-static is not installed";
  imagegen::FileTree tree;
  tree.AddDirectory("bin").AddFile("bin/busybox", ReadAll("/bin/busybox"), {.mode = 0755});
  for (const char* applet : {"sh", "echo", "ls", "cat"}) {
    tree.AddSymlink(std::string("bin/") + applet, "busybox");
  }
  tree.AddDirectory("proc").AddDirectory("dev").AddDirectory("sys").AddDirectory("tmp",
                                                                                 {.mode = 01777});
  imagegen::FileTree etc;
  etc.AddDirectory("etc").AddFile("etc/hostname", "berth\n");
  std::vector<imagegen::Layer> layers;
  for (auto* source : {&tree, &etc}) {
    Result<imagegen::Layer> layer = imagegen::BuildLayer(*source);
    ASSERT_TRUE(layer);
    layers.push_back(std::move(*layer));
  }
  ASSERT_TRUE(Push(Assemble(std::move(layers), {"/bin/sh"}), "busybox", "static"));
  const std::string reference = registry_->host() + "/busybox:static";
  const fs::path config_file = dir_.path() / "config.toml";
  std::ofstream(config_file) << "";
  std::vector<std::string> snapshotters = {"overlayfs"};
  if (snapshot::ErofsSnapshotter::KernelSupportsErofs()) snapshotters.push_back("erofs");
  for (const std::string& snapshotter : snapshotters) {
    SCOPED_TRACE(snapshotter);
    const std::string root = (dir_.path() / ("cli-root-" + snapshotter)).string();
    berth::testing::CommandResult pulled =
        RunCli(dir_.path(), {"--config", config_file.string(), "--root", root, "pull",
                             "--snapshotter", snapshotter, "--platform", "linux/amd64", reference});
    ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
    const fs::path rootfs = dir_.path() / "mnt" / snapshotter;
    fs::create_directories(rootfs);
    berth::testing::CommandResult mounted = RunCli(
        dir_.path(),
        {"--config", config_file.string(), "--root", root, "mount", reference, rootfs.string()});
    ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
    EXPECT_EQ(ReadAll(rootfs / "etc/hostname"), "berth\n");
    // The container's view is overlayfs over the snapshotter's layers: on erofs, over the
    // read-only mounts of its layer images.
    const std::string mount_line = MountLineOf(rootfs);
    EXPECT_THAT(mount_line, HasSubstr(" overlay "));
    EXPECT_THAT(mount_line, HasSubstr("/snapshots/" + snapshotter + "/"));

    std::string how;
    Result<std::string> output = RunBusybox(dir_.path(), rootfs, how);
    std::fprintf(stderr, "busybox ran on %s with: %s\n", snapshotter.c_str(), how.c_str());
    RecordProperty("runtime", how);
    ASSERT_OK(output);
    EXPECT_EQ(*output, "ok\n");

    berth::testing::CommandResult unmounted =
        RunCli(dir_.path(),
               {"--config", config_file.string(), "--root", root, "unmount", rootfs.string()});
    EXPECT_EQ(unmounted.exit_code, 0) << unmounted.err;
    EXPECT_FALSE(fs::exists(rootfs / "etc/hostname")) << "still mounted";
    berth::testing::CommandResult again =
        RunCli(dir_.path(),
               {"--config", config_file.string(), "--root", root, "unmount", rootfs.string()});
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_THAT(again.err, HasSubstr("not mounted by `berth mount`"));
  }
}

}  // namespace
}  // namespace berth::unpack
