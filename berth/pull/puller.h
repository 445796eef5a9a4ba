// File: berth/pull/puller.h
//
// Puller does containerd's PullImage up to a complete, verified set of blobs: it normalizes the
// reference, works out the endpoints and credentials for its registry, resolves the manifest
// (choosing the platform from an index), fetches the config and the layers with bounded
// parallelism into the content store, and returns the resolved image. Unpacking is not its job;
// a LayerObserver hook lets the unpacker see each layer's bytes as they arrive. A Docker schema1
// image is converted into a schema2 one on the way (PulledImage::converted_schema1).
//
// Guarantees:
//   - Every blob is verified (size and digest) before the content store makes it visible.
//   - Blobs already in the store are not fetched again; an interrupted download resumes from
//     its ingest with a Range request.
//   - Two pulls that need the same blob at once fetch it once: the second waits for the first
//     (base/single_flight.h) and then uses the committed blob.
//   - Errors name the reference, the blob and the endpoint, and never carry credentials.
//   - Every layer download holds a permit of the node's DownloadScheduler while it runs (global
//     and per-registry limits, fair between pulls, lower layers first); blobs already stored or
//     being fetched by another pull take none.
//   - A registry request that stalls (config pull.image_pull_progress_timeout) or drips slower
//     than pull.min_download_speed gives up on that endpoint and tries the next (see
//     registry/client.h), resuming the blob from what was received.
//   - With a peer membership (issue 17), a blob not in the store (a layer or the config, never
//     a manifest) is asked first of its peers.home_peers home peers among the members
//     (pull/peer_endpoints.h), in order, then of the registry's endpoints; a peer is sent no
//     credentials, and a peer that fails in any way (404, refused, error, watchdog, bytes that do
//     not verify) is given up on for that blob without failing the pull (registry/client.h).
//   - The other way round (issue 17's pull-through), the Puller is the peer endpoint's
//     ArrivingBlobs (peers/arriving_blob.h): a peer asking this node for a blob it is
//     downloading is sent the bytes as they arrive (pull/arrivals.h) — unless that download is
//     asking this node's peers itself (404: the two would wait for each other); one it lacks
//     is fetched from the registry the peer names, with the registry authorization the peer
//     passed on (for the registry's host only) or else this node's own credentials, never
//     through peers (the peer asking is already one), in one download shared with this node's
//     own pulls of the blob. At most peers.max_concurrent_uploads such fetches run at once,
//     each holding a scheduler permit like a pull's layer. The fetched blob stays in the store
//     until garbage collection finds nothing referencing it.
//   - The config is fetched like a layer (FetchBlob: into the store, shared), then read.
//
// Thread safety: Pull() may be called concurrently from many threads.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/result.h"
#include "berth/base/single_flight.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/image/manifest.h"
#include "berth/image/platform.h"
#include "berth/peers/arriving_blob.h"
#include "berth/peers/membership.h"
#include "berth/pull/arrivals.h"
#include "berth/pull/download_scheduler.h"
#include "berth/pull/pull_lease.h"
#include "berth/reference/reference.h"
#include "berth/registry/auth.h"
#include "berth/registry/client.h"
#include "berth/registry/http.h"

namespace berth::pull {

// Sees one layer's bytes as they are downloaded, so the unpacker can apply the layer while it
// arrives. Called on a download thread; one observer is used by one thread at a time.
class LayerObserver {
 public:
  virtual ~LayerObserver() = default;
  // The blob's bytes, in order, from offset 0. For a resumed download the bytes already on disk
  // come first; for a blob already in the store, all of them are read from it.
  virtual Result<void> Write(std::string_view chunk) = 0;
  // The download starts again from byte 0 (the server ignored a Range request): forget what
  // was written.
  virtual Result<void> Reset() = 0;
  // Every byte has been written and the blob is verified and committed.
  virtual Result<void> Finish() = 0;
};

// What to do with one layer.
struct LayerPlan {
  // The layer's content is already where it is needed (e.g. a committed snapshot): neither
  // download nor observe it.
  bool skip = false;
  std::unique_ptr<LayerObserver> observer;  // may be null
};

// Lets the caller (the unpacker) take part in a pull. Called from the pull's threads.
class LayerHandler {
 public:
  virtual ~LayerHandler() = default;
  // Once the manifest and config are known and verified, before any layer is fetched.
  virtual Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig& config) = 0;
  // For each layer, possibly concurrently for different layers.
  virtual Result<LayerPlan> PlanLayer(size_t index) = 0;
  // After every layer was fetched and observed (`success`), or after the pull failed.
  virtual Result<void> End(bool success) = 0;
};

struct PullOptions {
  image::Platform platform = image::HostPlatform();
  // Credentials sent with the request (CRI AuthConfig). When empty, the config file's
  // `configs.<host>.auth` applies.
  registry::CriAuthConfig auth;
  // Optional: sees layers as they arrive (the unpacker). Must outlive Pull().
  LayerHandler* layer_handler = nullptr;
  // Optional: told about every blob before the pull checks for, fetches or stores it, so
  // garbage collection keeps it. Must outlive Pull().
  PullLease* lease = nullptr;
  // Optional: disk admission. Called once the manifest and the config are known and verified,
  // before the layer handler's Begin and before any layer is fetched (a schema1 image's layers
  // were fetched for its conversion already). An error fails the pull as it is, with nothing
  // more fetched; kResourceExhausted when the disk cannot hold the image.
  std::function<Result<void>(const image::Manifest&, const image::ImageConfig&)> admit;
};

// Progress of one blob; reported from download threads.
struct BlobProgress {
  Digest digest = Digest::Sha256Of("");
  std::string media_type;
  int64_t done = 0;
  int64_t total = 0;
  bool cached = false;    // already in the store, nothing fetched
  bool complete = false;  // verified and committed
};
using ProgressFn = std::function<void(const BlobProgress&)>;

struct PulledImage {
  Reference reference;         // normalized, as asked
  image::Descriptor target;    // what the reference resolved to (index or manifest)
  image::Descriptor manifest;  // the platform's manifest
  image::Manifest parsed_manifest;
  image::ImageConfig config;
  Digest image_id;            // the config's digest
  int64_t content_size = 0;   // manifest + config + layers, as containerd reports
  int64_t bytes_fetched = 0;  // bytes downloaded by this pull
  // The registry served a Docker schema1 manifest, which was converted (as containerd 1.x does,
  // see schema1_converter.h) into a Docker schema2 manifest and config generated here: `target`
  // and `manifest` are the generated manifest and `image_id` the generated config's digest.
  // Those digests mean nothing to the registry, so NO repo digest (name@digest) may be recorded
  // for this image; only its tag.
  bool converted_schema1 = false;
};

class Puller final : public peers::ArrivingBlobs {
 public:
  // `store` and `transport` must outlive the Puller. `config` is copied. `scheduler` (the
  // node's one DownloadScheduler, shared by every Puller of the node) must outlive the Puller;
  // when null, the Puller makes its own from config.pull's limits. `registry_observer` (may be
  // null) hears its registry client's requests (registry/observer.h) and must outlive it.
  // `membership` (may be null: no peers) gives the peers asked for blobs per config.peers, and
  // must outlive the Puller.
  Puller(content::Store& store, registry::HttpTransport& transport, config::Config config,
         DownloadScheduler* scheduler = nullptr,
         registry::RegistryObserver* registry_observer = nullptr,
         const peers::Membership* membership = nullptr);
  // Cancels the fetches started for peers and waits for them.
  ~Puller() override;
  Puller(const Puller&) = delete;
  Puller& operator=(const Puller&) = delete;

  // Pulls `reference`. Blocks on the network; honours `cancel`. Errors: kInvalidArgument (bad
  // reference or platform), kNotFound, kUnauthenticated/kPermissionDenied, kUnavailable,
  // kDataLoss (bytes that do not match their digest), kResourceExhausted (disk full, limits),
  // kUnimplemented (a manifest format berth does not read), kCancelled/kDeadlineExceeded.
  Result<PulledImage> Pull(std::string_view reference, const PullOptions& options,
                           const ProgressFn& progress, const CancelToken& cancel);

  // peers::ArrivingBlobs: the download of `blob` running here, or one started now on a thread of
  // its own (see the header comment).
  Result<std::shared_ptr<peers::ArrivingBlob>> Follow(const peers::MissingBlob& blob) override;

 private:
  struct PullContext;
  struct Target;

  // The steps of Pull(), in order. Their errors carry no "pull <reference>" context: Pull()
  // adds it once.
  Result<PulledImage> PullReference(const Reference& reference, const PullOptions& options,
                                    const ProgressFn& progress, const CancelToken& cancel);
  // The registry's endpoints (mirrors first), the repository, the authorizer and the peers.
  Result<void> OpenSession(PullContext& context);
  // Resolves the reference to its index or manifest and stores it; converts a schema1 one.
  Result<Target> ResolveTarget(PullContext& context);
  Result<Target> ConvertSchema1Target(PullContext& context, registry::FetchedManifest schema1);
  // The manifest for the platform: the target itself, or chosen from the (nested) index.
  Result<registry::FetchedManifest> SelectManifest(PullContext& context, const Target& target);
  // Fetches (or reads) and parses the config, and checks it against the manifest and platform.
  Result<image::ImageConfig> FetchConfig(PullContext& context, const image::Manifest& manifest,
                                         image::ManifestKind target_kind);
  Result<std::string> ReadOrFetchConfig(PullContext& context, const image::Descriptor& descriptor);
  // Fetches every layer of `manifest` (max_concurrent_downloads at a time), letting the
  // options' layer handler (may be null) plan and observe each; the first failure cancels the
  // rest.
  Result<void> FetchLayers(PullContext& context, const image::Manifest& manifest,
                           const image::ImageConfig& config);
  // A blob (a layer, the config) into the store unless it is there, fetched once however many
  // pulls (and peers) want it at once; `order` orders this pull's downloads in the scheduler
  // (lower first: the config and the lowest layers).
  Result<void> FetchBlob(PullContext& context, const image::Descriptor& blob, size_t order,
                         LayerObserver* observer, const CancelToken& cancel);
  // Downloads a blob into the store, resuming its ingest; its Arrival (in arrivals_) lets the
  // peer endpoint read it meanwhile, and ends when the blob is verified and stored.
  Result<int64_t> DownloadBlob(PullContext& context, const image::Descriptor& descriptor,
                               LayerObserver* observer, const CancelToken& cancel);
  Result<int64_t> DownloadBlobInto(PullContext& context, const image::Descriptor& descriptor,
                                   LayerObserver* observer, Arrival& arrival,
                                   const CancelToken& cancel);
  Result<void> ObserveStoredBlob(const image::Descriptor& descriptor, LayerObserver& observer,
                                 const CancelToken& cancel);
  Result<void> StoreSmallBlob(const image::Descriptor& descriptor, std::string_view bytes);
  // The fetch Follow() started for a peer, on its own thread: FetchForPeer() and the log line.
  void RunFetchForPeer(const peers::MissingBlob& blob, const std::shared_ptr<Arrival>& arrival);
  Result<void> FetchForPeer(const peers::MissingBlob& blob, Arrival& arrival);
  // `running`, unless its download is asking this node's peers (kNotFound: see arrivals.h).
  static Result<std::shared_ptr<peers::ArrivingBlob>> FollowRunning(
      const std::shared_ptr<Arrival>& running, const Digest& digest);
  void EndPeerFetch();
  registry::Credentials CredentialsFor(const PullOptions& options, std::string_view host) const;

  content::Store& store_;
  config::Config config_;
  std::unique_ptr<DownloadScheduler> own_scheduler_;  // when none was given
  DownloadScheduler& scheduler_;
  registry::HttpTransport& transport_;
  registry::Client client_;
  const peers::Membership* const membership_;  // null: no peers

  // Blob downloads in flight, by digest, with the bytes each fetched.
  SingleFlight<Digest, int64_t> downloads_;
  // The same downloads as the peer endpoint reads them while they arrive.
  Arrivals arrivals_;

  // The fetches Follow() started for peers: cancelled and waited for by the destructor.
  CancelToken stopping_;
  std::mutex peer_fetches_mutex_;
  std::condition_variable peer_fetches_done_;
  int peer_fetches_ = 0;
};

}  // namespace berth::pull
