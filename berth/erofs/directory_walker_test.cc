// WalkDirectory: the entry stream a tree gives, recorded by a visitor. Whiteouts and opaque
// directories need root (mknod, trusted.* xattrs); those cases skip otherwise.
#include "berth/erofs/directory_walker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::erofs {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;

// One line per entry: "<type> <path>[ -> target][ data=<bytes>][ xattrs=<names>]".
class RecordingVisitor final : public archive::TarVisitor {
 public:
  Result<void> OnEntry(const archive::TarEntry& entry) override {
    current_ = fmt::format("{} {}", static_cast<int>(entry.type), entry.path);
    if (!entry.link_target.empty()) current_ += " -> " + entry.link_target;
    for (const auto& [name, value] : entry.xattrs) current_ += " " + name + "=" + value;
    data_.clear();
    return Ok();
  }
  Result<void> OnData(uint64_t offset, std::string_view data) override {
    EXPECT_EQ(offset, data_.size());
    data_ += data;
    return Ok();
  }
  Result<void> OnEntryEnd() override {
    if (!data_.empty()) current_ += " data=" + data_;
    lines.push_back(current_);
    return Ok();
  }

  std::vector<std::string> lines;

 private:
  std::string current_;
  std::string data_;
};

void Write(const fs::path& path, std::string_view text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

constexpr int kRegular = static_cast<int>(archive::TarEntryType::kRegular);
constexpr int kDirectory = static_cast<int>(archive::TarEntryType::kDirectory);
constexpr int kSymlink = static_cast<int>(archive::TarEntryType::kSymlink);
constexpr int kHardlink = static_cast<int>(archive::TarEntryType::kHardlink);

TEST(DirectoryWalkerTest, SortedDepthFirstWithDataLinksAndHardlinks) {
  ASSERT_OK_AND_ASSIGN(auto dir, berth::testing::TempDir::Create("walker"));
  const fs::path root = dir.path();
  Write(root / "b/file", "hello");
  Write(root / "a", "A");
  ASSERT_EQ(::link((root / "b/file").c_str(), (root / "c-link").c_str()), 0);
  ASSERT_EQ(::symlink("b/file", (root / "d-sym").c_str()), 0);
  RecordingVisitor visitor;
  ASSERT_OK(WalkDirectory(root, visitor));
  EXPECT_THAT(visitor.lines,
              ElementsAre(fmt::format("{} a data=A", kRegular), fmt::format("{} b", kDirectory),
                          fmt::format("{} b/file data=hello", kRegular),
                          fmt::format("{} c-link -> b/file", kHardlink),
                          fmt::format("{} d-sym -> b/file", kSymlink)));
}

TEST(DirectoryWalkerTest, OverlayWhiteoutsAndOpaqueDirectoriesBecomeTarWhiteouts) {
  if (::geteuid() != 0) GTEST_SKIP() << "mknod and trusted.* xattrs need root";
  ASSERT_OK_AND_ASSIGN(auto dir, berth::testing::TempDir::Create("walker"));
  const fs::path root = dir.path();
  fs::create_directories(root / "etc");
  ASSERT_EQ(::mknod((root / "etc/passwd").c_str(), S_IFCHR, makedev(0, 0)), 0);
  Write(root / "opt/new", "n");
  ASSERT_EQ(::setxattr((root / "opt").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((root / "opt").c_str(), "trusted.overlay.origin", "x", 1, 0), 0);
  ASSERT_EQ(::setxattr((root / "opt/new").c_str(), "user.kept", "v", 1, 0), 0);
  RecordingVisitor visitor;
  ASSERT_OK(WalkDirectory(root, visitor));
  EXPECT_THAT(
      visitor.lines,
      ElementsAre(fmt::format("{} etc", kDirectory), fmt::format("{} etc/.wh.passwd", kRegular),
                  fmt::format("{} opt", kDirectory), fmt::format("{} opt/.wh..wh..opq", kRegular),
                  fmt::format("{} opt/new user.kept=v data=n", kRegular)));
}

TEST(DirectoryWalkerTest, AMissingRootIsNamed) {
  RecordingVisitor visitor;
  auto walked = WalkDirectory("/nonexistent/berth-walker", visitor);
  ASSERT_FALSE(walked);
  EXPECT_EQ(walked.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(walked.error().ToString(), ::testing::HasSubstr("/nonexistent/berth-walker"));
}

}  // namespace
}  // namespace berth::erofs
