// Images written by ImageWriter, checked by Debian's erofs-utils (fsck.erofs, dump.erofs) and
// by the kernel: each image is mounted (file-backed EROFS) and its tree compared with what
// TarApplier makes of the same tar in a directory. Needs root (mounts, device nodes, trusted.*
// xattrs) and spawns erofs-utils.
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "berth/archive/tar_applier.h"
#include "berth/archive/tar_reader.h"
#include "berth/archive/test_util.h"
#include "berth/base/unique_fd.h"
#include "berth/erofs/image_writer.h"
#include "testing/result_matchers.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"

namespace berth::erofs {
namespace {

namespace fs = std::filesystem;
using archive::testing::TarOf;
using ::berth::testing::TempDir;
using imagegen::Attributes;
using imagegen::FileTree;
using ::testing::HasSubstr;

constexpr char kFsck[] = "/usr/bin/fsck.erofs";
constexpr char kDump[] = "/usr/bin/dump.erofs";

// Files larger than this are not read whole by Describe() (the 5 GiB sparse file).
constexpr off_t kContentLimit = 16 << 20;

// One entry of a tree, as the tests compare it.
struct Described {
  std::string text;  // type, mode, owner, size, device, times, target, xattrs, content
  ino_t ino = 0;
};

// `text` quoted, or its size and hash when it is long (keeps failure output readable).
std::string Quoted(const std::string& text) {
  if (text.size() <= 64) return fmt::format("{:?}", text);
  return fmt::format("<{} bytes, hash {:x}>", text.size(), std::hash<std::string>()(text));
}

std::string Xattrs(const fs::path& path) {
  char names[65536];
  ssize_t n = llistxattr(path.c_str(), names, sizeof(names));
  if (n <= 0) return "";
  std::map<std::string, std::string> xattrs;
  for (const char* name = names; name < names + n; name += strlen(name) + 1) {
    std::string value(65536, '\0');
    ssize_t size = lgetxattr(path.c_str(), name, value.data(), value.size());
    value.resize(size < 0 ? 0 : static_cast<size_t>(size));
    xattrs[name] = value;
  }
  std::string out;
  for (const auto& [name, value] : xattrs) out += fmt::format(" {}={}", name, Quoted(value));
  return out;
}

std::string Content(const fs::path& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "<unreadable>";
  std::string content;
  char buffer[65536];
  ssize_t n;
  while ((n = read(fd.get(), buffer, sizeof(buffer))) > 0) content.append(buffer, n);
  return n < 0 ? "<read error>" : content;
}

// Calls fn(relative path, full path) for everything below `root`, parents first, never
// following symlinks.
template <typename Fn>
void Walk(const fs::path& root, const std::string& relative, Fn&& fn) {
  fs::path here = relative.empty() ? root : root / relative;
  std::vector<std::string> names;
  DIR* dir = opendir(here.c_str());
  if (dir == nullptr) return;
  while (dirent* child = readdir(dir)) {
    std::string_view name = child->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(dir);
  for (const std::string& name : names) {
    std::string child = relative.empty() ? name : relative + "/" + name;
    struct stat st;
    fs::path full = root / child;
    if (lstat(full.c_str(), &st) != 0) continue;
    fn(child, full, st);
    if (S_ISDIR(st.st_mode)) Walk(root, child, fn);
  }
}

// Everything under `root` (root excluded) by relative path. Leaves out the mtime of whiteout
// devices (TarApplier leaves them the time they were made) and of the `skip_mtime` paths.
std::map<std::string, Described> Describe(const fs::path& root,
                                          const std::vector<std::string>& skip_mtime = {}) {
  std::map<std::string, Described> out;
  Walk(root, "", [&](const std::string& relative, const fs::path& full, const struct stat& st) {
    bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == 0;
    bool skip =
        whiteout || std::find(skip_mtime.begin(), skip_mtime.end(), relative) != skip_mtime.end();
    std::string text = fmt::format("mode={:o} uid={} gid={}", st.st_mode, st.st_uid, st.st_gid);
    if (!skip) text += fmt::format(" mtime={}.{:09}", st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      text += fmt::format(" rdev={}:{}", major(st.st_rdev), minor(st.st_rdev));
    }
    if (S_ISREG(st.st_mode)) {
      text += fmt::format(" size={} nlink={}", st.st_size, st.st_nlink);
      if (st.st_size <= kContentLimit) text += " content=" + Quoted(Content(full));
    }
    if (S_ISLNK(st.st_mode)) text += " -> " + Quoted(fs::read_symlink(full).string());
    text += Xattrs(full);
    out[relative] = {text, st.st_ino};
  });
  return out;
}

// Which paths share an inode, as groups of two or more paths.
std::vector<std::vector<std::string>> LinkGroups(const std::map<std::string, Described>& tree) {
  std::map<ino_t, std::vector<std::string>> by_inode;
  for (const auto& [path, described] : tree) by_inode[described.ino].push_back(path);
  std::vector<std::vector<std::string>> groups;
  for (auto& [ino, paths] : by_inode) {
    if (paths.size() > 1) groups.push_back(paths);
  }
  std::sort(groups.begin(), groups.end());
  return groups;
}

std::map<std::string, std::string> Texts(const std::map<std::string, Described>& tree) {
  std::map<std::string, std::string> out;
  for (const auto& [path, described] : tree) out[path] = described.text;
  return out;
}

// A mount that is undone when the object goes away.
class Mount {
 public:
  Mount(const fs::path& source, const fs::path& target, const char* type, const char* data,
        unsigned long flags = MS_RDONLY)
      : target_(target) {
    fs::create_directories(target);
    if (mount(source.c_str(), target.c_str(), type, flags, data) != 0) {
      error_ = fmt::format("mount -t {} {} {}: {}", type, source.string(), target.string(),
                           strerror(errno));
      target_.clear();
    }
  }
  ~Mount() {
    if (!target_.empty()) umount2(target_.c_str(), MNT_DETACH);
  }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  fs::path target_;
  std::string error_;
};

class ImageWriterMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounts, device nodes and trusted.* xattrs need root";
    if (access(kFsck, X_OK) != 0) GTEST_SKIP() << "erofs-utils is not installed";
    ASSERT_OK_AND_ASSIGN(dir_, TempDir::Create("erofs"));
  }

  // Writes `tar` as the image `name`.erofs; returns its path.
  fs::path WriteImage(std::string_view tar, std::string_view name,
                      ImageSummary* summary = nullptr) {
    fs::path image = dir_.Join(fmt::format("{}.erofs", name));
    auto writer = ImageWriter::Create(image);
    EXPECT_OK(writer);
    if (!writer) return image;
    archive::TarReader reader(**writer);
    EXPECT_OK(reader.Write(tar));
    EXPECT_OK(reader.Finish());
    auto finished = (*writer)->Finish();
    EXPECT_OK(finished);
    if (finished && summary != nullptr) *summary = *finished;
    return image;
  }

  // Applies `tar` with TarApplier (overlay whiteouts, no lower dirs) into `name`.dir.
  fs::path Apply(std::string_view tar, std::string_view name) {
    fs::path root = dir_.Join(fmt::format("{}.dir", name));
    fs::create_directories(root);
    UniqueFd fd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto applier = archive::TarApplier::Create(fd.get(), {});
    EXPECT_OK(applier);
    if (!applier) return root;
    archive::TarReader reader(**applier);
    EXPECT_OK(reader.Write(tar));
    EXPECT_OK(reader.Finish());
    EXPECT_OK((*applier)->Finish());
    return root;
  }

  testing::CommandResult Run(const std::vector<std::string>& argv) {
    auto result = testing::RunCommand(argv, dir_.path());
    EXPECT_OK(result);
    return result ? *result : testing::CommandResult{};
  }

  // fsck.erofs must find the image clean, also when extracting every file.
  void ExpectFsckClean(const fs::path& image, bool extract = true) {
    testing::CommandResult fsck = Run({kFsck, image.string()});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
    if (!extract) return;
    fs::path extracted = dir_.Join(image.stem().string() + ".extracted");
    testing::CommandResult extract_run =
        Run({kFsck, "--extract=" + extracted.string(), image.string()});
    EXPECT_EQ(extract_run.exit_code, 0) << extract_run.out << extract_run.err;
  }

  // Mounts the image of `tar` and compares it with TarApplier's result from the same tar.
  void ExpectSameAsApplier(std::string_view tar, std::string_view name,
                           const std::vector<std::string>& skip_mtime = {}) {
    fs::path image = WriteImage(tar, name);
    ExpectFsckClean(image);
    fs::path applied = Apply(tar, name);
    Mount mounted(image, dir_.Join(fmt::format("{}.mnt", name)), "erofs", nullptr);
    ASSERT_TRUE(mounted.ok()) << mounted.error();
    auto expected = Describe(applied, skip_mtime);
    auto actual = Describe(dir_.Join(fmt::format("{}.mnt", name)), skip_mtime);
    EXPECT_EQ(Texts(actual), Texts(expected));
    EXPECT_EQ(LinkGroups(actual), LinkGroups(expected));
  }

  TempDir dir_;
};

// A valid POSIX ACL xattr value (version 2): user::rw-, user:1000:r--, group::r--, mask::r--,
// other::r--, which matches mode 0644 (so setting it does not change the mode).
std::string AccessAcl() {
  std::string value;
  auto put = [&](uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) value.push_back(static_cast<char>(v >> (8 * i)));
  };
  put(2, 4);
  const uint32_t kUndefinedId = 0xffffffff;
  struct {
    uint16_t tag, perm;
    uint32_t id;
  } entries[] = {{0x01, 6, kUndefinedId},
                 {0x02, 4, 1000},
                 {0x04, 4, kUndefinedId},
                 {0x10, 4, kUndefinedId},
                 {0x20, 4, kUndefinedId}};
  for (const auto& entry : entries) {
    put(entry.tag, 2);
    put(entry.perm, 2);
    put(entry.id, 4);
  }
  return value;
}

// security.capability, revision 2: cap_net_raw (13) permitted and effective.
std::string NetRawCapability() {
  std::string value(20, '\0');
  value[0] = 0x01;    // magic_etc (le32): effective flag
  value[3] = 0x02;    // magic_etc: revision 2
  value[5] = 1 << 5;  // permitted[0] (le32 at 4): bit 13
  return value;
}

TEST_F(ImageWriterMountTest, EveryKindOfEntryMatchesTarApplier) {
  const Attributes kTime{.mtime_seconds = 1700000000, .mtime_nanoseconds = 123456789};
  FileTree tree;
  tree.AddDirectory("etc", {.mtime_seconds = 1600000000, .mtime_nanoseconds = 1})
      .AddFile("etc/empty", "", kTime)
      .AddFile("etc/hosts", "127.0.0.1 localhost\n",
               {.uid = 100000, .gid = 200000, .mtime_seconds = 1700000000})
      .AddFile("etc/block", std::string(4096, 'b'), {.mtime_seconds = 1700000000})
      .AddFile("etc/odd", std::string(10000, 'o'), {.mode = 04755, .mtime_seconds = 5})
      .AddDirectory("tmp", {.mode = 01777, .mtime_seconds = 1700000000})
      .AddSymlink("etc/localtime", "/usr/share/zoneinfo/UTC", kTime)
      .AddSymlink("etc/long-target", std::string(3000, 't'), kTime)
      .AddSymlink("etc/longest-target", std::string(4095, 'l'), kTime)
      .AddSymlink("etc/target-and-xattr", std::string(4000, 'x'),
                  {.mtime_seconds = 1700000000, .xattrs = {{"trusted.t", "v"}}})
      .AddFile("etc/big-xattrs", "x",
               {.uid = 65536,
                .gid = 65535,
                .mtime_seconds = 1700000000,
                .xattrs = {{"user.big", std::string(2000, 'v')},
                           {"security.selinux", "system_u:object_r:etc_t:s0"}}})
      .AddFile(std::string(255, 'n'), "long name", kTime)
      .AddHardlink("etc/hosts.link", "etc/hosts")
      .AddHardlink("tmp/hosts.other", "etc/hosts")
      .AddCharDevice("dev/null", 1, 3, {.mode = 0666, .mtime_seconds = 1700000000})
      .AddBlockDevice("dev/sda", 8, 0, {.mode = 0660, .gid = 6, .mtime_seconds = 1700000000})
      .AddCharDevice("dev/big", 300, 70000, {.mtime_seconds = 1700000000})
      .AddFifo("run/fifo", {.mode = 0600, .mtime_seconds = 1700000000})
      .AddFile("usr/bin/ping", "ELF",
               {.mode = 0755,
                .mtime_seconds = 1700000000,
                .xattrs = {{"security.capability", NetRawCapability()}}})
      .AddFile("usr/share/acl", "acl",
               {.mtime_seconds = 1700000000,
                .xattrs = {{"system.posix_acl_access", AccessAcl()},
                           {"user.comment", "hello"},
                           {"trusted.berth", "t"},
                           {"trusted.overlay.opaque", "y"}}})
      .AddDirectory("usr/share", {.mode = 0750,
                                  .mtime_seconds = 1700000001,
                                  .xattrs = {{"system.posix_acl_default", AccessAcl()}}})
      .AddSymlink("lib", "usr/lib", kTime)
      .AddDirectory("usr/lib", kTime)
      .AddFile("lib/libc.so", "libc", kTime)  // through the symlink: usr/lib/libc.so
      .AddFile("replaced/file-then-dir", "x", kTime)
      .AddDirectory("replaced/file-then-dir", kTime)
      .AddFile("replaced/file-then-dir/inside", "y", kTime)
      .AddDirectory("replaced/dir-then-file", kTime)
      .AddFile("replaced/dir-then-file/gone", "z", kTime)
      .AddFile("replaced/dir-then-file", "now a file", kTime)
      .AddFile("replaced/file-then-link", "old", kTime)
      .AddSymlink("replaced/file-then-link", "elsewhere", kTime)
      .AddDirectory("replaced", {.mode = 0700, .uid = 5, .mtime_seconds = 1700000000})
      .AddWhiteout("etc/motd", {.mtime_seconds = 1700000000})
      .AddHardlink("dev/null.link", "dev/null")
      .AddHardlink("etc/localtime.link", "etc/localtime")
      .AddFile("links/original", "old content", kTime)
      .AddHardlink("links/keeps-old", "links/original")
      .AddFile("links/original", "new content", kTime)  // replaces one name only
      .AddFile("links/whited-out", "w", kTime)
      .AddWhiteout("links/whited-out", {.mtime_seconds = 1700000000})
      .AddOpaqueWhiteout("opaque", {.mtime_seconds = 1700000000})
      .AddFile("opaque/kept", "k", kTime);
  // Directory blocks: "." and ".." take 27 bytes, each 20-byte name 32. "full" fills exactly one
  // block that cannot follow its inode (stored in the data area); "spill" has one such block and
  // a 96-byte last block stored inline after its inode.
  for (int i = 0; i < 127; ++i) tree.AddFile(fmt::format("full/{:020}", i), "", kTime);
  for (int i = 0; i < 130; ++i) tree.AddFile(fmt::format("spill/{:020}", i), "", kTime);
  std::string tar = TarOf(tree);
  ExpectSameAsApplier(tar, "every-kind");
  // Layout 0: blocks in the data area; 2: the last block inline after the inode.
  fs::path image = dir_.Join("every-kind.erofs");
  EXPECT_THAT(Run({kDump, "--path=/full", image.string()}).out, HasSubstr("Layout: 0"));
  EXPECT_THAT(Run({kDump, "--path=/spill", image.string()}).out, HasSubstr("Layout: 2"));
}

// Inode records larger than a block: xattrs of 69 KB in all (more than ext4 holds, so not
// compared with TarApplier), and a symlink whose 4000-byte target must still sit in one block.
TEST_F(ImageWriterMountTest, InodesLargerThanABlockReadBack) {
  const std::string big(60000, 'v');
  const std::string second(9000, 's');
  const std::string target(4000, 't');
  FileTree tree;
  tree.AddFile("f", "data", {.xattrs = {{"user.big", big}, {"user.second", second}}})
      .AddSymlink("l", target, {.xattrs = {{"trusted.a", std::string(200, 'a')}}})
      .AddFile("after", "after");
  fs::path image = WriteImage(TarOf(tree), "large-inodes");
  ExpectFsckClean(image);
  fs::path mnt = dir_.Join("large-inodes.mnt");
  Mount mounted(image, mnt, "erofs", nullptr);
  ASSERT_TRUE(mounted.ok()) << mounted.error();
  std::string value(70000, '\0');
  ssize_t n = getxattr((mnt / "f").c_str(), "user.big", value.data(), value.size());
  EXPECT_EQ(value.substr(0, n < 0 ? 0 : static_cast<size_t>(n)), big);
  n = getxattr((mnt / "f").c_str(), "user.second", value.data(), value.size());
  EXPECT_EQ(value.substr(0, n < 0 ? 0 : static_cast<size_t>(n)), second);
  EXPECT_EQ(Content(mnt / "f"), "data");
  EXPECT_EQ(fs::read_symlink(mnt / "l").string(), target);
  EXPECT_EQ(Content(mnt / "after"), "after");
}

TEST_F(ImageWriterMountTest, DumpShowsOneInodeForHardlinksAndExtendedInodes) {
  FileTree tree;
  tree.AddFile("a", "shared", {.uid = 100000, .gid = 7, .mtime_seconds = 1700000000})
      .AddHardlink("b", "a")
      .AddHardlink("c", "a")
      .AddFile("plain", "p", {.mtime_seconds = 1700000000})
      .AddFile("plain2", "p", {.mtime_seconds = 1700000000});
  fs::path image = WriteImage(TarOf(tree), "dump");
  ExpectFsckClean(image);
  testing::CommandResult a = Run({kDump, "--path=/a", image.string()});
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_THAT(a.out, HasSubstr("Links: 3"));
  EXPECT_THAT(a.out, HasSubstr("Uid: 100000"));
  testing::CommandResult b = Run({kDump, "--path=/b", image.string()});
  std::string a_nid = a.out.substr(0, a.out.find('\n'));
  EXPECT_EQ(a_nid, b.out.substr(0, b.out.find('\n'))) << a.out << "\n" << b.out;
  testing::CommandResult super = Run({kDump, "-s", image.string()});
  EXPECT_EQ(super.exit_code, 0) << super.err;
  EXPECT_THAT(super.out, HasSubstr("Filesystem root nid:                          0"));
}

TEST_F(ImageWriterMountTest, DirectoryOf5000EntriesSpansBlocksAndStaysSorted) {
  FileTree tree;
  tree.AddDirectory("big", {.mtime_seconds = 1700000000});
  for (int i = 0; i < 5000; ++i) {
    // Names of varied length and first byte, some sorting before "." and "..".
    std::string name = fmt::format("{}{:05}-{}", "!-.aZ"[i % 5], (i * 7919) % 5000,
                                   std::string(static_cast<size_t>(i % 40), 'x'));
    if (i % 3 == 0) {
      tree.AddFile("big/" + name, fmt::format("{}", i), {.mtime_seconds = 1700000000});
    } else if (i % 3 == 1) {
      tree.AddDirectory("big/" + name, {.mtime_seconds = 1700000000});
    } else {
      tree.AddSymlink("big/" + name, name, {.mtime_seconds = 1700000000});
    }
  }
  std::string tar = TarOf(tree);
  ExpectSameAsApplier(tar, "big-dir");
  testing::CommandResult ls =
      Run({kDump, "--path=/big", "--ls", dir_.Join("big-dir.erofs").string()});
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_THAT(ls.out, HasSubstr("Z01676-xxxx"));  // i = 4: a directory
}

TEST_F(ImageWriterMountTest, SparseFileOf5GiBKeepsItsHoles) {
  const uint64_t kSize = uint64_t{5} << 30;
  FileTree tree;
  tree.AddSparseFile("disk.img", kSize,
                     {{.offset = 0, .data = "boot sector"},
                      {.offset = uint64_t{1} << 20, .data = std::string(8192, 'm')},
                      {.offset = (uint64_t{4} << 30) + 12345, .data = "past 4 GiB"},
                      {.offset = kSize - 3, .data = "end"}},
                     {.uid = 100000, .mtime_seconds = 1700000000});
  tree.AddSparseFile("holes-only", uint64_t{1} << 30, {}, {.mtime_seconds = 1700000000});
  std::string tar = TarOf(tree);
  ImageSummary summary;
  fs::path image = WriteImage(tar, "sparse", &summary);
  // Four data segments, each stored as one 512 KiB chunk; the holes cost nothing.
  EXPECT_LT(fs::file_size(image), 4u << 20) << "holes must not be stored";
  ExpectFsckClean(image, /*extract=*/false);
  fs::path mnt = dir_.Join("sparse.mnt");
  Mount mounted(image, mnt, "erofs", nullptr);
  ASSERT_TRUE(mounted.ok()) << mounted.error();
  struct stat st;
  ASSERT_EQ(lstat((mnt / "disk.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_EQ(st.st_uid, 100000u);
  UniqueFd fd(open((mnt / "disk.img").c_str(), O_RDONLY | O_CLOEXEC));
  auto read_at = [&](uint64_t offset, size_t size) {
    std::string buffer(size, '?');
    ssize_t n = pread(fd.get(), buffer.data(), size, static_cast<off_t>(offset));
    buffer.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return buffer;
  };
  EXPECT_EQ(read_at(0, 12), std::string("boot sector") + '\0');
  EXPECT_EQ(read_at((uint64_t{1} << 20) - 1, 8194), '\0' + std::string(8192, 'm') + '\0');
  EXPECT_EQ(read_at((uint64_t{4} << 30) + 12344, 12), '\0' + std::string("past 4 GiB") + '\0');
  EXPECT_EQ(read_at(uint64_t{3} << 30, 4), std::string(4, '\0'));
  EXPECT_EQ(read_at(kSize - 4, 8), '\0' + std::string("end"));
  // EROFS reports st_blocks from the size (the kernel computes it so for uncompressed files),
  // but its holes are holes: SEEK_DATA skips them.
  off_t data_past_3g = lseek(fd.get(), off_t{3} << 30, SEEK_DATA);
  EXPECT_GE(data_past_3g, off_t{3} << 30);
  EXPECT_LE(data_past_3g, (off_t{4} << 30) + 12345);
  off_t hole_after_boot = lseek(fd.get(), 0, SEEK_HOLE);
  EXPECT_GT(hole_after_boot, 0);
  EXPECT_LE(hole_after_boot, off_t{1} << 20);
  ASSERT_EQ(lstat((mnt / "holes-only").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, off_t{1} << 30);
  UniqueFd holes(open((mnt / "holes-only").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(lseek(holes.get(), 0, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
}

TEST_F(ImageWriterMountTest, StackedAsOverlayLowerDirsWhiteoutsAndOpaqueDirsHide) {
  FileTree lower;
  lower.AddDirectory("etc", {.mtime_seconds = 1700000000})
      .AddFile("etc/motd", "welcome", {.mtime_seconds = 1700000000})
      .AddFile("etc/keep", "kept", {.mtime_seconds = 1700000000})
      .AddDirectory("var", {.mtime_seconds = 1700000000})
      .AddDirectory("var/cache", {.mtime_seconds = 1700000000})
      .AddFile("var/cache/old1", "1", {.mtime_seconds = 1700000000})
      .AddFile("var/cache/old2", "2", {.mtime_seconds = 1700000000});
  FileTree upper;
  upper.AddWhiteout("etc/motd", {.mtime_seconds = 1700000001})
      .AddDirectory("var/cache", {.mtime_seconds = 1700000001})
      .AddOpaqueWhiteout("var/cache", {.mtime_seconds = 1700000001})
      .AddFile("var/cache/new", "fresh", {.mtime_seconds = 1700000001});
  fs::path lower_image = WriteImage(TarOf(lower), "lower");
  fs::path upper_image = WriteImage(TarOf(upper), "upper");
  ExpectFsckClean(lower_image);
  ExpectFsckClean(upper_image);
  fs::path lower_mnt = dir_.Join("lower.mnt");
  fs::path upper_mnt = dir_.Join("upper.mnt");
  fs::path merged = dir_.Join("merged");
  Mount lower_mount(lower_image, lower_mnt, "erofs", nullptr);
  ASSERT_TRUE(lower_mount.ok()) << lower_mount.error();
  Mount upper_mount(upper_image, upper_mnt, "erofs", nullptr);
  ASSERT_TRUE(upper_mount.ok()) << upper_mount.error();
  std::string options = fmt::format("lowerdir={}:{}", upper_mnt.string(), lower_mnt.string());
  Mount overlay("overlay", merged, "overlay", options.c_str());
  ASSERT_TRUE(overlay.ok()) << overlay.error();

  EXPECT_FALSE(fs::exists(fs::symlink_status(merged / "etc/motd")));
  EXPECT_TRUE(fs::exists(merged / "etc/keep"));
  std::vector<std::string> cache;
  for (const auto& item : fs::directory_iterator(merged / "var/cache")) {
    cache.push_back(item.path().filename().string());
  }
  EXPECT_THAT(cache, ::testing::ElementsAre("new"));

  // The same chain through berth's overlay layout: TarApplier's directories as lower dirs.
  fs::path lower_dir = Apply(TarOf(lower), "lower");
  fs::path upper_dir = Apply(TarOf(upper), "upper");
  std::string dir_options = fmt::format("lowerdir={}:{}", upper_dir.string(), lower_dir.string());
  fs::path merged_dirs = dir_.Join("merged-dirs");
  Mount overlay_dirs("overlay", merged_dirs, "overlay", dir_options.c_str());
  ASSERT_TRUE(overlay_dirs.ok()) << overlay_dirs.error();
  // The upper layer's "etc" holds only a whiteout: TarApplier leaves it the time it was made.
  EXPECT_EQ(Texts(Describe(merged, {"etc"})), Texts(Describe(merged_dirs, {"etc"})));
}

TEST_F(ImageWriterMountTest, ImplicitDirectoriesTakeTheMountedLowerLayersAttributes) {
  FileTree lower;
  lower
      .AddDirectory("etc", {.mode = 0700,
                            .uid = 1000,
                            .gid = 1001,
                            .mtime_seconds = 1600000000,
                            .mtime_nanoseconds = 5,
                            .xattrs = {{"user.note", "from below"}}})
      .AddDirectory("gone", {.mode = 0700})
      .AddDirectory("gone/deeper", {.mode = 0700});
  FileTree middle;
  middle.AddWhiteout("gone");
  FileTree upper;
  upper.AddFile("etc/new", "n", {.mtime_seconds = 1700000000})
      .AddFile("gone/deeper/x", "x", {.mtime_seconds = 1700000000})
      .AddFile("opt/tool", "t", {.mtime_seconds = 1700000000});
  Mount lower_mount(WriteImage(TarOf(lower), "lower"), dir_.Join("lower.mnt"), "erofs", nullptr);
  ASSERT_TRUE(lower_mount.ok()) << lower_mount.error();
  Mount middle_mount(WriteImage(TarOf(middle), "middle"), dir_.Join("middle.mnt"), "erofs",
                     nullptr);
  ASSERT_TRUE(middle_mount.ok()) << middle_mount.error();

  fs::path image = dir_.Join("upper.erofs");
  ASSERT_OK_AND_ASSIGN(auto writer, ImageWriter::Create(image));
  archive::TarReader reader(*writer);
  ASSERT_OK(reader.Write(TarOf(upper)));
  ASSERT_OK(reader.Finish());
  // "gone" is whited out in the middle layer: the lower "gone" must not show through.
  ASSERT_OK_AND_ASSIGN(
      size_t inherited,
      InheritLowerDirectories(*writer, {dir_.Join("middle.mnt"), dir_.Join("lower.mnt")},
                              /*preserve_ownership=*/true));
  EXPECT_EQ(inherited, 1u);
  ASSERT_OK(writer->Finish());
  ExpectFsckClean(image);
  Mount upper_mount(image, dir_.Join("upper.mnt"), "erofs", nullptr);
  ASSERT_TRUE(upper_mount.ok()) << upper_mount.error();
  struct stat st;
  ASSERT_EQ(::lstat(dir_.Join("upper.mnt/etc").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 5);
  char note[32] = {};
  ASSERT_EQ(::lgetxattr(dir_.Join("upper.mnt/etc").c_str(), "user.note", note, sizeof(note)), 10);
  EXPECT_STREQ(note, "from below");
  ASSERT_EQ(::lstat(dir_.Join("upper.mnt/gone").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "hidden by the middle layer's whiteout";
  EXPECT_EQ(st.st_mtim.tv_sec, 1700000000);
  ASSERT_EQ(::lstat(dir_.Join("upper.mnt/opt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "no lower layer has it";
}

// Not a check: prints how long writing an image of ~20,000 small files takes next to
// TarApplier applying the same tar to tmpfs, and the sizes. Run with
// --gtest_also_run_disabled_tests --gtest_filter='*Measure*'.
TEST_F(ImageWriterMountTest, DISABLED_Measure20000SmallFiles) {
  FileTree tree;
  for (int d = 0; d < 200; ++d) {
    std::string dir = fmt::format("usr/share/d{:03}", d);
    tree.AddDirectory(dir, {.mtime_seconds = 1700000000});
    for (int f = 0; f < 100; ++f) {
      size_t size = static_cast<size_t>((d * 100 + f) * 7919 % 6000);
      tree.AddFile(fmt::format("{}/file{:03}", dir, f),
                   std::string(size, static_cast<char>('a' + f % 26)),
                   {.mtime_seconds = 1700000000});
    }
  }
  std::string tar = TarOf(tree);
  fs::path tmpfs = dir_.Join("tmpfs");
  Mount memory("tmpfs", tmpfs, "tmpfs", "size=2g", /*flags=*/0);
  ASSERT_TRUE(memory.ok()) << memory.error();

  auto seconds = [](auto start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto image_start = std::chrono::steady_clock::now();
  ImageSummary summary;
  {
    auto writer = ImageWriter::Create(tmpfs / "layer.erofs");
    ASSERT_OK(writer);
    archive::TarReader reader(**writer);
    ASSERT_OK(reader.Write(tar));
    ASSERT_OK(reader.Finish());
    ASSERT_OK_AND_ASSIGN(summary, (*writer)->Finish());
  }
  double image_seconds = seconds(image_start);

  fs::create_directories(tmpfs / "applied");
  auto apply_start = std::chrono::steady_clock::now();
  {
    UniqueFd fd(open((tmpfs / "applied").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto applier = archive::TarApplier::Create(fd.get(), {});
    ASSERT_OK(applier);
    archive::TarReader reader(**applier);
    ASSERT_OK(reader.Write(tar));
    ASSERT_OK(reader.Finish());
    ASSERT_OK((*applier)->Finish());
  }
  double apply_seconds = seconds(apply_start);
  testing::CommandResult du = Run({"/usr/bin/du", "-s", "-B1", (tmpfs / "applied").string()});
  std::printf(
      "tar: %zu bytes, %llu entries\n"
      "ImageWriter: %.3f s, image %llu bytes (%llu data, %llu directory, %llu metadata blocks)\n"
      "TarApplier to tmpfs: %.3f s, du %s",
      tar.size(), static_cast<unsigned long long>(summary.entries), image_seconds,
      static_cast<unsigned long long>(summary.image_bytes),
      static_cast<unsigned long long>(summary.data_blocks),
      static_cast<unsigned long long>(summary.directory_blocks),
      static_cast<unsigned long long>(summary.metadata_blocks), apply_seconds, du.out.c_str());
}

}  // namespace
}  // namespace berth::erofs
