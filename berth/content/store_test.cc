#include "berth/content/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "berth/base/file_util.h"

namespace berth::content {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            fmt::format("berth-content-{}-{}", ::getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    Result<std::unique_ptr<Store>> opened = Store::Open({.root = root_});
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::filesystem::path root_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, CommitMakesBlobVisible) {
  std::string bytes = "hello, layer";
  Digest digest = Digest::Sha256Of(bytes);
  auto writer = store_->OpenWriter("ref-1", digest, static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(writer) << writer.error().ToString();
  ASSERT_TRUE((*writer)->Write(bytes.substr(0, 5)));
  EXPECT_FALSE(store_->Contains(digest));  // not visible before Commit
  ASSERT_TRUE((*writer)->Write(bytes.substr(5)));
  Result<BlobInfo> info = (*writer)->Commit();
  ASSERT_TRUE(info) << info.error().ToString();
  EXPECT_EQ(info->size, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(store_->ReadBlob(digest, 1024).value(), bytes);
  EXPECT_EQ(store_->Info(digest)->size, 12);
  EXPECT_TRUE(store_->ListIngests()->empty());
}

TEST_F(StoreTest, DigestMismatchCommitsNothing) {
  Digest wrong = Digest::Sha256Of("something else");
  auto writer = store_->OpenWriter("ref-bad", wrong, 5);
  ASSERT_TRUE(writer);
  ASSERT_TRUE((*writer)->Write("hello"));
  Result<BlobInfo> info = (*writer)->Commit();
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(info.error().message().find(wrong.ToString()), std::string::npos);
  EXPECT_NE(info.error().message().find(Digest::Sha256Of("hello").ToString()), std::string::npos);
  EXPECT_FALSE(store_->Contains(wrong));
  EXPECT_FALSE(store_->Contains(Digest::Sha256Of("hello")));
  EXPECT_TRUE(store_->ListIngests()->empty());
}

TEST_F(StoreTest, SizeIsEnforced) {
  Digest digest = Digest::Sha256Of("12345");
  auto writer = store_->OpenWriter("ref-size", digest, 4);
  ASSERT_TRUE(writer);
  EXPECT_EQ((*writer)->Write("12345").error().code(), ErrorCode::kDataLoss);
  ASSERT_TRUE((*writer)->Write("123"));
  Result<BlobInfo> short_commit = (*writer)->Commit();
  ASSERT_FALSE(short_commit);
  EXPECT_EQ(short_commit.error().code(), ErrorCode::kDataLoss);
  EXPECT_FALSE(store_->Contains(digest));
}

TEST_F(StoreTest, IngestResumesAfterWriterIsDropped) {
  std::string bytes(3 << 20, 'x');
  bytes[12345] = 'y';
  Digest digest = Digest::Sha256Of(bytes);
  {
    auto writer = store_->OpenWriter("resume", digest, static_cast<int64_t>(bytes.size()));
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->Write(std::string_view(bytes).substr(0, 2 << 20)));
  }  // dropped mid-way, as by a cut connection or a crash
  auto ingests = store_->ListIngests();
  ASSERT_TRUE(ingests);
  ASSERT_EQ(ingests->size(), 1u);
  EXPECT_EQ((*ingests)[0].ref, "resume");
  EXPECT_EQ((*ingests)[0].offset, 2 << 20);
  EXPECT_EQ((*ingests)[0].expected, digest);

  auto writer = store_->OpenWriter("resume", digest, static_cast<int64_t>(bytes.size()));
  ASSERT_TRUE(writer);
  EXPECT_EQ((*writer)->offset(), 2 << 20);
  std::string existing;
  ASSERT_TRUE((*writer)->ReadExisting([&](std::string_view chunk) -> Result<void> {
    existing.append(chunk);
    return Ok();
  }));
  EXPECT_EQ(existing, bytes.substr(0, 2 << 20));
  ASSERT_TRUE((*writer)->Write(std::string_view(bytes).substr(2 << 20)));
  ASSERT_TRUE((*writer)->Commit());
  EXPECT_EQ(store_->ReadBlob(digest, 8 << 20).value(), bytes);
}

TEST_F(StoreTest, IngestForAnotherDigestIsReset) {
  {
    auto writer = store_->OpenWriter("shared-ref", Digest::Sha256Of("old"), 3);
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->Write("ol"));
  }
  Digest digest = Digest::Sha256Of("new!");
  auto writer = store_->OpenWriter("shared-ref", digest, 4);
  ASSERT_TRUE(writer);
  EXPECT_EQ((*writer)->offset(), 0);
  ASSERT_TRUE((*writer)->Write("new!"));
  ASSERT_TRUE((*writer)->Commit());
  EXPECT_TRUE(store_->Contains(digest));
}

TEST_F(StoreTest, OverlongIngestIsReset) {
  Digest digest = Digest::Sha256Of("abc");
  {
    auto writer = store_->OpenWriter("long", digest, -1);
    ASSERT_TRUE(writer);
    ASSERT_TRUE((*writer)->Write("abcdef"));
  }
  auto writer = store_->OpenWriter("long", digest, 3);
  ASSERT_TRUE(writer);
  EXPECT_EQ((*writer)->offset(), 0);
}

TEST_F(StoreTest, OneWriterPerRef) {
  Digest digest = Digest::Sha256Of("x");
  auto first = store_->OpenWriter("busy", digest, 1);
  ASSERT_TRUE(first);
  auto second = store_->OpenWriter("busy", digest, 1);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(store_->AbortIngest("busy").error().code(), ErrorCode::kUnavailable);
  first->reset();
  EXPECT_TRUE(store_->OpenWriter("busy", digest, 1));
}

TEST_F(StoreTest, InfoAndWalkReportAllocatedBytes) {
  const std::string bytes(100000, 'x');
  const Digest digest = Digest::Sha256Of(bytes);
  ASSERT_TRUE(store_->WriteBlob(digest, bytes));
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "blobs" / "sha256" / digest.encoded()).c_str(), &st), 0);
  const int64_t allocated = static_cast<int64_t>(st.st_blocks) * 512;
  EXPECT_EQ(store_->Info(digest)->allocated_bytes, allocated);
  int64_t walked = -1;
  ASSERT_TRUE(store_->Walk([&](const BlobInfo& info) { walked = info.allocated_bytes; }));
  EXPECT_EQ(walked, allocated);
}

TEST_F(StoreTest, StreamBlobFeedsEveryByteInOrder) {
  std::string bytes(3 * (1 << 20) + 17, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  const Digest digest = Digest::Sha256Of(bytes);
  ASSERT_TRUE(store_->WriteBlob(digest, bytes));
  std::string streamed;
  ASSERT_TRUE(store_->StreamBlob(digest, [&](std::string_view chunk) -> Result<void> {
    EXPECT_LE(chunk.size(), size_t{1} << 20);
    streamed.append(chunk);
    return Ok();
  }));
  EXPECT_EQ(streamed, bytes);
  auto stopped = store_->StreamBlob(
      digest, [](std::string_view) -> Result<void> { return Fail(ErrorCode::kCancelled, "stop"); });
  EXPECT_EQ(stopped.error().code(), ErrorCode::kCancelled);
  auto missing = store_->StreamBlob(Digest::Sha256Of("absent"),
                                    [](std::string_view) -> Result<void> { return Ok(); });
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, WriteBlobWalkDelete) {
  ASSERT_TRUE(store_->WriteBlob(Digest::Sha256Of("one"), "one"));
  ASSERT_TRUE(store_->WriteBlob(Digest::Sha256Of("three"), "three"));
  ASSERT_TRUE(store_->WriteBlob(Digest::Sha256Of("one"), "one"));  // idempotent
  EXPECT_EQ(store_->WriteBlob(Digest::Sha256Of("two"), "TWO").error().code(), ErrorCode::kDataLoss);
  int64_t total = 0;
  int count = 0;
  ASSERT_TRUE(store_->Walk([&](const BlobInfo& info) {
    total += info.size;
    ++count;
  }));
  EXPECT_EQ(count, 2);
  EXPECT_EQ(total, 8);
  ASSERT_TRUE(store_->Delete(Digest::Sha256Of("one")));
  EXPECT_EQ(store_->Delete(Digest::Sha256Of("one")).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(store_->Info(Digest::Sha256Of("one")).error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, ConcurrentWriteBlobOfTheSameBlobAllSucceed) {
  std::string bytes(256 << 10, 'c');
  Digest digest = Digest::Sha256Of(bytes);
  std::vector<Result<void>> results(8, Ok());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = store_->WriteBlob(digest, bytes); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const Result<void>& result : results) EXPECT_TRUE(result) << result.error().ToString();
  EXPECT_EQ(store_->ReadBlob(digest, 1 << 20).value(), bytes);
  EXPECT_TRUE(store_->ListIngests()->empty());
}

TEST_F(StoreTest, AbortIngestRemovesIt) {
  {
    auto writer = store_->OpenWriter("abort-me", Digest::Sha256Of("z"), 1);
    ASSERT_TRUE(writer);
  }
  ASSERT_TRUE(store_->AbortIngest("abort-me"));
  EXPECT_TRUE(store_->ListIngests()->empty());
  EXPECT_EQ(store_->AbortIngest("abort-me").error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, StrayFilesAreNotBlobs) {
  ASSERT_TRUE(WriteFileAtomically(root_ / "blobs" / "sha256" / "not-a-digest", "x"));
  int count = 0;
  ASSERT_TRUE(store_->Walk([&](const BlobInfo&) { ++count; }));
  EXPECT_EQ(count, 0);
}

// A crash between creating an ingest's directory and writing its `ref` leaves a broken ingest:
// it is listed (with its id, without a ref) and RemoveIngest removes it; one a writer holds is
// refused.
TEST_F(StoreTest, RemoveIngestRemovesBrokenIngestsButNotBusyOnes) {
  const std::filesystem::path broken = root_ / "ingest" / "0123abcd";
  std::filesystem::create_directories(broken);
  { std::ofstream(broken / "data") << "partial"; }
  const std::filesystem::path empty = root_ / "ingest" / "4567ef";
  std::filesystem::create_directories(empty);  // not even a data file yet
  auto busy = store_->OpenWriter("busy", Digest::Sha256Of("x"), 1);
  ASSERT_TRUE(busy);

  auto ingests = store_->ListIngests();
  ASSERT_TRUE(ingests);
  ASSERT_EQ(ingests->size(), 3u);
  std::string busy_id;
  for (const IngestInfo& ingest : *ingests) {
    if (ingest.ref == "busy") busy_id = ingest.id;
    if (ingest.id == "0123abcd") {
      EXPECT_TRUE(ingest.ref.empty());
    }
  }
  ASSERT_FALSE(busy_id.empty());

  EXPECT_TRUE(store_->RemoveIngest("0123abcd"));
  EXPECT_FALSE(std::filesystem::exists(broken));
  // Fresh and without data: a writer may be creating it, unless nothing else uses the store.
  EXPECT_EQ(store_->RemoveIngest("4567ef").error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(store_->RemoveIngest("4567ef", /*no_writer_starting=*/true));
  EXPECT_FALSE(std::filesystem::exists(empty));
  EXPECT_EQ(store_->RemoveIngest(busy_id).error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(store_->RemoveIngest("../blobs").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(store_->RemoveIngest("missing").error().code(), ErrorCode::kNotFound);
}

// A collector removing ingests (RemoveIngest of whatever ListIngests shows) while writers open
// theirs: a writer either gets its ingest and commits, or is told the ingest is busy; it never
// writes into a directory removed under it.
TEST_F(StoreTest, WritersOpeningWhileIngestsAreRemovedCommitOrAreToldItIsBusy) {
  Result<std::unique_ptr<Store>> opened =
      Store::Open({.root = root_ / "race", .durability = Durability::kNone});
  ASSERT_TRUE(opened) << opened.error().ToString();
  std::unique_ptr<Store> store = std::move(*opened);
  std::jthread collector([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      Result<std::vector<IngestInfo>> ingests = store->ListIngests();
      if (!ingests) continue;
      for (const IngestInfo& ingest : *ingests) (void)store->RemoveIngest(ingest.id);
    }
  });  // stopped and joined however the test ends
  int committed = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string bytes = fmt::format("blob {}", i);
    const Digest digest = Digest::Sha256Of(bytes);
    auto writer =
        store->OpenWriter(fmt::format("ref-{}", i), digest, static_cast<int64_t>(bytes.size()));
    if (!writer) {
      ASSERT_EQ(writer.error().code(), ErrorCode::kUnavailable) << writer.error().ToString();
      continue;
    }
    ASSERT_TRUE((*writer)->Write(bytes));
    Result<BlobInfo> info = (*writer)->Commit();
    ASSERT_TRUE(info) << info.error().ToString();
    ++committed;
  }
  EXPECT_GT(committed, 500);
}

}  // namespace
}  // namespace berth::content
