#include "berth/metrics/daemon_metrics.h"

#include <memory>
#include <mutex>
#include <set>

#include "berth/base/log.h"
#include "berth/snapshot/tree_util.h"

namespace berth::metrics {
namespace {

double Seconds(std::chrono::steady_clock::duration elapsed) {
  return std::chrono::duration<double>(elapsed).count();
}

// 0.1 s to about 7 minutes: a small image from a local mirror to a large one over a slow link.
std::vector<double> PullBuckets() { return ExponentialBuckets(0.1, 2, 13); }

// 10 ms to about 5 minutes per layer.
std::vector<double> LayerBuckets() { return ExponentialBuckets(0.01, 2, 15); }

}  // namespace

DaemonMetrics::DaemonMetrics(Registry& registry, std::string snapshotter)
    : snapshotter_(std::move(snapshotter)),
      pulls_(registry.AddCounter("berth_pulls_total",
                                 "Image pulls (CRI PullImage and berth pull) by outcome: OK or the "
                                 "gRPC code name of the error.",
                                 {"code", "snapshotter"})),
      pull_duration_(registry.AddHistogram("berth_pull_duration_seconds",
                                           "Wall time of image pulls, fetch and unpack, whatever "
                                           "their outcome.",
                                           {"snapshotter"}, PullBuckets())),
      pulls_in_flight_(
          registry.AddGauge("berth_pulls_in_flight", "Image pulls running now.").WithLabels({})),
      fetched_bytes_(registry.AddCounter(
          "berth_registry_fetched_bytes_total",
          "Bytes received from registries and mirrors, by endpoint host and what they were "
          "(manifest, config, layer).",
          {"host", "kind"})),
      registry_requests_(registry.AddCounter(
          "berth_registry_requests_total",
          "HTTP exchanges with registries and mirrors by endpoint host and final status (error "
          "when the transport failed: refused, TLS, timeout).",
          {"host", "status"})),
      retries_(registry.AddCounter("berth_registry_retries_total",
                                   "Requests asked again of the same endpoint, by reason "
                                   "(retry_after, status, interrupted, timeout).",
                                   {"host", "reason"})),
      fallbacks_(registry.AddCounter("berth_registry_fallbacks_total",
                                     "Requests that failed on an endpoint (a mirror) and moved on "
                                     "to the next one, by the host that failed.",
                                     {"host"})),
      dead_endpoints_(registry.AddCounter(
          "berth_registry_dead_endpoints_total",
          "Times an endpoint was given up on and set to be tried last for a while.", {"host"})),
      watchdog_trips_(registry.AddCounter(
          "berth_registry_watchdog_trips_total",
          "Registry exchanges given up by a watchdog: stall (image_pull_progress_timeout) or "
          "too_slow (min_download_speed).",
          {"watchdog"})),
      blob_bytes_(registry.AddCounter(
          "berth_blob_fetched_bytes_total",
          "Bytes of blobs (layers and configs) received, by source: peer (another berth node) "
          "or registry (the registry or a mirror).",
          {"source"})),
      peer_blob_bytes_(registry.AddCounter("berth_peer_fetched_bytes_total",
                                           "Bytes of blobs received from each peer.", {"peer"})),
      peers_given_up_(registry.AddCounter(
          "berth_peer_given_up_total",
          "Times a peer was given up on for a blob, by peer and reason (not_found, unavailable, "
          "bad_bytes, error); the blob was then asked of the next home peer or the registry.",
          {"peer", "reason"})),
      layer_unpack_duration_(
          registry
              .AddHistogram("berth_layer_unpack_duration_seconds",
                            "Time from a layer's start to its bytes written and diffID verified "
                            "(download and unpack overlap).",
                            {}, LayerBuckets())
              .WithLabels({})),
      layer_unpacked_bytes_(registry
                                .AddCounter("berth_layer_unpacked_bytes_total",
                                            "Uncompressed bytes of the layers unpacked.")
                                .WithLabels({})),
      admission_refusals_(registry
                              .AddCounter("berth_disk_admission_refusals_total",
                                          "Pulls refused because the disk could not hold the "
                                          "image and keep pull.min_free_space.")
                              .WithLabels({})),
      gc_runs_(
          registry.AddCounter("berth_gc_runs_total", "Garbage collections run.").WithLabels({})),
      gc_removed_(registry.AddCounter(
          "berth_gc_removed_objects_total",
          "Objects garbage collection removed, by kind (blob, snapshot, ingest, directory).",
          {"kind"})),
      gc_freed_bytes_(registry.AddCounter(
          "berth_gc_freed_bytes_total", "Disk bytes garbage collection freed, by kind.", {"kind"})),
      gc_expired_leases_(registry
                             .AddCounter("berth_gc_expired_leases_total",
                                         "Leases of failed pulls garbage collection expired.")
                             .WithLabels({})),
      peer_requests_(registry.AddCounter(
          "berth_peer_requests_total",
          "Requests answered by the peer endpoint (peers.listen), by method (GET, HEAD, other), "
          "what they asked for (manifest, blob, other) and HTTP status.",
          {"method", "kind", "status"})),
      peer_served_bytes_(registry.AddCounter(
          "berth_peer_served_bytes_total",
          "Content bytes the peer endpoint sent to other nodes, by kind (manifest, blob).",
          {"kind"})),
      peer_uploads_refused_(registry
                                .AddCounter("berth_peer_uploads_refused_total",
                                            "Requests for content the peer endpoint refused (429) "
                                            "because peers.max_concurrent_uploads were running.")
                                .WithLabels({})) {
  // Series known in advance start at 0, so rates and absent-series alerts work from the start.
  pulls_.WithLabels({"OK", snapshotter_});
  pull_duration_.WithLabels({snapshotter_});
  for (std::string_view kind : {"blob", "snapshot", "ingest", "directory"}) {
    gc_removed_.WithLabels({kind});
    gc_freed_bytes_.WithLabels({kind});
  }
  for (peers::RequestKind kind : {peers::RequestKind::kManifest, peers::RequestKind::kBlob}) {
    peer_served_bytes_.WithLabels({peers::RequestKindName(kind)});
  }
}

void DaemonMetrics::RequestDone(std::string_view host, registry::FetchKind kind, int status,
                                uint64_t bytes) {
  const std::string status_label = status == 0 ? "error" : std::to_string(status);
  registry_requests_.WithLabels({host, status_label}).Increment();
  fetched_bytes_.WithLabels({host, registry::FetchKindName(kind)})
      .Increment(static_cast<double>(bytes));
}

void DaemonMetrics::Retried(std::string_view host, registry::RetryReason reason) {
  retries_.WithLabels({host, registry::RetryReasonName(reason)}).Increment();
}

void DaemonMetrics::FellBack(std::string_view host) { fallbacks_.WithLabels({host}).Increment(); }

void DaemonMetrics::EndpointDead(std::string_view host) {
  dead_endpoints_.WithLabels({host}).Increment();
}

void DaemonMetrics::WatchdogTripped(registry::Watchdog watchdog) {
  watchdog_trips_.WithLabels({registry::WatchdogName(watchdog)}).Increment();
}

void DaemonMetrics::BlobBytes(registry::BlobSource source, std::string_view host, uint64_t bytes) {
  blob_bytes_.WithLabels({registry::BlobSourceName(source)}).Increment(static_cast<double>(bytes));
  if (source == registry::BlobSource::kPeer) {
    peer_blob_bytes_.WithLabels({host}).Increment(static_cast<double>(bytes));
  }
}

void DaemonMetrics::PeerGivenUp(std::string_view peer, registry::PeerFailure reason) {
  peers_given_up_.WithLabels({peer, registry::PeerFailureName(reason)}).Increment();
}

void DaemonMetrics::PullStarted() { pulls_in_flight_.Add(1); }

void DaemonMetrics::PullDone(std::string_view code, std::chrono::steady_clock::duration elapsed) {
  pulls_in_flight_.Add(-1);
  pulls_.WithLabels({code, snapshotter_}).Increment();
  pull_duration_.WithLabels({snapshotter_}).Observe(Seconds(elapsed));
}

void DaemonMetrics::LayerUnpacked(uint64_t bytes, std::chrono::steady_clock::duration elapsed) {
  layer_unpack_duration_.Observe(Seconds(elapsed));
  layer_unpacked_bytes_.Increment(static_cast<double>(bytes));
}

void DaemonMetrics::AdmissionRefused() { admission_refusals_.Increment(); }

void DaemonMetrics::Collected(const gc::CollectReport& report) {
  gc_runs_.Increment();
  const std::pair<std::string_view, const gc::Freed*> kinds[] = {
      {"blob", &report.blobs},
      {"snapshot", &report.snapshots},
      {"ingest", &report.ingests},
      {"directory", &report.orphan_directories}};
  for (const auto& [kind, freed] : kinds) {
    gc_removed_.WithLabels({kind}).Increment(static_cast<double>(freed->count));
    gc_freed_bytes_.WithLabels({kind}).Increment(static_cast<double>(freed->bytes));
  }
  gc_expired_leases_.Increment(static_cast<double>(report.expired_leases));
}

void DaemonMetrics::RequestDone(std::string_view method, peers::RequestKind kind, int status,
                                uint64_t body_bytes) {
  const std::string_view kind_name = peers::RequestKindName(kind);
  peer_requests_.WithLabels({method, kind_name, std::to_string(status)}).Increment();
  if (body_bytes > 0) {
    peer_served_bytes_.WithLabels({kind_name}).Increment(static_cast<double>(body_bytes));
  }
}

void DaemonMetrics::UploadRefused() { peer_uploads_refused_.Increment(); }

namespace {

// The collector behind AddStateMetrics.
class StateCollector {
 public:
  StateCollector(Registry& registry, StateSources sources)
      : sources_(std::move(sources)),
        images_(registry.AddGauge("berth_images", "Images (distinct image IDs) in the store.")
                    .WithLabels({})),
        leases_(registry.AddGauge("berth_leases",
                                  "Leases by state: held (a pull or stage running) or "
                                  "expiring (a failed pull's, kept for its resume window).",
                                  {"state"})),
        content_bytes_(registry
                           .AddGauge("berth_content_bytes",
                                     "Disk bytes allocated under the content store (blobs and "
                                     "ingests), measured at most every 30 s.")
                           .WithLabels({})),
        content_inodes_(
            registry.AddGauge("berth_content_inodes", "Inodes used under the content store.")
                .WithLabels({})),
        snapshot_bytes_(registry
                            .AddGauge("berth_snapshot_bytes",
                                      "Disk bytes allocated under the snapshotter's root, "
                                      "measured at most every 30 s.")
                            .WithLabels({})),
        snapshot_inodes_(
            registry.AddGauge("berth_snapshot_inodes", "Inodes used under the snapshotter's root.")
                .WithLabels({})) {
    leases_.WithLabels({"held"});
    leases_.WithLabels({"expiring"});
  }

  void Collect() {
    if (sources_.images != nullptr) {
      if (Result<std::vector<service::Image>> listed = sources_.images->List(); listed) {
        images_.Set(static_cast<double>(listed->size()));
      } else {
        log::Debug("metrics.images", {{"error", listed.error().ToString()}});
      }
    }
    if (sources_.db != nullptr) {
      if (Result<std::vector<metadata::LeaseRecord>> leases = sources_.db->ListLeases(); leases) {
        double held = 0;
        for (const metadata::LeaseRecord& lease : *leases) held += lease.expires ? 0 : 1;
        leases_.WithLabels({"held"}).Set(held);
        leases_.WithLabels({"expiring"}).Set(static_cast<double>(leases->size()) - held);
      } else {
        log::Debug("metrics.leases", {{"error", leases.error().ToString()}});
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (measured_ && now - *measured_ < sources_.disk_usage_max_age) return;
    measured_ = now;
    const snapshot::Usage content = snapshot::DiskUsageBestEffort({sources_.content_root});
    const snapshot::Usage snapshots = snapshot::DiskUsageBestEffort({sources_.snapshot_root});
    content_bytes_.Set(static_cast<double>(content.size));
    content_inodes_.Set(static_cast<double>(content.inodes));
    snapshot_bytes_.Set(static_cast<double>(snapshots.size));
    snapshot_inodes_.Set(static_cast<double>(snapshots.inodes));
  }

 private:
  const StateSources sources_;
  Gauge& images_;
  GaugeFamily& leases_;
  Gauge& content_bytes_;
  Gauge& content_inodes_;
  Gauge& snapshot_bytes_;
  Gauge& snapshot_inodes_;
  std::optional<std::chrono::steady_clock::time_point> measured_;  // Render runs one at a time
};

}  // namespace

void AddStateMetrics(Registry& registry, StateSources sources) {
  auto collector = std::make_shared<StateCollector>(registry, std::move(sources));
  registry.AddCollector([collector] { collector->Collect(); });
}

}  // namespace berth::metrics
