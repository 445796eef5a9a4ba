#include "berth/metrics/daemon_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "berth/metrics/grpc_metrics.h"
#include "testing/result_matchers.h"
#include "testing/temp_dir.h"

namespace berth::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DaemonMetricsTest, RegistryReportsBecomeLabeledCounters) {
  Registry registry;
  DaemonMetrics metrics(registry, "overlayfs");
  metrics.RequestDone("r.local:5000", registry::FetchKind::kManifest, 200, 512);
  metrics.RequestDone("r.local:5000", registry::FetchKind::kLayer, 206, 1000);
  metrics.RequestDone("r.local:5000", registry::FetchKind::kLayer, 200, 24);
  metrics.RequestDone("mirror.local", registry::FetchKind::kConfig, 0, 0);
  metrics.Retried("r.local:5000", registry::RetryReason::kRetryAfter);
  metrics.FellBack("mirror.local");
  metrics.EndpointDead("mirror.local");
  metrics.WatchdogTripped(registry::Watchdog::kTooSlow);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("berth_registry_fetched_bytes_total{host=\"r.local:5000\","
                              "kind=\"layer\"} 1024\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_fetched_bytes_total{host=\"r.local:5000\","
                              "kind=\"manifest\"} 512\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_requests_total{host=\"mirror.local\","
                              "status=\"error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_requests_total{host=\"r.local:5000\","
                              "status=\"206\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_retries_total{host=\"r.local:5000\","
                              "reason=\"retry_after\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_fallbacks_total{host=\"mirror.local\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_dead_endpoints_total{host=\"mirror.local\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_registry_watchdog_trips_total{watchdog=\"too_slow\"} 1\n"));
}

TEST(DaemonMetricsTest, BlobBytesBySourceAndPerPeerAndPeersGivenUp) {
  Registry registry;
  DaemonMetrics metrics(registry, "overlayfs");
  metrics.BlobBytes(registry::BlobSource::kPeer, "10.0.0.2:5050", 1000);
  metrics.BlobBytes(registry::BlobSource::kPeer, "10.0.0.3:5050", 24);
  metrics.BlobBytes(registry::BlobSource::kRegistry, "r.local:5000", 512);
  metrics.PeerGivenUp("10.0.0.3:5050", registry::PeerFailure::kBadBytes);
  metrics.PeerGivenUp("10.0.0.3:5050", registry::PeerFailure::kBadBytes);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("berth_blob_fetched_bytes_total{source=\"peer\"} 1024\n"));
  EXPECT_THAT(text, HasSubstr("berth_blob_fetched_bytes_total{source=\"registry\"} 512\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_fetched_bytes_total{peer=\"10.0.0.2:5050\"} 1000\n"));
  EXPECT_THAT(text, Not(HasSubstr("berth_peer_fetched_bytes_total{peer=\"r.local:5000\"}")));
  EXPECT_THAT(text, HasSubstr("berth_peer_given_up_total{peer=\"10.0.0.3:5050\","
                              "reason=\"bad_bytes\"} 2\n"));
}

TEST(DaemonMetricsTest, PeerEndpointReportsBecomeCounters) {
  Registry registry;
  DaemonMetrics metrics(registry, "overlayfs");
  // Served bytes start at 0 for both kinds.
  EXPECT_THAT(registry.Render(), HasSubstr("berth_peer_served_bytes_total{kind=\"blob\"} 0\n"));
  metrics.RequestDone("GET", peers::RequestKind::kBlob, 200, 4096);
  metrics.RequestDone("GET", peers::RequestKind::kBlob, 206, 10);
  metrics.RequestDone("HEAD", peers::RequestKind::kManifest, 200, 0);
  metrics.RequestDone("other", peers::RequestKind::kOther, 405, 0);
  metrics.UploadRefused();
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("berth_peer_served_bytes_total{kind=\"blob\"} 4106\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_served_bytes_total{kind=\"manifest\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_requests_total{method=\"GET\",kind=\"blob\","
                              "status=\"206\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_requests_total{method=\"HEAD\",kind=\"manifest\","
                              "status=\"200\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_requests_total{method=\"other\",kind=\"other\","
                              "status=\"405\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_peer_uploads_refused_total 1\n"));
}

TEST(DaemonMetricsTest, PullsLayersAdmissionAndCollections) {
  Registry registry;
  DaemonMetrics metrics(registry, "native");
  EXPECT_THAT(registry.Render(),
              HasSubstr("berth_pulls_total{code=\"OK\",snapshotter=\"native\"} 0\n"));
  metrics.PullStarted();
  metrics.PullStarted();
  EXPECT_THAT(registry.Render(), HasSubstr("berth_pulls_in_flight 2\n"));
  metrics.PullDone("OK", std::chrono::milliseconds(1500));
  metrics.PullDone("NOT_FOUND", std::chrono::milliseconds(50));
  metrics.LayerUnpacked(4096, std::chrono::milliseconds(20));
  metrics.AdmissionRefused();
  metrics.Collected({.blobs = {.count = 3, .bytes = 3000},
                     .snapshots = {.count = 2, .bytes = 8192},
                     .expired_leases = 1});
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("berth_pulls_in_flight 0\n"));
  EXPECT_THAT(text, HasSubstr("berth_pulls_total{code=\"OK\",snapshotter=\"native\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_pulls_total{code=\"NOT_FOUND\",snapshotter=\"native\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_pull_duration_seconds_bucket{snapshotter=\"native\","
                              "le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_pull_duration_seconds_bucket{snapshotter=\"native\","
                              "le=\"1.6\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("berth_pull_duration_seconds_sum{snapshotter=\"native\"} 1.55\n"));
  EXPECT_THAT(text, HasSubstr("berth_layer_unpacked_bytes_total 4096\n"));
  EXPECT_THAT(text, HasSubstr("berth_layer_unpack_duration_seconds_count 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_disk_admission_refusals_total 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_gc_runs_total 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_gc_removed_objects_total{kind=\"blob\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("berth_gc_removed_objects_total{kind=\"ingest\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("berth_gc_freed_bytes_total{kind=\"snapshot\"} 8192\n"));
  EXPECT_THAT(text, HasSubstr("berth_gc_expired_leases_total 1\n"));
}

TEST(GrpcMetricsTest, CallsBySplitMethodAndCodeName) {
  Registry registry;
  GrpcMetrics metrics(registry);
  metrics.CallDone("/runtime.v1.ImageService/PullImage", grpc::StatusCode::OK,
                   std::chrono::milliseconds(3));
  metrics.CallDone("/runtime.v1.ImageService/PullImage", grpc::StatusCode::UNAUTHENTICATED,
                   std::chrono::milliseconds(3));
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("berth_grpc_requests_total{service=\"runtime.v1.ImageService\","
                              "method=\"PullImage\",code=\"OK\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_grpc_requests_total{service=\"runtime.v1.ImageService\","
                              "method=\"PullImage\",code=\"UNAUTHENTICATED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_grpc_request_duration_seconds_count{service=\"runtime.v1."
                              "ImageService\",method=\"PullImage\"} 2\n"));
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::DATA_LOSS), "DATA_LOSS");
  // 17 is past the last code yet inside the enum's range of values (a cast outside it would be
  // undefined behaviour, which the sanitizer build rejects).
  EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(17)), "UNKNOWN");
}

TEST(StateMetricsTest, DiskUsageIsMeasuredAndCachedForMaxAge) {
  ASSERT_OK_AND_ASSIGN(testing::TempDir dir, testing::TempDir::Create("state-metrics"));
  std::filesystem::create_directories(dir.path() / "content");
  std::filesystem::create_directories(dir.path() / "snapshots");
  std::ofstream(dir.path() / "content" / "blob") << std::string(100000, 'x');
  Registry registry;
  AddStateMetrics(registry, {.content_root = dir.path() / "content",
                             .snapshot_root = dir.path() / "snapshots",
                             .disk_usage_max_age = std::chrono::hours(1)});
  const std::string first = registry.Render();
  EXPECT_THAT(first, HasSubstr("berth_content_inodes 2\n"));  // the directory and the file
  EXPECT_THAT(first, HasSubstr("berth_snapshot_inodes 1\n"));
  EXPECT_THAT(first, Not(HasSubstr("berth_content_bytes 0\n")));
  EXPECT_THAT(first, HasSubstr("berth_leases{state=\"held\"} 0\n"));
  std::ofstream(dir.path() / "snapshots" / "file") << "y";
  EXPECT_THAT(registry.Render(), HasSubstr("berth_snapshot_inodes 1\n"));  // cached
}

}  // namespace
}  // namespace berth::metrics
