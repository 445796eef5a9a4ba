// File: berth/metrics/daemon_metrics.h
//
// berthd's own metrics (docs/metrics.md lists them all), registered in a Registry that berthd's
// composition root owns:
//
//   metrics::Registry registry;
//   metrics::DaemonMetrics daemon_metrics(registry, "overlayfs");
//   // daemon_metrics is the registry/ and service/ observer handed to the image stack;
//   metrics::AddStateMetrics(registry, {...});   // images, leases, disk usage, at scrape time
//   metrics::AddProcessMetrics(registry);        // process_*
//   // and metrics::GrpcMetrics (grpc_metrics.h) on each gRPC server.
//
// DaemonMetrics turns what the registry client and transport (registry::RegistryObserver), the
// image service (service::ImageServiceObserver) and the peer endpoint
// (peers::BlobServerObserver) report into counters, gauges and histograms. It adds no label the
// reports do not bound: registry hosts as configured, peer addresses (as many as the
// membership), gRPC code names, fixed enumerations; never a reference, repository, tag or
// credential.
//
// Thread safety: the observer methods may be called from any thread; each is a few atomic
// updates and, for labeled series, one map lookup under the family's mutex.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "berth/metadata/metadata_db.h"
#include "berth/metrics/metrics.h"
#include "berth/peers/observer.h"
#include "berth/registry/observer.h"
#include "berth/service/image_service.h"
#include "berth/service/observer.h"

namespace berth::metrics {

class DaemonMetrics final : public registry::RegistryObserver,
                            public service::ImageServiceObserver,
                            public peers::BlobServerObserver {
 public:
  // Registers the families in `registry`, which must outlive this. `snapshotter` labels the
  // pulls ("overlayfs", "native").
  DaemonMetrics(Registry& registry, std::string snapshotter);

  // registry::RegistryObserver
  void RequestDone(std::string_view host, registry::FetchKind kind, int status,
                   uint64_t bytes) override;
  void Retried(std::string_view host, registry::RetryReason reason) override;
  void FellBack(std::string_view host) override;
  void EndpointDead(std::string_view host) override;
  void WatchdogTripped(registry::Watchdog watchdog) override;
  // Peers, the pulling side (issue 17): blob bytes by source and per peer, peers given up on.
  void BlobBytes(registry::BlobSource source, std::string_view host, uint64_t bytes) override;
  void PeerGivenUp(std::string_view peer, registry::PeerFailure reason) override;

  // service::ImageServiceObserver
  void PullStarted() override;
  void PullDone(std::string_view code, std::chrono::steady_clock::duration elapsed) override;
  void LayerUnpacked(uint64_t bytes, std::chrono::steady_clock::duration elapsed) override;
  void AdmissionRefused() override;
  void Collected(const gc::CollectReport& report) override;

  // peers::BlobServerObserver (the peer endpoint, peers.listen)
  void RequestDone(std::string_view method, peers::RequestKind kind, int status,
                   uint64_t body_bytes) override;
  void UploadRefused() override;

 private:
  const std::string snapshotter_;
  CounterFamily& pulls_;
  HistogramFamily& pull_duration_;
  Gauge& pulls_in_flight_;
  CounterFamily& fetched_bytes_;
  CounterFamily& registry_requests_;
  CounterFamily& retries_;
  CounterFamily& fallbacks_;
  CounterFamily& dead_endpoints_;
  CounterFamily& watchdog_trips_;
  CounterFamily& blob_bytes_;       // by source
  CounterFamily& peer_blob_bytes_;  // by peer
  CounterFamily& peers_given_up_;   // by peer and reason
  Histogram& layer_unpack_duration_;
  Counter& layer_unpacked_bytes_;
  Counter& admission_refusals_;
  Counter& gc_runs_;
  CounterFamily& gc_removed_;
  CounterFamily& gc_freed_bytes_;
  Counter& gc_expired_leases_;
  CounterFamily& peer_requests_;
  CounterFamily& peer_served_bytes_;
  Counter& peer_uploads_refused_;
};

// What AddStateMetrics measures. Each reference must outlive the registry's renders.
struct StateSources {
  service::ImageService* images = nullptr;
  metadata::MetadataDb* db = nullptr;
  std::filesystem::path content_root;   // <root>/content
  std::filesystem::path snapshot_root;  // <root>/snapshots/<snapshotter>
  // Disk usage (a walk of both trees) is measured again only when the last measurement is at
  // least this old; images and leases are counted at every scrape.
  std::chrono::seconds disk_usage_max_age{30};
};

// Registers berth_images, berth_leases, berth_content_bytes/_inodes and
// berth_snapshot_bytes/_inodes, refreshed by a collector at scrape time. A source that fails
// leaves its gauges as they were (and logs at debug).
void AddStateMetrics(Registry& registry, StateSources sources);

}  // namespace berth::metrics
