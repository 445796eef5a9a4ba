// File: berth/service/image_service.h
//
// ImageService holds berth's image operations — pull, list, status, remove, filesystem info —
// with the semantics of containerd's CRI image service, and knows nothing of gRPC: berth/cri
// translates CRI requests into these calls, and the CLI can call them directly.
//
// What an image is here: an image ID (config digest) with names recorded in the metadata
// database (repo tags, repo digests, the ID itself), whose blobs are in the content store and
// whose layers are unpacked in the snapshotter under their chain IDs. An image is reported only
// while its top chain ID is a committed snapshot: if a snapshot is removed behind berth's back,
// List and Status stop reporting the image, and pulling it again repairs it.
//
// Pull order (crash safety): blobs are verified into the content store and layers committed as
// snapshots first; the names are written last, in one transaction, so a crash leaves either all
// names or none of them, never a name without its content.
//
// Looking an image up by "ref or ID" (Status, Remove, List's filter) tries, in order: the text
// as a name exactly as recorded; the text as an image ID ("sha256:<hex>" or 64 hex digits); the
// text normalized as a reference ("busybox" → "docker.io/library/busybox:latest"); the text as
// a unique prefix of an image ID's hex (optionally after "sha256:"). Text that is none of these
// matches no image — not an error, as CRI expects.
//
// List's filter first reads a repository named without tag or digest ("debian",
// "registry.local/team/app") as that repository: it lists every image with a repo tag or repo
// digest in it (`crictl images debian`). When no image has one, the filter is looked up as
// above. So a tag lists that tag, a digest that digest, an ID or unique ID prefix that image.
//
// Concurrent identical pulls (same reference, platform and credentials) share one pull: one set
// of downloads and one unpack, and every caller gets its result.
//
// Leases and garbage collection: every pull works under a lease in the metadata database
// (metadata_db.h) that holds each blob and snapshot before the pull checks for or creates it.
// The lease is deleted once the names are written; a pull that fails releases it with an expiry
// of `resume_window`, so a retry resumes from what was fetched; at start (Recover) the leases of
// pulls that died with the process are released the same way. Such a released lease belongs to
// a dead pull, and it is deleted before its expiry once nothing is left to resume: when a pull
// completes, for the dead leases of the same reference (a pull lease's description is "pull "
// and the normalized reference) and those holding only pieces of the image pulled; when an image
// is removed, for the dead leases holding only its pieces. So a removal's collection frees every
// byte no image needs, while a pull that never completed still resumes within the window. Garbage
// collection (gc/) runs after Remove, at start and on demand, and may run while pulls do: the lease
// protects them.
//
// Thread safety: every operation may run concurrently with every other.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/base/result.h"
#include "berth/base/single_flight.h"
#include "berth/content/store.h"
#include "berth/gc/collector.h"
#include "berth/image/platform.h"
#include "berth/metadata/metadata_db.h"
#include "berth/pull/puller.h"
#include "berth/registry/auth.h"
#include "berth/service/disk_admission.h"
#include "berth/service/image_index.h"
#include "berth/service/image_user.h"
#include "berth/service/observer.h"
#include "berth/service/pull_progress.h"
#include "berth/snapshot/cleaner.h"
#include "berth/snapshot/snapshotter.h"
#include "berth/unpack/unpacker.h"

namespace berth::service {

// Makes the layer handler that unpacks one pull's layers into the snapshotter, each layer
// committed where `destination` says: berth/unpack's Unpacker (the composition root builds it; the
// service only needs the pull::LayerHandler seam). The handler must hold every snapshot it
// checks for or creates in `lease` first, and report each layer's events to `on_layer` (the
// pull's progress board entry). `destination` (unpack::UnpackDestination) is the default, chain
// IDs from the first layer up, for Pull, and the caller's prefix and base for Stage.
using UnpackerFactory = std::function<std::unique_ptr<pull::LayerHandler>(
    pull::PullLease& lease, LayerUnpackFn on_layer, const unpack::UnpackDestination& destination)>;

struct ImageServiceOptions {
  // The snapshotter's name, recorded with each image ("overlayfs", "native").
  std::string snapshotter_name = "overlayfs";
  // The snapshotter's root directory, measured by FsInfo.
  std::filesystem::path snapshot_root;
  // config.pull.pinned_images: references (normalized before matching), globs (fnmatch, '*',
  // '?', '[…]', matched against repo tags and repo digests as recorded) or image IDs
  // ("sha256:<hex>").
  std::vector<std::string> pinned_images;
  // Required: every pulled image must end up unpacked.
  UnpackerFactory unpacker;
  // The platform pulled when a request names none.
  image::Platform platform = image::HostPlatform();
  // How long what a failed or interrupted pull fetched is kept for a retry (config
  // pull.resume_window); 0 frees it at the next collection.
  std::chrono::seconds resume_window{3600};
  // Delete a layer's blob once the layer is unpacked (config pull.discard_unpacked_layers).
  bool discard_unpacked_layers = false;
  // Free space disk admission keeps on the content store's and the snapshot root's filesystems
  // (config pull.min_free_space; disk_admission.h).
  FreeSpaceReserve min_free_space;
  // Hears pulls, unpacked layers, admission refusals and collections (observer.h); may be null.
  // Must outlive the service.
  ImageServiceObserver* observer = nullptr;
};

// What Check found. Problems are what makes an image not present or the store inconsistent;
// garbage is what a collection frees.
struct CheckReport {
  std::vector<std::string> problems;
  gc::CollectReport garbage;
  int64_t blobs_verified = 0;
  bool repaired = false;

  bool clean() const { return problems.empty() && garbage.removed.empty(); }
};

struct CheckOptions {
  bool repair = false;          // fix what was found (see Check)
  bool verify_digests = false;  // re-hash every blob
};

struct PullRequest {
  std::string image;             // a reference, normalized by Pull
  registry::CriAuthConfig auth;  // CRI AuthConfig; empty → the config file's credentials
  std::optional<image::Platform> platform;
  // Optional: per-blob download progress, called from the pull's threads (the CLI's progress
  // lines). A request that joins an identical pull already running gets none.
  pull::ProgressFn progress;
};

// An image to fetch and unpack without making it berth's (ImageService::Stage).
struct StageRequest {
  std::string image;             // a reference; best with a digest (name@sha256:…)
  registry::CriAuthConfig auth;  // CRI AuthConfig; empty → the config file's credentials
  // Where the layers are committed: a prefix of the caller's, and optionally a base snapshot
  // holding the image's lower layers.
  unpack::UnpackDestination destination;
};

struct PullResult {
  Digest image_id = Digest::Sha256Of("");
  std::string reference;    // the normalized reference pulled
  std::string repo_digest;  // empty for a converted schema1 image
};

// What List and Status report for one image.
struct Image {
  Digest id = Digest::Sha256Of("");
  std::vector<std::string> repo_tags;
  std::vector<std::string> repo_digests;
  int64_t size = 0;
  ImageUser user;
  bool pinned = false;
  std::string chain_id;  // top layer; empty for an image without layers
  std::string snapshotter;
  std::string config_json;  // the image config as stored
};

// The JSON CRI's verbose ImageStatus carries under info["info"]:
// {"chainID": "...", "imageSpec": <config object>, "snapshotter": "..."}.
std::string VerboseInfo(const Image& image);

// Whether Remove may remove a pinned image.
enum class RemovePinned { kRefuse, kAllow };

// One filesystem holding image data, as CRI's ImageFsInfo reports it.
struct FilesystemUsage {
  std::chrono::system_clock::time_point timestamp;
  std::string mountpoint;
  // Bytes allocated (st_blocks × 512) and inodes (hard links counted once) under berth's
  // directories on that filesystem: the snapshot root and the content store.
  uint64_t used_bytes = 0;
  uint64_t inodes_used = 0;
  // This filesystem holds the snapshot root, and so the writable layers (active snapshots):
  // CRI's container_filesystems.
  bool holds_writable_layers = false;
};

class ImageService;

// What one ImageService::Stage made, held from garbage collection until this object is
// destroyed: the lease (described "stage <reference>") keeps the blobs fetched and the snapshots
// committed. Whoever wants a staged snapshot must take it (rename it, berth/containerd) before
// then; what is left is garbage for the next collection. REQUIRES: destroyed before the service.
class StagedImage {
 public:
  StagedImage(ImageService& service, std::string lease_id, Result<void> outcome)
      : service_(service), lease_id_(std::move(lease_id)), outcome_(std::move(outcome)) {}
  StagedImage(const StagedImage&) = delete;
  StagedImage& operator=(const StagedImage&) = delete;
  ~StagedImage();

  // Ok when every layer was unpacked; else the pull's error (layers below the one that failed
  // may still have been committed).
  const Result<void>& outcome() const { return outcome_; }

 private:
  ImageService& service_;
  std::string lease_id_;
  Result<void> outcome_;
};

class ImageService {
 public:
  // Builds the service and its index from the database. Every reference must outlive the
  // service. Records whose config blob is missing or unreadable are skipped (a re-pull repairs
  // them). Errors: kInvalidArgument when options.unpacker is empty; the database's.
  static Result<std::unique_ptr<ImageService>> Create(pull::Puller& puller, content::Store& store,
                                                      snapshot::Snapshotter& snapshotter,
                                                      snapshot::Cleaner& snapshot_cleaner,
                                                      metadata::MetadataDb& db,
                                                      ImageServiceOptions options);

  ImageService(const ImageService&) = delete;
  ImageService& operator=(const ImageService&) = delete;

  // Pulls and unpacks `request.image`, then records its names (image ID, repo tag if the
  // reference has one, repo digest unless the image was converted from schema1) in one
  // transaction. Blocks on the network; honours
  // `cancel`. Errors: those of pull::Puller::Pull (kInvalidArgument for a bad reference,
  // kNotFound, kUnauthenticated, kPermissionDenied, kUnavailable, kDataLoss,
  // kResourceExhausted, kCancelled, kDeadlineExceeded), the unpacker's, and the database's.
  Result<PullResult> Pull(const PullRequest& request, const CancelToken& cancel);

  // Fetches `request.image` and unpacks its layers as Pull does (shared downloads, the node's
  // scheduler, disk admission, the progress board), but into the snapshots
  // `request.destination` names, and records nothing: the image does not become berth's. This is
  // how berthd fetches layers for containerd (berth/containerd/remote_layers.h). Blocks until the
  // pull ends. Errors: kInvalidArgument for a bad reference, and the database's; the pull's own
  // errors are the returned StagedImage's outcome().
  Result<std::unique_ptr<StagedImage>> Stage(const StageRequest& request,
                                             const CancelToken& cancel);

  // Every reported image, ordered by ID; with a non-empty `filter`, only the images it names
  // (see the file comment: every image of a repository, or the one image a name or ID names).
  Result<std::vector<Image>> List(std::string_view filter = {});

  // The image named by `ref_or_id`, or nullopt when there is none (not an error).
  Result<std::optional<Image>> Status(std::string_view ref_or_id);

  // The image `ref_or_id` names (the rules of Status), whether or not it is reported: its top
  // snapshot may be in another snapshotter of the same root (`berth pull --snapshotter`), or
  // gone. nullopt when no image matches. For tools that work on the snapshots themselves
  // (`berth mount`), so that they name images as every other command does.
  std::optional<Image> Find(std::string_view ref_or_id) const;

  // Removes every name of the image `ref_or_id` names, deletes the leases of dead pulls that
  // hold only its pieces (see the file comment), then collects garbage: the snapshots and blobs
  // nothing else uses are freed. Success when no image matches. kFailedPrecondition for a
  // pinned image unless `pinned` is kAllow. Errors: the database's; a failed collection is
  // logged, not returned (the names are gone, and the next collection retries).
  Result<void> Remove(std::string_view ref_or_id, RemovePinned pinned = RemovePinned::kRefuse);

  // Mark and sweep (gc/collector.h); safe while pulls run. Errors: the collector's.
  Result<gc::CollectReport> CollectGarbage(bool dry_run = false);

  // Start-up reconciliation, for the one process that owns the root (after the root lock):
  // releases the leases of pulls that died with an earlier process (kept for resume_window),
  // deletes those of its stages (Stage: no one can take what they staged any more), drops the
  // records of snapshots whose directory is gone (and of everything built on them),
  // so the images on them are no longer reported and the next pull repairs them, then collects
  // garbage. Call before serving.
  Result<gc::CollectReport> Recover();

  // `berth check`: compares the database with the content store and the snapshotter. Problems:
  // an image whose manifest, config or top snapshot is missing (not reported; a pull repairs
  // it), a snapshot whose directory is gone, a blob whose bytes do not match its digest (with
  // verify_digests). Garbage: what a collection would free, incl. unknown directories and
  // ingests. With `repair`: drops stale snapshot records, deletes corrupt blobs, collects.
  Result<CheckReport> Check(const CheckOptions& options);

  // The filesystems holding the snapshot root and the content store, with berth's usage on
  // each (one entry when both are on the same filesystem; the snapshot root's is marked
  // holds_writable_layers). Walks both trees; blocks on disk I/O.
  Result<std::vector<FilesystemUsage>> FsInfo();

  // Where the running pulls (each identical set of requests once) show their progress.
  PullProgressBoard& pull_progress() { return pull_progress_; }

 private:
  ImageService(pull::Puller& puller, content::Store& store, snapshot::Snapshotter& snapshotter,
               snapshot::Cleaner& snapshot_cleaner, metadata::MetadataDb& db,
               ImageServiceOptions options)
      : puller_(puller),
        store_(store),
        snapshotter_(snapshotter),
        snapshot_cleaner_(snapshot_cleaner),
        db_(db),
        options_(std::move(options)),
        admission_(store_, snapshotter_, options_.snapshot_root, options_.min_free_space) {}

  class PullLease;
  // The pull itself; Pull() shares one run of it among identical concurrent requests.
  // Pull without the observer's reports: shares an identical pull already running.
  Result<PullResult> PullShared(const PullRequest& request, const CancelToken& cancel);
  Result<PullResult> PullOnce(const PullRequest& request, const Reference& reference,
                              const CancelToken& cancel);
  Result<PullResult> PullUnderLease(const PullRequest& request, const Reference& reference,
                                    PullLease& lease, uint64_t progress_id,
                                    const CancelToken& cancel);
  // Fetches and unpacks (into `destination`) under `lease`, reporting to the progress board.
  Result<pull::PulledImage> FetchUnderLease(const PullRequest& request, const Reference& reference,
                                            PullLease& lease, uint64_t progress_id,
                                            const unpack::UnpackDestination& destination,
                                            const CancelToken& cancel);
  friend class StagedImage;  // deletes its lease
  void DeleteLease(const std::string& id);
  // The end of a pull: checks the image's top layer is unpacked, then writes its names (ID, tag,
  // repo digest) in one transaction and indexes it.
  Result<PullResult> RecordPulledImage(const Reference& reference, const pull::PulledImage& pulled);
  Result<void> Rebuild();
  // Reads the image's blobs back from the content store into an entry (no names).
  Result<ImageEntry> LoadEntry(const metadata::ImageRecord& record);
  std::optional<ImageEntry> Resolve(std::string_view ref_or_id) const;
  // The images List's `filter` names (see the file comment).
  std::vector<ImageEntry> Match(std::string_view filter) const;
  bool IsReported(const ImageEntry& entry);
  bool IsPinned(const ImageEntry& entry) const;
  Image ToImage(const ImageEntry& entry) const;
  // Deletes the leases of dead pulls (released, with an expiry: their pull is not running any
  // more) that were for `entry`: those whose description is `pull_description` (when not empty:
  // an earlier pull of the reference just pulled) and those holding nothing but `entry`'s blobs
  // and committed snapshots. Held leases (running pulls) are never touched. Errors are logged:
  // a lease left behind only delays freeing until its expiry.
  void DropDeadLeasesOf(const ImageEntry& entry, std::string_view pull_description,
                        std::string_view reason);
  // Adds resources to the lease `id` under gc_mutex_ (shared).
  Result<void> Hold(const std::string& id, std::vector<metadata::LeaseResource> resources);
  // Removes the snapshots `missing` and every snapshot built on them. REQUIRES: gc_mutex_ held.
  Result<void> DropSnapshotsAndChildren(const std::vector<std::string>& missing);
  // `exclusive`: no pull runs (start-up), see gc::CollectOptions.
  Result<gc::CollectReport> CollectLocked(bool dry_run, bool exclusive = false);

  pull::Puller& puller_;
  content::Store& store_;
  snapshot::Snapshotter& snapshotter_;
  snapshot::Cleaner& snapshot_cleaner_;  // the snapshotter's maintenance side (check, gc)
  metadata::MetadataDb& db_;
  const ImageServiceOptions options_;
  // Refuses pulls the disk cannot hold before their layers are fetched (disk_admission.h).
  DiskAdmission admission_;
  ImageIndex index_;
  PullProgressBoard pull_progress_;

  // Serialises name writes (database, then index), so both see them in one order.
  std::mutex names_mutex_;
  // A collection holds it exclusively from reading the roots to the end of the sweep; adding to
  // a lease holds it shared, so what a pull holds is either seen by a collection or held after
  // it ended.
  std::shared_mutex gc_mutex_;

  // Identical pulls in flight (same reference, platform and credentials): the first runs, the
  // others wait for its result instead of fetching and unpacking the same image again.
  SingleFlight<std::string, PullResult> pulls_;
};

}  // namespace berth::service
