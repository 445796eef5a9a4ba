#include "berth/service/pull_progress.h"

#include <gtest/gtest.h>

#include <thread>

namespace berth::service {
namespace {

image::Descriptor LayerDescriptor(std::string_view content, int64_t size) {
  return {.media_type = "application/vnd.oci.image.layer.v1.tar+gzip",
          .digest = Digest::Sha256Of(content),
          .size = size};
}

pull::BlobProgress Progress(const image::Descriptor& blob, int64_t done, bool complete = false,
                            bool cached = false) {
  return {.digest = blob.digest,
          .media_type = blob.media_type,
          .done = done,
          .total = blob.size,
          .cached = cached,
          .complete = complete};
}

// A copy: callers often pass a temporary view's pull.
BlobStatus Blob(const PullStatus& pull, const image::Descriptor& descriptor) {
  for (const BlobStatus& blob : pull.blobs) {
    if (blob.digest == descriptor.digest.ToString()) return blob;
  }
  ADD_FAILURE() << "no blob " << descriptor.digest.ToString();
  return BlobStatus{};
}

TEST(PullProgressBoardTest, LayersMoveFromWaitingThroughDownloadingAndUnpackingToCommitted) {
  PullProgressBoard board;
  const image::Descriptor config{.media_type = "application/vnd.oci.image.config.v1+json",
                                 .digest = Digest::Sha256Of("config"),
                                 .size = 10};
  const image::Descriptor first = LayerDescriptor("first", 1000);
  const image::Descriptor second = LayerDescriptor("second", 2000);

  uint64_t id = board.Start("registry.test/app:1");
  board.Fetched(id, Progress(config, 10, /*complete=*/true));
  board.SetLayers(id, {first, second});
  PullStatus pull = board.View().pulls.at(0);
  EXPECT_EQ(pull.state, PullState::kRunning);
  EXPECT_EQ(Blob(pull, config).state, BlobState::kCommitted);
  EXPECT_FALSE(Blob(pull, config).layer);
  EXPECT_EQ(Blob(pull, first).state, BlobState::kWaiting);
  EXPECT_EQ(Blob(pull, first).total_bytes, 1000);
  EXPECT_TRUE(Blob(pull, second).layer);

  board.Fetched(id, Progress(first, 400));
  pull = board.View().pulls.at(0);
  EXPECT_EQ(Blob(pull, first).state, BlobState::kDownloading);
  EXPECT_EQ(Blob(pull, first).fetched_bytes, 400);

  board.Fetched(id, Progress(first, 1000, /*complete=*/true));
  pull = board.View().pulls.at(0);
  EXPECT_EQ(Blob(pull, first).state, BlobState::kUnpacking);
  EXPECT_EQ(Blob(pull, first).fetched_bytes, 1000);

  board.Unpacked(id,
                 {.index = 0, .event = unpack::LayerEvent::kApplied, .uncompressed_bytes = 5000});
  board.Unpacked(id, {.index = 0, .event = unpack::LayerEvent::kCommitted});
  // The second layer's snapshot existed already; its blob was in the store.
  board.Fetched(id, Progress(second, 2000, /*complete=*/true, /*cached=*/true));
  board.Unpacked(id, {.index = 1, .event = unpack::LayerEvent::kAlreadyPresent});
  pull = board.View().pulls.at(0);
  EXPECT_EQ(Blob(pull, first).state, BlobState::kCommitted);
  EXPECT_EQ(Blob(pull, first).unpacked_bytes, 5000u);
  EXPECT_EQ(Blob(pull, second).state, BlobState::kCached);

  board.Finish(id, nullptr);
  pull = board.View().pulls.at(0);
  EXPECT_EQ(pull.state, PullState::kDone);
  EXPECT_TRUE(pull.error.empty());
}

TEST(PullProgressBoardTest, ALateFetchReportDoesNotMoveACommittedLayerBack) {
  PullProgressBoard board;
  const image::Descriptor layer = LayerDescriptor("layer", 100);
  uint64_t id = board.Start("registry.test/app:1");
  board.SetLayers(id, {layer});
  board.Fetched(id, Progress(layer, 50));
  board.Unpacked(id,
                 {.index = 0, .event = unpack::LayerEvent::kApplied, .uncompressed_bytes = 300});
  board.Unpacked(id, {.index = 0, .event = unpack::LayerEvent::kCommitted});
  board.Fetched(id, Progress(layer, 100, /*complete=*/true));
  const BlobStatus& blob = Blob(board.View().pulls.at(0), layer);
  EXPECT_EQ(blob.state, BlobState::kCommitted);
  EXPECT_EQ(blob.fetched_bytes, 100);
}

TEST(PullProgressBoardTest, AFailedPullKeepsItsErrorAndIgnoresLaterReports) {
  PullProgressBoard board;
  const image::Descriptor layer = LayerDescriptor("layer", 100);
  uint64_t id = board.Start("registry.test/app:1");
  board.SetLayers(id, {layer});
  Error error(ErrorCode::kUnavailable, "registry.test refused the connection");
  board.Finish(id, &error);
  board.Fetched(id, Progress(layer, 100, /*complete=*/true));
  board.Finish(id, nullptr);
  PullStatus pull = board.View().pulls.at(0);
  EXPECT_EQ(pull.state, PullState::kFailed);
  EXPECT_NE(pull.error.find("refused the connection"), std::string::npos);
  EXPECT_EQ(Blob(pull, layer).state, BlobState::kWaiting);
}

TEST(PullProgressBoardTest, KeepsOnlyTheLastFinishedPullsAndEveryRunningOne) {
  PullProgressBoard board;
  uint64_t running = board.Start("registry.test/running:1");
  std::vector<uint64_t> finished;
  for (size_t i = 0; i < PullProgressBoard::kKeptFinished + 5; ++i) {
    finished.push_back(board.Start("registry.test/app:" + std::to_string(i)));
    board.Finish(finished.back(), nullptr);
  }
  PullBoardView view = board.View();
  ASSERT_EQ(view.pulls.size(), PullProgressBoard::kKeptFinished + 1);
  EXPECT_EQ(view.pulls.front().id, running);
  EXPECT_EQ(view.pulls[1].id, finished[5]);
  EXPECT_EQ(view.pulls.back().id, finished.back());
  EXPECT_EQ(view.next_id, finished.back() + 1);
}

TEST(PullProgressBoardTest, WaitForChangeReturnsOnceAnotherThreadReports) {
  PullProgressBoard board;
  uint64_t id = board.Start("registry.test/app:1");
  const uint64_t seen = board.View().version;
  std::thread finisher([&] { board.Finish(id, nullptr); });
  // Waits for the change however long the thread takes (the timeout only bounds a hang).
  PullBoardView view = board.WaitForChange(seen, std::chrono::minutes(5));
  finisher.join();
  EXPECT_NE(view.version, seen);
  EXPECT_EQ(view.pulls.at(0).state, PullState::kDone);
  // Nothing changes: the wait ends at its timeout with the same version.
  EXPECT_EQ(board.WaitForChange(view.version, std::chrono::milliseconds(1)).version, view.version);
}

}  // namespace
}  // namespace berth::service
