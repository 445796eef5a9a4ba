// SnapshotsService through a real gRPC channel on a unix socket, over an overlay snapshotter on a
// temp dir (nothing is mounted: the mounts are checked as containerd would read them).
#include "berth/containerd/snapshots_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "berth/base/log.h"
#include "berth/containerd/snapshots_test_util.h"
#include "berth/snapshot/overlay_snapshotter.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::containerd {
namespace {

namespace fs = std::filesystem;
using ::berth::testing::FailsWith;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

const std::string kPrefix(snapshot::kContainerdKeyPrefix);

// How containerd's diff applier (diff/apply/apply_linux.go, getOverlayPath) reads a single
// overlay mount: the upperdir= value, and lowerdir= split at ':'. nullopt when it would fall back
// to mounting (no upperdir).
struct OverlayPaths {
  std::string upper;
  std::vector<std::string> lower;
};
std::optional<OverlayPaths> ContainerdOverlayPaths(const std::vector<snapshot::Mount>& mounts) {
  if (mounts.size() != 1 || mounts[0].type != "overlay") return std::nullopt;
  OverlayPaths paths;
  for (const std::string& option : mounts[0].options) {
    if (option.starts_with("upperdir=")) paths.upper = option.substr(9);
    if (option.starts_with("lowerdir=")) {
      std::string rest = option.substr(9);
      for (size_t start = 0;;) {
        size_t end = rest.find(':', start);
        paths.lower.push_back(rest.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
  }
  if (paths.upper.empty()) return std::nullopt;
  return paths;
}

class SnapshotsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!snapshot::OverlaySnapshotter::KernelSupportsOverlay()) {
      GTEST_SKIP() << "the kernel has no overlay filesystem (modprobe overlay)";
    }
    ASSERT_OK_AND_ASSIGN(auto dir, berth::testing::TempDir::Create("snapapi"));
    dir_.emplace(std::move(dir));
    ASSERT_OK_AND_ASSIGN(local_, snapshot::OverlaySnapshotter::Open(
                                     {{.root = dir_->path() / "root", .sync = Durability::kNone}}));
    ASSERT_OK_AND_ASSIGN(
        served_, testing::ServedSnapshots::Start(*local_, *local_, dir_->path() / "s.sock"));
  }

  SnapshotsClient& client() { return served_->client(); }
  api::Snapshots::Stub& stub() { return served_->stub(); }

  // Prepares `key` on `parent` through the API, writes `file` into it and commits it as `name`.
  void CommitLayer(const std::string& name, const std::string& key, const std::string& parent,
                   const snapshot::Labels& labels = {}) {
    ASSERT_OK(client().Prepare(key, parent, {}));
    ASSERT_OK_AND_ASSIGN(snapshot::ApplyTarget target, local_->GetApplyTarget(kPrefix + key));
    std::ofstream(target.directory / (name.substr(name.size() - 3) + ".txt")) << name;
    ASSERT_OK(client().Commit(name, key, labels));
  }

  std::vector<std::string> ListNames(const std::vector<std::string>& filters) {
    auto listed = client().List(filters);
    EXPECT_OK(listed);
    std::vector<std::string> names;
    if (listed) {
      for (const snapshot::Info& info : *listed) names.push_back(info.name);
    }
    return names;
  }

  std::optional<berth::testing::TempDir> dir_;
  std::unique_ptr<snapshot::OverlaySnapshotter> local_;
  std::unique_ptr<testing::ServedSnapshots> served_;
};

TEST_F(SnapshotsServiceTest, KeysParentsAndLabelsComeBackExactlyAsContainerdSentThem) {
  const snapshot::Labels labels = {{"containerd.io/snapshot.ref", "sha256:top"},
                                   {"containerd.io/snapshot/cri.layer-digest", "sha256:layer"},
                                   {"containerd.io/gc.root", "2026-12-06T05:00:00Z"},
                                   {"odd key with spaces", "value\nwith a newline"}};
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("default/2/sha256:base", "default/1/extract-1 sha256:base", ""));
  ASSERT_OK(client().Prepare("default/3/extract-2 sha256:top", "default/2/sha256:base", labels));

  ASSERT_OK_AND_ASSIGN(snapshot::Info active, client().Stat("default/3/extract-2 sha256:top"));
  EXPECT_EQ(active.name, "default/3/extract-2 sha256:top");
  EXPECT_EQ(active.parent, "default/2/sha256:base");
  EXPECT_EQ(active.kind, snapshot::Kind::kActive);
  EXPECT_EQ(active.labels, labels);
  // Timestamps cross the wire to the nanosecond.
  ASSERT_OK_AND_ASSIGN(snapshot::Info stored,
                       local_->Stat(kPrefix + "default/3/extract-2 sha256:top"));
  EXPECT_EQ(active.created, stored.created);
  EXPECT_EQ(active.updated, stored.updated);

  ASSERT_OK(client().Commit("default/4/sha256:top", "default/3/extract-2 sha256:top", labels));
  ASSERT_OK_AND_ASSIGN(snapshot::Info committed, client().Stat("default/4/sha256:top"));
  EXPECT_EQ(committed.kind, snapshot::Kind::kCommitted);
  EXPECT_EQ(committed.parent, "default/2/sha256:base");
  EXPECT_EQ(committed.labels, labels);
  EXPECT_THAT(client().Stat("default/3/extract-2 sha256:top"), FailsWith(ErrorCode::kNotFound));

  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Info> listed, client().List({}));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_THAT(ListNames({}), UnorderedElementsAre("default/2/sha256:base", "default/4/sha256:top"));
  for (const snapshot::Info& info : listed) {
    if (info.name == "default/4/sha256:top") {
      EXPECT_EQ(info, committed);
    }
  }
}

TEST_F(SnapshotsServiceTest, ContainerdsSnapshotsAreStoredUnderThePrefixAndBerthsAreInvisible) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer("default/2/sha256:base", "default/1/x", ""));
  // berth's layout: containerd's key under the prefix, parent too.
  ASSERT_OK_AND_ASSIGN(snapshot::Info stored, local_->Stat(kPrefix + "default/2/sha256:base"));
  EXPECT_EQ(stored.kind, snapshot::Kind::kCommitted);
  EXPECT_THAT(local_->Stat("default/2/sha256:base"), FailsWith(ErrorCode::kNotFound));
  ASSERT_OK(client().Prepare("default/3/c", "default/2/sha256:base", {}));
  EXPECT_EQ(local_->Stat(kPrefix + "default/3/c")->parent, kPrefix + "default/2/sha256:base");

  // berth's own image layer, as berth's unpacker makes it.
  ASSERT_OK(local_->Prepare("extract-1-sha256:mine", "", {}));
  ASSERT_OK(local_->Commit("sha256:mine", "extract-1-sha256:mine", {}));
  EXPECT_THAT(ListNames({}), UnorderedElementsAre("default/2/sha256:base", "default/3/c"));
  EXPECT_THAT(client().Stat("sha256:mine"), FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(client().Prepare("default/5/on-berth", "sha256:mine", {}),
              FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(client().Remove("sha256:mine"), FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(client().GetUsage("sha256:mine"), FailsWith(ErrorCode::kNotFound));
  EXPECT_OK(local_->Stat("sha256:mine"));
  // A key that happens to look like a stored one is still containerd's own key.
  ASSERT_OK(client().Prepare(kPrefix + "x", "", {}));
  EXPECT_OK(local_->Stat(kPrefix + kPrefix + "x"));
  EXPECT_THAT(ListNames({"name==" + kPrefix + "x"}), ElementsAre(kPrefix + "x"));
}

TEST_F(SnapshotsServiceTest, MountsAreOverlayOrBindAsContainerdsApplierReadsThem) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer("default/2/sha256:l1", "default/1/k1", ""));
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("default/4/sha256:l2", "default/3/k2", "default/2/sha256:l1"));
  ASSERT_OK_AND_ASSIGN(int64_t l1, local_->IdForTest(kPrefix + "default/2/sha256:l1"));
  ASSERT_OK_AND_ASSIGN(int64_t l2, local_->IdForTest(kPrefix + "default/4/sha256:l2"));
  const fs::path snapshots = dir_->path() / "root" / "snapshots";

  // No parent: a read-write bind of the layer directory (containerd mounts it to apply).
  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Mount> first, client().Prepare("default/5/a", "", {}));
  ASSERT_OK_AND_ASSIGN(int64_t a, local_->IdForTest(kPrefix + "default/5/a"));
  EXPECT_THAT(first, ElementsAre(snapshot::Mount{.type = "bind",
                                                 .source = (snapshots / std::to_string(a) / "fs"),
                                                 .options = {"rbind", "rw"}}));

  // Parents: one overlay mount whose upperdir is where the layer goes, lowerdir nearest first.
  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Mount> stacked,
                       client().Prepare("default/6/b", "default/4/sha256:l2", {}));
  ASSERT_OK_AND_ASSIGN(int64_t b, local_->IdForTest(kPrefix + "default/6/b"));
  std::optional<OverlayPaths> paths = ContainerdOverlayPaths(stacked);
  ASSERT_TRUE(paths) << "containerd's applier would not take the fast path: "
                     << (stacked.empty() ? "" : snapshot::ToString(stacked[0]));
  EXPECT_EQ(paths->upper, (snapshots / std::to_string(b) / "fs").string());
  EXPECT_THAT(paths->lower, ElementsAre((snapshots / std::to_string(l2) / "fs").string(),
                                        (snapshots / std::to_string(l1) / "fs").string()));
  EXPECT_EQ(paths->upper, local_->GetApplyTarget(kPrefix + "default/6/b")->directory.string());
  EXPECT_THAT(stacked[0].options,
              ::testing::Contains("workdir=" + (snapshots / std::to_string(b) / "work").string()));
  EXPECT_THAT(stacked[0].options, ::testing::Contains("index=off"));
  EXPECT_EQ(stacked[0].source, "overlay");

  // Views: one parent is a read-only bind of it; more are an overlay without upperdir.
  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Mount> view1,
                       client().View("default/7/v1", "default/2/sha256:l1", {}));
  EXPECT_THAT(view1, ElementsAre(snapshot::Mount{.type = "bind",
                                                 .source = (snapshots / std::to_string(l1) / "fs"),
                                                 .options = {"rbind", "ro"}}));
  ASSERT_OK_AND_ASSIGN(std::vector<snapshot::Mount> view2,
                       client().View("default/8/v2", "default/4/sha256:l2", {}));
  ASSERT_EQ(view2.size(), 1u);
  EXPECT_EQ(view2[0].type, "overlay");
  EXPECT_FALSE(ContainerdOverlayPaths(view2));
  EXPECT_THAT(view2[0].options,
              ::testing::Contains("lowerdir=" + (snapshots / std::to_string(l2) / "fs").string() +
                                  ":" + (snapshots / std::to_string(l1) / "fs").string()));

  // Mounts gives the same again; a committed snapshot has none.
  EXPECT_EQ(*client().Mounts("default/6/b"), stacked);
  EXPECT_EQ(*client().Mounts("default/7/v1"), view1);
  EXPECT_THAT(client().Mounts("default/2/sha256:l1"), FailsWith(ErrorCode::kFailedPrecondition));
  // The wire carries no target.
  api::MountsRequest request;
  request.set_key("default/6/b");
  api::MountsResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub().Mounts(&context, request, &response).ok());
  ASSERT_EQ(response.mounts_size(), 1);
  EXPECT_EQ(response.mounts(0).target(), "");
}

TEST_F(SnapshotsServiceTest, UpdateFollowsTheFieldMask) {
  ASSERT_OK(client().Prepare("k", "", {{"a", "1"}, {"b", "2"}, {"c", "3"}}));
  auto update = [&](snapshot::Labels labels, std::vector<std::string> paths) {
    api::UpdateSnapshotRequest request;
    request.mutable_info()->set_name("k");
    request.mutable_info()->mutable_labels()->insert(labels.begin(), labels.end());
    for (const std::string& path : paths) request.mutable_update_mask()->add_paths(path);
    api::UpdateSnapshotResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub().Update(&context, request, &response);
    return std::make_pair(
        status, snapshot::Labels(response.info().labels().begin(), response.info().labels().end()));
  };
  // labels.<key>: set from the request, or deleted when the request does not have it.
  auto [status, labels] = update({{"a", "10"}, {"z", "26"}}, {"labels.a", "labels.b"});
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(labels, (snapshot::Labels{{"a", "10"}, {"c", "3"}}));
  EXPECT_EQ(client().Stat("k")->labels, labels);
  // "labels" replaces them all; so does an empty mask.
  std::tie(status, labels) = update({{"x", "1"}}, {"labels"});
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(labels, (snapshot::Labels{{"x", "1"}}));
  std::tie(status, labels) = update({{"y", "2"}}, {});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(client().Stat("k")->labels, (snapshot::Labels{{"y", "2"}}));
  // Other fields cannot change.
  std::tie(status, labels) = update({{"y", "3"}}, {"labels.y", "parent"});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("\"parent\""));
  EXPECT_EQ(client().Stat("k")->labels, (snapshot::Labels{{"y", "2"}}));
  EXPECT_THAT(client().UpdateLabels("missing", {.set = {{"a", "b"}}}),
              FailsWith(ErrorCode::kNotFound, "missing"));
}

TEST_F(SnapshotsServiceTest, ListHonoursTheFiltersContainerdSends) {
  const std::string ref = "containerd.io/snapshot.ref";
  ASSERT_NO_FATAL_FAILURE(
      CommitLayer("default/2/sha256:c1", "default/1/e1", "", {{ref, "sha256:c1"}}));
  ASSERT_NO_FATAL_FAILURE(CommitLayer("default/4/sha256:c2", "default/3/e2", "default/2/sha256:c1",
                                      {{ref, "sha256:c2"}}));
  ASSERT_NO_FATAL_FAILURE(CommitLayer("other/2/sha256:c2", "other/1/e2", "", {{ref, "sha256:c2"}}));
  ASSERT_OK(client().Prepare("default/5/active", "default/4/sha256:c2", {}));

  // metadata/snapshot.go's lookup of an existing target, with and without a parent.
  EXPECT_THAT(
      ListNames(
          {R"(labels."containerd.io/snapshot.ref"==sha256:c2,parent=="default/2/sha256:c1")"}),
      ElementsAre("default/4/sha256:c2"));
  EXPECT_THAT(ListNames({R"(labels."containerd.io/snapshot.ref"==sha256:c2,parent=="")"}),
              ElementsAre("other/2/sha256:c2"));
  EXPECT_THAT(ListNames({"kind==active"}), ElementsAre("default/5/active"));
  EXPECT_THAT(ListNames({"name==default/2/sha256:c1", "parent==default/4/sha256:c2"}),
              UnorderedElementsAre("default/2/sha256:c1", "default/5/active"));

  auto regex = client().List({"name~=default/.*"});
  EXPECT_THAT(regex, FailsWith(ErrorCode::kInvalidArgument, "name~=default/.*"));
  EXPECT_THAT(client().List({"size==3"}), FailsWith(ErrorCode::kInvalidArgument, "size==3"));
}

TEST_F(SnapshotsServiceTest, ListStreamsLargeListingsInBatches) {
  for (int i = 0; i < 230; ++i) ASSERT_OK(client().Prepare("k" + std::to_string(i), "", {}));
  api::ListSnapshotsRequest request;
  grpc::ClientContext context;
  auto reader = stub().List(&context, request);
  api::ListSnapshotsResponse batch;
  std::vector<int> sizes;
  std::set<std::string> names;
  while (reader->Read(&batch)) {
    sizes.push_back(batch.info_size());
    for (const api::Info& info : batch.info()) names.insert(info.name());
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_THAT(sizes, ElementsAre(100, 100, 30));
  EXPECT_EQ(names.size(), 230u);
}

TEST_F(SnapshotsServiceTest, ErrorsCarryBerthsCodesAndContainerdsKeys) {
  ASSERT_NO_FATAL_FAILURE(CommitLayer("default/2/sha256:p", "default/1/e", ""));
  ASSERT_OK(client().Prepare("default/3/c", "default/2/sha256:p", {}));

  auto exists = client().Prepare("default/3/c", "", {});
  EXPECT_THAT(exists, FailsWith(ErrorCode::kAlreadyExists, "snapshot default/3/c already exists"));
  EXPECT_THAT(exists.error().ToString(), Not(HasSubstr(kPrefix)));
  EXPECT_THAT(client().Prepare("default/4/d", "default/9/missing", {}),
              FailsWith(ErrorCode::kNotFound, "parent snapshot default/9/missing does not exist"));
  EXPECT_THAT(client().Prepare("default/4/d", "default/3/c", {}),
              FailsWith(ErrorCode::kFailedPrecondition, "not committed"));
  EXPECT_THAT(client().Remove("default/2/sha256:p"),
              FailsWith(ErrorCode::kFailedPrecondition, "has 1 child"));
  EXPECT_THAT(client().Commit("default/2/sha256:p", "default/3/c", {}),
              FailsWith(ErrorCode::kAlreadyExists));
  EXPECT_THAT(client().Prepare("", "", {}), FailsWith(ErrorCode::kInvalidArgument, "key"));
  EXPECT_THAT(client().Commit("", "default/3/c", {}), FailsWith(ErrorCode::kInvalidArgument));
  EXPECT_THAT(client().Stat(""), FailsWith(ErrorCode::kInvalidArgument));
  EXPECT_THAT(client().Remove("default/8/none"), FailsWith(ErrorCode::kNotFound));
}

TEST_F(SnapshotsServiceTest, RemoveUsageCleanupAndRebase) {
  ASSERT_OK(client().Prepare("default/1/a", "", {}));
  ASSERT_OK_AND_ASSIGN(snapshot::ApplyTarget target,
                       local_->GetApplyTarget(kPrefix + "default/1/a"));
  std::ofstream(target.directory / "file") << std::string(10000, 'x');
  ASSERT_OK_AND_ASSIGN(snapshot::Usage usage, client().GetUsage("default/1/a"));
  EXPECT_EQ(usage.inodes, 2);
  EXPECT_GE(usage.size, 10000);
  EXPECT_EQ(usage, *local_->GetUsage(kPrefix + "default/1/a"));

  // Cleanup removes directories no snapshot owns, and nothing else.
  const fs::path stray = dir_->path() / "root" / "snapshots" / "rm-77";
  fs::create_directories(stray / "fs");
  ASSERT_OK(client().Cleanup());
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_TRUE(fs::exists(target.directory / "file"));

  // containerd 2.x's rebase: Commit with a parent.
  ASSERT_OK(client().Commit("default/2/base", "default/1/a", {}));
  ASSERT_OK(client().Prepare("default/3/late", "", {}));
  api::CommitSnapshotRequest request;
  request.set_name("default/4/late");
  request.set_key("default/3/late");
  request.set_parent("default/2/base");
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  grpc::Status status = stub().Commit(&context, request, &empty);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(client().Stat("default/4/late")->parent, "default/2/base");

  ASSERT_OK(client().Remove("default/4/late"));
  ASSERT_OK(client().Remove("default/2/base"));
  EXPECT_THAT(local_->Stat(kPrefix + "default/2/base"), FailsWith(ErrorCode::kNotFound));
  EXPECT_THAT(ListNames({}), ::testing::IsEmpty());
}

TEST_F(SnapshotsServiceTest, EachRequestLogsOneDebugLine) {
  std::ostringstream captured;
  ASSERT_OK(log::Init({.level = log::Level::kDebug}));
  log::AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  ASSERT_OK(client().Prepare("default/1/logged", "", {}));
  EXPECT_THAT(client().Stat("default/1/none"), FailsWith(ErrorCode::kNotFound));
  ASSERT_OK(log::Init({.level = log::Level::kInfo}));  // also drops the capturing sink
  std::vector<std::string> requests;
  std::istringstream lines(captured.str());
  for (std::string line; std::getline(lines, line);) {
    if (line.find("containerd.snapshots ") != std::string::npos) requests.push_back(line);
  }
  ASSERT_EQ(requests.size(), 2u) << captured.str();
  EXPECT_THAT(requests[0], HasSubstr("method=Prepare"));
  EXPECT_THAT(requests[0], HasSubstr("default/1/logged"));
  EXPECT_THAT(requests[0], HasSubstr("code=OK"));
  EXPECT_THAT(requests[1], HasSubstr("method=Stat"));
  EXPECT_THAT(requests[1], HasSubstr("code=NOT_FOUND"));
}

// Hands layers over the way RemoteLayers does (a staged committed snapshot renamed to
// containerd's key, on containerd's parent) for the chain IDs in `provides`, and records every
// key it was asked for.
class HandingOverLayers final : public LayerSource {
 public:
  explicit HandingOverLayers(snapshot::Snapshotter& snapshotter) : snapshotter_(snapshotter) {}

  bool Provide(const LayerRequest& request, const CancelToken&) override {
    asked.emplace_back(request.key);
    const std::string& chain_id = request.labels.at("containerd.io/snapshot.ref");
    if (!provides.contains(chain_id)) return false;
    const std::string parent = request.parent.empty() ? "" : kPrefix + std::string(request.parent);
    const std::string staged = "remote/test/" + chain_id;
    return snapshotter_.Prepare("staging " + chain_id, parent) &&
           snapshotter_.Commit(staged, "staging " + chain_id) &&
           snapshotter_.Rename(staged, kPrefix + std::string(request.key), request.labels);
  }

  std::set<std::string> provides;
  std::vector<std::string> asked;

 private:
  snapshot::Snapshotter& snapshotter_;
};

// Remote snapshots as containerd's metadata layer drives them: a Prepare naming a layer the
// source provides answers ALREADY_EXISTS, and the List containerd then sends (with its filter, an
// unquoted chain ID and the quoted backend parent) finds the committed snapshot under the key it
// sent. A layer the source does not provide, and a Prepare without the label, are ordinary.
TEST_F(SnapshotsServiceTest, PrepareOfALayerTheSourceHandsOverAnswersAlreadyExists) {
  HandingOverLayers layers(*local_);
  layers.provides = {"sha256:aaa"};
  served_.reset();
  ASSERT_OK_AND_ASSIGN(served_, testing::ServedSnapshots::Start(
                                    *local_, *local_, dir_->path() / "remote.sock", {}, &layers));
  const std::string key = "k8s.io/1/extract-1 sha256:aaa";
  const snapshot::Labels labels = {{"containerd.io/snapshot.ref", "sha256:aaa"},
                                   {"containerd.io/snapshot/cri.image-ref", "r.test/app:v1"}};
  EXPECT_THAT(client().Prepare(key, "", labels), FailsWith(ErrorCode::kAlreadyExists));
  ASSERT_OK_AND_ASSIGN(
      std::vector<snapshot::Info> found,
      client().List({R"(labels."containerd.io/snapshot.ref"==sha256:aaa,parent=="")"}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].name, key);
  EXPECT_EQ(found[0].parent, "");
  EXPECT_EQ(found[0].kind, snapshot::Kind::kCommitted);
  EXPECT_EQ(found[0].labels, labels);

  // The next layer: the source does not have it, so it is an ordinary active snapshot on it.
  const std::string next = "k8s.io/2/extract-2 sha256:bbb";
  ASSERT_OK(client().Prepare(next, key, {{"containerd.io/snapshot.ref", "sha256:bbb"}}));
  EXPECT_EQ(client().Stat(next)->kind, snapshot::Kind::kActive);
  EXPECT_EQ(client().Stat(next)->parent, key);
  // Not a layer (no snapshot.ref): the source is not asked.
  ASSERT_OK(client().Prepare("k8s.io/3/container", key, {}));
  EXPECT_THAT(layers.asked, ElementsAre(key, next));
  served_.reset();
}

}  // namespace
}  // namespace berth::containerd
