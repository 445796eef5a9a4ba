// ImageService against a real registry (docker-registry), a real content store, the native
// snapshotter and the metadata database on a temp dir.
#include "berth/service/image_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "berth/base/log.h"
#include "berth/config/config.h"
#include "berth/registry/curl_transport.h"
#include "berth/snapshot/native_snapshotter.h"
#include "berth/unpack/unpacker.h"
#include "testing/fault_proxy.h"
#include "testing/temp_dir.h"
#include "testing/test_images.h"
#include "testing/test_registry.h"

namespace berth::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class ImageServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto registry = berth::testing::TestRegistry::Start({.log_level = "warn"});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = registry->release();
    auto a = testing::MakeTestImage("a");
    auto b = testing::MakeTestImage("b");
    ASSERT_TRUE(a && b);
    image_a_ = new imagegen::Image(std::move(*a));
    image_b_ = new imagegen::Image(std::move(*b));
    for (auto [tag, image] : {std::pair{"a", image_a_}, std::pair{"b", image_b_}}) {
      auto pushed = testing::PushTestImage(registry_->url(), "test/img", tag, *image);
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete image_a_;
    delete image_b_;
  }

  void SetUp() override {
    auto dir = berth::testing::TempDir::Create("service");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_.emplace(std::move(*dir));
    auto transport = registry::CurlTransport::Create();
    ASSERT_TRUE(transport);
    transport_ = std::move(*transport);
    Open();
  }

  void Open(std::vector<std::string> pinned = {}) {
    service_.reset();
    puller_.reset();
    db_.reset();
    snapshotter_.reset();
    store_.reset();
    auto store = content::Store::Open({.root = dir_->path() / "content"});
    ASSERT_TRUE(store);
    store_ = std::move(*store);
    auto snapshotter = snapshot::NativeSnapshotter::Open(
        {{.root = dir_->path() / "snapshots", .metadata_path = dir_->path() / "metadata.db"}});
    ASSERT_TRUE(snapshotter) << snapshotter.error().ToString();
    snapshotter_ = std::move(*snapshotter);
    auto db = metadata::MetadataDb::Open({.path = dir_->path() / "metadata.db"});
    ASSERT_TRUE(db);
    db_ = std::move(*db);
    puller_ = std::make_unique<pull::Puller>(*store_, *transport_, config::DefaultConfig());
    auto service = ImageService::Create(
        *puller_, *store_, *snapshotter_, *snapshotter_, *db_,
        {.snapshotter_name = "native",
         .snapshot_root = dir_->path() / "snapshots",
         .pinned_images = std::move(pinned),
         .unpacker =
             [this](pull::PullLease& lease, LayerUnpackFn on_layer,
                    const unpack::UnpackDestination& destination) {
               return std::make_unique<unpack::Unpacker>(
                   *snapshotter_, *store_, threads_,
                   unpack::UnpackOptions{.destination = destination}, std::move(on_layer), &lease);
             },
         .platform = {.os = "linux", .architecture = "amd64"},
         .observer = &observer_});
    ASSERT_TRUE(service) << service.error().ToString();
    service_ = std::move(*service);
  }

  std::string Ref(std::string_view tag) const {
    return registry_->host() + "/test/img:" + std::string(tag);
  }

  PullResult MustPull(std::string_view tag) {
    auto pulled = service_->Pull({.image = Ref(tag)}, CancelToken::Never());
    EXPECT_TRUE(pulled) << pulled.error().ToString();
    return pulled ? *pulled : PullResult{};
  }

  // What the service reports to its observer, as berthd's metrics count it.
  class RecordingObserver final : public ImageServiceObserver {
   public:
    void PullStarted() override {
      std::lock_guard lock(mutex);
      ++in_flight;
    }
    void PullDone(std::string_view code, std::chrono::steady_clock::duration elapsed) override {
      std::lock_guard lock(mutex);
      --in_flight;
      pulls.emplace_back(code);
      EXPECT_GT(elapsed.count(), 0);
    }
    void LayerUnpacked(uint64_t bytes, std::chrono::steady_clock::duration elapsed) override {
      std::lock_guard lock(mutex);
      layers.push_back(bytes);
      EXPECT_GT(elapsed.count(), 0);
    }
    void AdmissionRefused() override {
      std::lock_guard lock(mutex);
      ++refused;
    }
    void Collected(const gc::CollectReport& report) override {
      std::lock_guard lock(mutex);
      collected_blobs.push_back(report.blobs.count);
    }
    std::mutex mutex;
    int in_flight = 0;
    std::vector<std::string> pulls;
    std::vector<uint64_t> layers;
    int refused = 0;
    std::vector<int64_t> collected_blobs;
  };

  RecordingObserver observer_;
  static inline berth::testing::TestRegistry* registry_ = nullptr;
  static inline imagegen::Image* image_a_ = nullptr;
  static inline imagegen::Image* image_b_ = nullptr;
  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<registry::CurlTransport> transport_;
  std::unique_ptr<content::Store> store_;
  unpack::LayerThreadBudget threads_;
  std::unique_ptr<snapshot::NativeSnapshotter> snapshotter_;
  std::unique_ptr<metadata::MetadataDb> db_;
  std::unique_ptr<pull::Puller> puller_;
  std::unique_ptr<ImageService> service_;
};

TEST_F(ImageServiceTest, PullRecordsThreeNamesAndStatusReportsThem) {
  PullResult pulled = MustPull("a");
  EXPECT_EQ(pulled.image_id, image_a_->config.digest);
  auto status = service_->Status(Ref("a"));
  ASSERT_TRUE(status);
  ASSERT_TRUE(status->has_value());
  const Image& image = **status;
  EXPECT_EQ(image.id, image_a_->config.digest);
  EXPECT_THAT(image.repo_tags, ElementsAre(Ref("a")));
  EXPECT_THAT(image.repo_digests,
              ElementsAre(registry_->host() + "/test/img@" + image_a_->manifest.digest.ToString()));
  int64_t expected_size = image_a_->manifest.size + image_a_->config.size;
  for (const auto& layer : image_a_->layers) expected_size += layer.blob.size;
  EXPECT_EQ(image.size, expected_size);
  EXPECT_EQ(image.user.uid, 1000);
  EXPECT_FALSE(image.pinned);
  EXPECT_EQ(image.snapshotter, "native");

  auto records = db_->ListImages();
  ASSERT_TRUE(records);
  EXPECT_EQ(records->size(), 3u);
  auto info = nlohmann::json::parse(VerboseInfo(image));
  EXPECT_EQ(info["chainID"], image.chain_id);
  EXPECT_EQ(info["snapshotter"], "native");
  EXPECT_EQ(info["imageSpec"]["config"]["User"], "1000:1000");
}

TEST_F(ImageServiceTest, PullShowsEachLayerFetchedAndUnpackedOnTheProgressBoard) {
  MustPull("a");
  PullBoardView view = service_->pull_progress().View();
  ASSERT_EQ(view.pulls.size(), 1u);
  const PullStatus& pull = view.pulls[0];
  EXPECT_EQ(pull.reference, Ref("a"));
  EXPECT_EQ(pull.state, PullState::kDone);
  for (const auto& layer : image_a_->layers) {
    auto blob = std::find_if(pull.blobs.begin(), pull.blobs.end(), [&](const BlobStatus& status) {
      return status.digest == layer.blob.digest.ToString();
    });
    ASSERT_NE(blob, pull.blobs.end()) << layer.blob.digest.ToString();
    EXPECT_TRUE(blob->layer);
    EXPECT_EQ(blob->fetched_bytes, layer.blob.size);
    EXPECT_EQ(blob->total_bytes, layer.blob.size);
    EXPECT_EQ(blob->unpacked_bytes, layer.uncompressed_size);
    EXPECT_EQ(blob->state, BlobState::kCommitted);
  }

  // Pulled again: every layer is already unpacked.
  MustPull("a");
  view = service_->pull_progress().View();
  ASSERT_EQ(view.pulls.size(), 2u);
  EXPECT_EQ(view.pulls[1].state, PullState::kDone);
  for (const BlobStatus& blob : view.pulls[1].blobs) {
    if (blob.layer) {
      EXPECT_EQ(blob.state, BlobState::kCached) << blob.digest;
    }
  }
}

TEST_F(ImageServiceTest, ConcurrentIdenticalPullsShareOnePull) {
  auto proxy = berth::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  // Hold the manifest back so that every request arrives while the first pull is running.
  ASSERT_TRUE((*proxy)->AddRule(
      {.method = "GET",
       .target_contains = "/manifests/",
       .action = berth::testing::FaultAction::Delay(std::chrono::milliseconds(500))}));
  const std::string reference = (*proxy)->host() + "/test/img:a";
  constexpr int kPulls = 20;
  std::vector<Result<PullResult>> results(kPulls, Fail(ErrorCode::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kPulls; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = service_->Pull({.image = reference}, CancelToken::Never()); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const Result<PullResult>& result : results) {
    ASSERT_TRUE(result) << result.error().ToString();
    EXPECT_EQ(result->image_id, image_a_->config.digest);
  }
  // One set of downloads: one manifest request, and each blob fetched once.
  EXPECT_EQ((*proxy)->RequestCount("GET", "/manifests/"), 1u);
  EXPECT_EQ((*proxy)->RequestCount("GET", "/blobs/"), image_a_->layers.size() + 1);
}

TEST_F(ImageServiceTest, LookupByIdPrefixAndDigestAndMissing) {
  PullResult pulled = MustPull("b");
  for (std::string key : {pulled.image_id.ToString(), pulled.image_id.encoded(),
                          pulled.image_id.encoded().substr(0, 12), pulled.repo_digest}) {
    auto status = service_->Status(key);
    ASSERT_TRUE(status && status->has_value()) << key;
    EXPECT_EQ((*status)->user.username, "nobody");
  }
  auto missing = service_->Status("docker.io/library/nothing:here");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  auto bad = service_->Status("Not A Reference!");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->has_value());

  auto listed = service_->List(pulled.image_id.encoded().substr(0, 8));
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u);
  auto none = service_->List("docker.io/library/nothing:here");
  ASSERT_TRUE(none);
  EXPECT_THAT(*none, IsEmpty());
}

// List's filter: a repository without tag or digest is every image with a name in it (it used
// to be read as ":latest"), a tag or digest that name's image, an ID or ID prefix that image.
TEST_F(ImageServiceTest, ListFilterByRepositoryTagDigestOrId) {
  PullResult a = MustPull("a");
  PullResult b = MustPull("b");
  auto ids = [&](const std::string& filter) {
    auto listed = service_->List(filter);
    EXPECT_TRUE(listed) << listed.error().ToString();
    std::vector<std::string> found;  // ordered by ID
    for (const Image& image : listed.value_or(std::vector<Image>{})) {
      found.push_back(image.id.ToString());
    }
    return found;
  };
  const std::string id_a = a.image_id.ToString();
  const std::string id_b = b.image_id.ToString();
  const std::string repository = registry_->host() + "/test/img";
  EXPECT_THAT(ids(repository), ElementsAre(std::min(id_a, id_b), std::max(id_a, id_b)));
  EXPECT_THAT(ids(Ref("a")), ElementsAre(id_a));
  EXPECT_THAT(ids(a.repo_digest), ElementsAre(id_a));
  EXPECT_THAT(ids(id_b), ElementsAre(id_b));
  EXPECT_THAT(ids(b.image_id.encoded().substr(0, 12)), ElementsAre(id_b));
  EXPECT_THAT(ids(repository + "/sub"), IsEmpty());
  EXPECT_THAT(ids(registry_->host() + "/test/im"), IsEmpty());
  EXPECT_THAT(ids("docker.io/library/debian"), IsEmpty());
}

// Escapes `text` for use inside a std::regex.
std::string RegexQuote(std::string_view text) {
  std::string quoted;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) quoted += '\\';
    quoted += c;
  }
  return quoted;
}

// At debug level a pull logs, as key=value lines through the redacting sink, the endpoints it
// chose and why, the endpoint that resolved the reference, and each layer's fetch, unpack and
// commit times.
TEST_F(ImageServiceTest, DebugLogShowsEndpointsAndLayerTimings) {
  std::ostringstream captured;
  ASSERT_TRUE(log::Init({.level = log::Level::kDebug, .file = "/dev/null"}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  MustPull("a");
  ASSERT_TRUE(log::Init({}));  // info on stderr again; the capture is detached
  const std::string text = captured.str();
  auto logged = [&](const std::string& pattern) {
    return std::regex_search(text, std::regex(pattern)) ? ::testing::AssertionSuccess()
                                                        : ::testing::AssertionFailure()
                                                              << pattern << " not in:\n"
                                                              << text;
  };
  const std::string ref = RegexQuote(Ref("a"));
  // The loopback registry is configured as https, then plain http (containerd's rule), and
  // reached over plain http once the first request found it speaks no TLS.
  const std::string configured = RegexQuote("https://" + registry_->host() + "/v2");
  const std::string url = RegexQuote("http://" + registry_->host() + "/v2");
  EXPECT_TRUE(logged(" debug pull\\.endpoints ref=" + ref +
                     " count=1 mirrors_key=none config_path=none fallback=always\n"));
  EXPECT_TRUE(logged(" debug pull\\.endpoint ref=" + ref + " order=1 url=" + configured +
                     " role=registry why=\"the registry itself \\(fallback = always\\); https, "
                     "or plain http if the server does not speak TLS: a loopback host\"\n"));
  EXPECT_TRUE(logged(" debug pull\\.resolved ref=" + ref + " endpoint=" + url +
                     " digest=" + image_a_->manifest.digest.ToString() + " "));
  for (size_t i = 0; i < image_a_->layers.size(); ++i) {
    const imagegen::Layer& layer = image_a_->layers[i];
    const std::string digest = layer.blob.digest.ToString();
    EXPECT_TRUE(logged(" debug pull\\.blob\\.fetched ref=" + ref + " digest=" + digest +
                       " from=" + url + " bytes=" + std::to_string(layer.blob.size) +
                       " resumed_at=0 ms=[0-9]+\n"));
    EXPECT_TRUE(logged(" debug pull\\.layer\\.unpacked ref=" + ref + " layer=" + std::to_string(i) +
                       " digest=" + digest + " bytes=" + std::to_string(layer.uncompressed_size) +
                       " ms=[0-9]+\n"));
    EXPECT_TRUE(logged(" debug pull\\.layer\\.committed ref=" + ref +
                       " layer=" + std::to_string(i) + " digest=" + digest + " ms=[0-9]+\n"));
  }
}

TEST_F(ImageServiceTest, RemoveKeepsSharedLayersOfTheOtherImage) {
  PullResult a = MustPull("a");
  PullResult b = MustPull("b");
  auto a_status = service_->Status(Ref("a"));
  auto b_status = service_->Status(Ref("b"));
  ASSERT_TRUE(a_status && *a_status && b_status && *b_status);
  std::string a_top = (*a_status)->chain_id;

  ASSERT_TRUE(service_->Remove(Ref("a")));
  EXPECT_FALSE(*service_->Status(a.image_id.ToString()));
  EXPECT_FALSE(snapshotter_->Stat(a_top));
  EXPECT_FALSE(store_->Info(a.image_id));
  // B (and the base layer it shares with A) is intact.
  ASSERT_TRUE(snapshotter_->Stat((*b_status)->chain_id));
  EXPECT_TRUE(store_->Info(image_b_->layers[0].blob.digest));
  auto listed = service_->List();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().id, b.image_id);

  // Unknown image: success.
  EXPECT_TRUE(service_->Remove(Ref("a")));
  EXPECT_TRUE(service_->Remove("sha256:" + std::string(64, '0')));
  auto records = db_->ListImages();
  ASSERT_TRUE(records);
  EXPECT_EQ(records->size(), 3u);
}

TEST_F(ImageServiceTest, SnapshotRemovedBehindOurBackHidesImageUntilRepull) {
  MustPull("a");
  auto status = service_->Status(Ref("a"));
  ASSERT_TRUE(status && *status);
  ASSERT_TRUE(snapshotter_->Remove((*status)->chain_id));
  EXPECT_FALSE(*service_->Status(Ref("a")));
  EXPECT_THAT(*service_->List(), IsEmpty());
  MustPull("a");
  EXPECT_TRUE(*service_->Status(Ref("a")));
}

TEST_F(ImageServiceTest, ReopenRebuildsIndexFromDatabase) {
  MustPull("a");
  MustPull("b");
  auto before = service_->List();
  ASSERT_TRUE(before);
  Open();
  auto after = service_->List();
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_EQ((*after)[i].id, (*before)[i].id);
    EXPECT_EQ((*after)[i].repo_tags, (*before)[i].repo_tags);
    EXPECT_EQ((*after)[i].repo_digests, (*before)[i].repo_digests);
    EXPECT_EQ((*after)[i].size, (*before)[i].size);
    EXPECT_EQ((*after)[i].chain_id, (*before)[i].chain_id);
    EXPECT_EQ((*after)[i].config_json, (*before)[i].config_json);
  }
}

TEST_F(ImageServiceTest, PinnedImagesRefuseRemoveUnlessAllowed) {
  Open({registry_->host() + "/test/*:a"});
  MustPull("a");
  MustPull("b");
  EXPECT_TRUE((*service_->Status(Ref("a")))->pinned);
  EXPECT_FALSE((*service_->Status(Ref("b")))->pinned);
  auto refused = service_->Remove(Ref("a"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(service_->Remove(Ref("a"), RemovePinned::kAllow));
  EXPECT_FALSE(*service_->Status(Ref("a")));
}

TEST_F(ImageServiceTest, PullErrors) {
  auto bad = service_->Pull({.image = "not a reference"}, CancelToken::Never());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  auto missing = service_->Pull({.image = Ref("nope")}, CancelToken::Never());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  CancelToken cancelled;
  cancelled.Cancel();
  auto stopped = service_->Pull({.image = Ref("a")}, cancelled);
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code(), ErrorCode::kCancelled);
}

TEST_F(ImageServiceTest, ObserverHearsPullsLayersAndCollections) {
  MustPull("a");
  EXPECT_FALSE(service_->Pull({.image = Ref("nope")}, CancelToken::Never()));
  ASSERT_TRUE(service_->CollectGarbage(/*dry_run=*/true));  // a dry run is not reported
  ASSERT_TRUE(service_->Remove(Ref("a")));                  // collects
  std::lock_guard lock(observer_.mutex);
  EXPECT_EQ(observer_.in_flight, 0);
  EXPECT_THAT(observer_.pulls, ElementsAre("OK", "NOT_FOUND"));
  ASSERT_EQ(observer_.layers.size(), image_a_->layers.size());
  for (uint64_t bytes : observer_.layers) EXPECT_GT(bytes, 0u);
  EXPECT_EQ(observer_.refused, 0);
  ASSERT_EQ(observer_.collected_blobs.size(), 1u);
  EXPECT_EQ(observer_.collected_blobs[0], static_cast<int64_t>(image_a_->layers.size()) + 2);
}

TEST_F(ImageServiceTest, FsInfoCountsSnapshotsAndContent) {
  MustPull("a");
  auto filesystems = service_->FsInfo();
  ASSERT_TRUE(filesystems) << filesystems.error().ToString();
  ASSERT_EQ(filesystems->size(), 1u);
  EXPECT_FALSE(filesystems->front().mountpoint.empty());
  EXPECT_GT(filesystems->front().used_bytes, 0u);
  // At least: content/, blobs/, sha256/, 4 blobs, snapshots root and two layer trees.
  EXPECT_GT(filesystems->front().inodes_used, 10u);
}

TEST_F(ImageServiceTest, SuccessfulPullLeavesNoLease) {
  MustPull("a");
  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases);
  EXPECT_THAT(*leases, IsEmpty());
}

// A pull that fails keeps what it fetched (its lease is released with an expiry, not deleted):
// a collection meanwhile frees none of it, and the retry fetches only what was missing.
TEST_F(ImageServiceTest, FailedPullKeepsWhatItFetchedForTheRetry) {
  auto proxy = berth::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  const std::string own_layer = image_a_->layers[1].blob.digest.ToString();
  auto rule =
      (*proxy)->AddRule({.method = "GET",
                         .target_contains = own_layer,
                         // Late, so the base layer is whole by then, not cancelled.
                         .action = {.delay = std::chrono::seconds(1), .respond_status = 404}});
  ASSERT_TRUE(rule);
  const std::string reference = (*proxy)->host() + "/test/img:a";
  auto failed = service_->Pull({.image = reference}, CancelToken::Never());
  ASSERT_FALSE(failed);

  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_TRUE(leases->front().expires.has_value());
  EXPECT_GT(*leases->front().expires, std::chrono::system_clock::now() + std::chrono::minutes(30));

  auto collected = service_->CollectGarbage();
  ASSERT_TRUE(collected) << collected.error().ToString();
  EXPECT_EQ(collected->blobs.count, 0);
  EXPECT_EQ(collected->snapshots.count, 0);
  EXPECT_TRUE(store_->Contains(image_a_->layers[0].blob.digest));

  (*proxy)->RemoveRule(*rule);
  const uint64_t base_gets =
      (*proxy)->RequestCount("GET", image_a_->layers[0].blob.digest.ToString());
  auto pulled = service_->Pull({.image = reference}, CancelToken::Never());
  ASSERT_TRUE(pulled) << pulled.error().ToString();
  EXPECT_EQ((*proxy)->RequestCount("GET", image_a_->layers[0].blob.digest.ToString()), base_gets)
      << "the base layer was fetched again";
  // The retry completed the image: its own lease is gone, and so is the failed pull's (nothing
  // is left to resume; the image's names hold what it fetched).
  EXPECT_THAT(*db_->ListLeases(), IsEmpty());
}

// Collections while a pull runs free garbage but never what the pull holds.
TEST_F(ImageServiceTest, CollectingDuringAPullIsSafe) {
  PullResult b = MustPull("b");
  ASSERT_TRUE(service_->Remove(b.image_id.ToString()));  // leaves nothing of b behind
  auto proxy = berth::testing::FaultProxy::Start(registry_->host());
  ASSERT_TRUE(proxy) << proxy.error().ToString();
  ASSERT_TRUE((*proxy)->AddRule(
      {.method = "GET",
       .target_contains = "/blobs/",
       .action = berth::testing::FaultAction::Delay(std::chrono::milliseconds(200))}));
  std::atomic<bool> done{false};
  Result<PullResult> pulled = Fail(ErrorCode::kInternal, "not run");
  std::thread puller([&] {
    pulled = service_->Pull({.image = (*proxy)->host() + "/test/img:a"}, CancelToken::Never());
    done = true;
  });
  int collections = 0;
  while (!done) {
    auto collected = service_->CollectGarbage();
    ASSERT_TRUE(collected) << collected.error().ToString();
    ++collections;
  }
  puller.join();
  ASSERT_TRUE(pulled) << pulled.error().ToString();
  EXPECT_GT(collections, 1);
  auto status = service_->Status(pulled->image_id.ToString());
  ASSERT_TRUE(status && status->has_value());
  for (const auto& layer : image_a_->layers) EXPECT_TRUE(store_->Contains(layer.blob.digest));
  EXPECT_TRUE(snapshotter_->Stat((*status)->chain_id));
}

// Start-up: leases held by a process that died are released (kept for resume_window).
TEST_F(ImageServiceTest, RecoverReleasesLeasesOfDeadPulls) {
  ASSERT_TRUE(db_->CreateLease("pull-dead", "pull example.com/x:1"));
  ASSERT_TRUE(db_->AddLeaseResources(
      "pull-dead", std::vector<metadata::LeaseResource>{
                       {metadata::LeaseResourceKind::kActiveSnapshot, "extract-dead"}}));
  auto recovered = service_->Recover();
  ASSERT_TRUE(recovered) << recovered.error().ToString();
  auto leases = db_->ListLeases();
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_TRUE(leases->front().expires.has_value());
  EXPECT_THAT(leases->front().resources, IsEmpty());  // its active snapshot is not resumable
}

// A lease as an earlier pull left it: `released` (a dead pull's, with an expiry an hour away)
// or held (a running pull's).
enum class LeaseState { kHeld, kReleased };

void MakeLease(metadata::MetadataDb& db, const std::string& id, const std::string& description,
               const std::vector<Digest>& blobs, LeaseState state) {
  ASSERT_TRUE(db.CreateLease(id, description));
  std::vector<metadata::LeaseResource> resources;
  for (const Digest& blob : blobs) {
    resources.push_back({metadata::LeaseResourceKind::kBlob, blob.ToString()});
  }
  ASSERT_TRUE(db.AddLeaseResources(id, resources));
  if (state == LeaseState::kReleased) {
    ASSERT_TRUE(db.ReleaseLeases(id, std::chrono::system_clock::now() + std::chrono::hours(1)));
  }
}

std::vector<std::string> LeaseIds(metadata::MetadataDb& db) {
  std::vector<std::string> ids;
  auto leases = db.ListLeases();
  EXPECT_TRUE(leases) << leases.error().ToString();
  if (leases) {
    for (const metadata::LeaseRecord& lease : *leases) ids.push_back(lease.id);
  }
  return ids;
}

// Issue 12: a completed pull drops the leases dead pulls of the same image left behind (their
// bytes are the image's now, or garbage), but not another image's, nor a running pull's.
TEST_F(ImageServiceTest, CompletedPullDropsDeadLeasesOfItsImageOnly) {
  const Digest a_layer = image_a_->layers.back().blob.digest;
  const Digest b_layer = image_b_->layers.back().blob.digest;
  MakeLease(*db_, "pull-dead-a", "pull " + Ref("a"), {a_layer}, LeaseState::kReleased);
  // Same image under another name: it holds nothing but the image's pieces.
  MakeLease(*db_, "pull-dead-a-elsewhere", "pull example.com/mirror/img:a",
            {image_a_->config.digest, a_layer}, LeaseState::kReleased);
  MakeLease(*db_, "pull-dead-b", "pull " + Ref("b"), {b_layer}, LeaseState::kReleased);
  MakeLease(*db_, "pull-running-a", "pull " + Ref("a"), {a_layer}, LeaseState::kHeld);

  MustPull("a");

  EXPECT_THAT(LeaseIds(*db_), ElementsAre("pull-dead-b", "pull-running-a"));
}

// Issue 12: removing an image drops the dead leases that hold only its pieces, so the removal's
// collection frees them at once; a dead lease that holds more, and a running pull's lease, keep
// what they hold.
TEST_F(ImageServiceTest, RemoveDropsDeadLeasesHoldingOnlyItsPieces) {
  PullResult a = MustPull("a");
  const Digest base_layer = image_a_->layers[0].blob.digest;
  const Digest a_layer = image_a_->layers.back().blob.digest;
  const Digest b_layer = image_b_->layers.back().blob.digest;
  MakeLease(*db_, "pull-dead-a", "pull example.com/mirror/img:a", {a.image_id, a_layer},
            LeaseState::kReleased);
  MakeLease(*db_, "pull-dead-other", "pull example.com/other:1", {base_layer, b_layer},
            LeaseState::kReleased);
  MakeLease(*db_, "pull-running-a", "pull example.com/mirror/img:a", {a_layer}, LeaseState::kHeld);

  ASSERT_TRUE(service_->Remove(Ref("a")));

  EXPECT_THAT(LeaseIds(*db_), ElementsAre("pull-dead-other", "pull-running-a"));
  EXPECT_FALSE(store_->Contains(a.image_id));
  EXPECT_TRUE(store_->Contains(base_layer));
  EXPECT_TRUE(store_->Contains(a_layer));
  ASSERT_TRUE(db_->DeleteLease("pull-running-a"));  // the running pull ends
  ASSERT_TRUE(service_->CollectGarbage());
  EXPECT_FALSE(store_->Contains(a_layer));
}

// The debug log says which dead lease a removal dropped, and what the collection then removed,
// each with its reason.
TEST_F(ImageServiceTest, DebugLogShowsDroppedLeasesAndWhatGarbageCollectionRemoved) {
  PullResult a = MustPull("a");
  MakeLease(*db_, "pull-dead-a", "pull example.com/mirror/img:a", {a.image_id},
            LeaseState::kReleased);
  std::ostringstream captured;
  ASSERT_TRUE(log::Init({.level = log::Level::kDebug, .file = "/dev/null"}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  ASSERT_TRUE(service_->Remove(Ref("a")));
  ASSERT_TRUE(log::Init({}));  // info on stderr again; the capture is detached
  const std::string text = captured.str();
  EXPECT_THAT(
      text, ::testing::HasSubstr(" debug lease.dropped lease=pull-dead-a description=\"pull "
                                 "example.com/mirror/img:a\" image=" +
                                 a.image_id.ToString() +
                                 " reason=\"the image was removed\" match=\"holds only the image's "
                                 "pieces\"\n"));
  EXPECT_THAT(text, ::testing::HasSubstr(" debug gc.removed what=\"blob " + a.image_id.ToString() +
                                         "\" reason=\"no image, unexpired lease or mount holds "
                                         "it\"\n"));
}

}  // namespace
}  // namespace berth::service
