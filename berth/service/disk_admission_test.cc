#include "berth/service/disk_admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "testing/temp_dir.h"

namespace berth::service {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = int64_t{1} << 20;

FilesystemSpace Filesystem(std::string path, uint64_t device, int64_t available, int64_t size) {
  return {.path = std::move(path),
          .device = device,
          .available = static_cast<uint64_t>(available),
          .size = static_cast<uint64_t>(size)};
}

TEST(UnpackRatioTest, StartsAtTheDefaultAndMovesTowardsWhatIsObserved) {
  EXPECT_DOUBLE_EQ(UnpackRatio(0, 0), kDefaultUnpackRatio);
  // As many bytes observed as the prior weighs, at ratio 4: halfway between 2 and 4.
  EXPECT_DOUBLE_EQ(UnpackRatio(kRatioPriorBytes, 4 * kRatioPriorBytes), 3.0);
  // One tiny layer that took a whole block hardly moves it.
  EXPECT_NEAR(UnpackRatio(100, 4096), kDefaultUnpackRatio, 0.001);
  // Much more observed: close to the observation.
  EXPECT_NEAR(UnpackRatio(1000 * kRatioPriorBytes, 1500 * kRatioPriorBytes), 1.5, 0.001);
}

TEST(EstimateSpaceTest, CountsBlobsNotStoredLessTheirIngestsAndLayersNotUnpacked) {
  const std::vector<LayerState> layers = {
      // Unpacked already: neither fetched nor unpacked.
      {.compressed_size = 100 * kMiB, .blob_stored = false, .unpacked = true},
      // Blob stored, not unpacked: only the unpack.
      {.compressed_size = 10 * kMiB, .blob_stored = true, .unpacked = false},
      // Half downloaded: the other half, and the unpack.
      {.compressed_size = 4 * kMiB, .ingested = 2 * kMiB},
      // Nothing yet.
      {.compressed_size = 1 * kMiB},
  };
  SpaceEstimate estimate = EstimateSpace(layers, 2.5);
  EXPECT_EQ(estimate.blob_bytes, static_cast<uint64_t>(3 * kMiB));
  EXPECT_EQ(estimate.unpacked_bytes, static_cast<uint64_t>((10 + 4 + 1) * kMiB * 5 / 2));
  EXPECT_DOUBLE_EQ(estimate.ratio, 2.5);
}

TEST(EstimateSpaceTest, IgnoresNonsenseSizesAndIngests) {
  const std::vector<LayerState> layers = {
      {.compressed_size = -1},                  // unknown size
      {.compressed_size = 10, .ingested = 50},  // an ingest longer than the blob
      {.compressed_size = 10, .ingested = -5},  // and a negative one
  };
  SpaceEstimate estimate = EstimateSpace(layers, 2.0);
  EXPECT_EQ(estimate.blob_bytes, 10u);
  EXPECT_EQ(estimate.unpacked_bytes, 40u);
}

TEST(CheckSpaceTest, OneFilesystemMustHoldTheSumWithItsReserve) {
  const SpaceEstimate estimate{.blob_bytes = 30 * kMiB, .unpacked_bytes = 60 * kMiB, .ratio = 2};
  // 1 GiB filesystem: the reserve is about 10.2 MiB.
  const int64_t size = 1024 * kMiB;
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/r/content", 1, 101 * kMiB, size),
                         Filesystem("/r/snapshots", 1, 101 * kMiB, size)));

  Result<void> refused = CheckSpace(estimate, Filesystem("/r/content", 1, 99 * kMiB, size),
                                    Filesystem("/r/snapshots", 1, 99 * kMiB, size));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kResourceExhausted);
  const std::string message = refused.error().ToString();
  EXPECT_THAT(message, HasSubstr("needs about 90.0 MiB"));
  EXPECT_THAT(message, HasSubstr("/r/content and /r/snapshots"));
  EXPECT_THAT(message, HasSubstr("99.0 MiB free of 1.0 GiB"));
  EXPECT_THAT(message, HasSubstr("berth rmi, berth gc"));
  EXPECT_THAT(message, HasSubstr("move berth's root"));
}

TEST(CheckSpaceTest, TwoFilesystemsEachHoldTheirOwnPart) {
  const SpaceEstimate estimate{.blob_bytes = 30 * kMiB, .unpacked_bytes = 60 * kMiB, .ratio = 2};
  const int64_t size = 1024 * kMiB;
  // Neither could hold the sum, each holds its part.
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/c", 1, 50 * kMiB, size),
                         Filesystem("/s", 2, 80 * kMiB, size)));

  Result<void> snapshots_full = CheckSpace(estimate, Filesystem("/c", 1, 500 * kMiB, size),
                                           Filesystem("/s", 2, 50 * kMiB, size));
  ASSERT_FALSE(snapshots_full);
  EXPECT_EQ(snapshots_full.error().code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(snapshots_full.error().ToString(), HasSubstr("holding /s ("));

  Result<void> content_full = CheckSpace(estimate, Filesystem("/c", 1, 20 * kMiB, size),
                                         Filesystem("/s", 2, 500 * kMiB, size));
  ASSERT_FALSE(content_full);
  EXPECT_THAT(content_full.error().ToString(), HasSubstr("holding /c ("));
}

TEST(CheckSpaceTest, TheReserveIsOnePercentOfTheFilesystem) {
  const int64_t size = 100 * kMiB;  // reserve 1 MiB
  const SpaceEstimate estimate{.blob_bytes = 4 * kMiB, .unpacked_bytes = 0, .ratio = 2};
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/c", 1, 5 * kMiB, size), std::nullopt));
  EXPECT_FALSE(CheckSpace(estimate, Filesystem("/c", 1, 5 * kMiB - 1, size), std::nullopt));
  // Less free than the reserve itself.
  EXPECT_FALSE(
      CheckSpace({.blob_bytes = 1, .ratio = 2}, Filesystem("/c", 1, kMiB / 2, size), std::nullopt));
}

TEST(CheckSpaceTest, TheReserveIsTheLargerOfItsBytesAndItsFraction) {
  const int64_t size = 100 * kMiB;
  const SpaceEstimate estimate{.blob_bytes = 4 * kMiB, .unpacked_bytes = 0, .ratio = 2};
  const FreeSpaceReserve bytes{.bytes = 10 * kMiB, .fraction = 0.05};  // 10 MiB > 5 MiB
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/c", 1, 14 * kMiB, size), std::nullopt, bytes));
  Result<void> refused =
      CheckSpace(estimate, Filesystem("/c", 1, 14 * kMiB - 1, size), std::nullopt, bytes);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().ToString(), HasSubstr("10.0 MiB of it kept in reserve"));
  const FreeSpaceReserve fraction{.bytes = kMiB, .fraction = 0.2};  // 20 MiB > 1 MiB
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/c", 1, 24 * kMiB, size), std::nullopt, fraction));
  EXPECT_FALSE(
      CheckSpace(estimate, Filesystem("/c", 1, 24 * kMiB - 1, size), std::nullopt, fraction));
  const FreeSpaceReserve none{.bytes = 0, .fraction = 0};
  EXPECT_TRUE(CheckSpace(estimate, Filesystem("/c", 1, 4 * kMiB, size), std::nullopt, none));
}

TEST(CheckSpaceTest, UnmeasuredFilesystemsAreNotChecked) {
  EXPECT_TRUE(CheckSpace({.blob_bytes = uint64_t{1} << 60, .unpacked_bytes = uint64_t{1} << 60},
                         std::nullopt, std::nullopt));
}

TEST(MeasureFilesystemTest, SeesTheDirectorysFilesystem) {
  auto dir = berth::testing::TempDir::Create("admission");
  ASSERT_TRUE(dir) << dir.error().ToString();
  Result<FilesystemSpace> measured = MeasureFilesystem(dir->path());
  ASSERT_TRUE(measured) << measured.error().ToString();
  EXPECT_GT(measured->size, 0u);
  EXPECT_LE(measured->available, measured->size);
  Result<FilesystemSpace> same = MeasureFilesystem(dir->path());
  ASSERT_TRUE(same);
  EXPECT_EQ(same->device, measured->device);

  Result<FilesystemSpace> missing = MeasureFilesystem(dir->path() / "missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace berth::service
