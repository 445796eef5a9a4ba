// File: berth/metadata/metadata_db.h
//
// MetadataDb is the source of truth for berth's image records: which names exist and what each
// one points to. It lives in one SQLite file (<root>/metadata.db) that it may share with other
// components (the snapshotters keep their tables there too). It owns the tables `images`,
// `leases` and `lease_resources`; the schema version of each of its components ("images",
// "leases") is a row of the `berth_schema` table (sqlite::Migrate), beside the snapshotters'.
//
// An image record is one name → one image:
//
//   name          "docker.io/library/busybox:latest"        (repo tag)
//                 "docker.io/library/busybox@sha256:…"      (repo digest)
//                 "sha256:<config digest>"                  (the image ID itself)
//   target        what the reference resolved to: media type, digest, size of the index or
//                 manifest (for the repo digest name, the digest in the name)
//   image_id      the config digest; every name of one image shares it
//   chain_id      the top layer's chain ID: the committed snapshot holding the unpacked image
//   snapshotter   which snapshotter holds it ("overlayfs", "native")
//   labels        free-form; berth marks its own records with kManagedLabel=kManagedValue
//
// A pull records up to three names for an image in one transaction (PutImages), so a crash
// leaves either none or all of them. A name written again (a tag moved to a new image) keeps its
// creation time and gets the new target; the labels it had are kept and the new ones laid over
// them, so a record berth did not create is adopted rather than replaced.
//
// Leases (component "leases", tables lease*): a pull works under a lease that names, before the
// pull creates or relies on them, the blobs and snapshots it needs. Garbage collection keeps
// whatever a lease names, so a collection may run while pulls do. A lease is *held* while its pull
// runs (no expiry); when the pull ends without naming an image, or when berth starts and finds
// leases held by a process that died, the lease is *released*: it keeps its blobs and committed
// snapshots until an expiry (so a retried pull resumes instead of starting over) and drops its
// active snapshots, which a new pull cannot reuse.
//
// Thread safety: safe for concurrent use; calls are serialised on one connection. Every call
// blocks on disk I/O.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "berth/digest/digest.h"
#include "berth/sqlite/sqlite.h"

namespace berth::metadata {

// The label that marks a record as created by berth (containerd's is
// "io.cri-containerd.image"="managed").
inline constexpr std::string_view kManagedLabel = "io.berth.image";
inline constexpr std::string_view kManagedValue = "managed";

using Labels = std::map<std::string, std::string>;

// What a name resolves to. Only media type, digest and size are kept.
struct Target {
  std::string media_type;
  Digest digest = Digest::Sha256Of("");
  int64_t size = 0;

  friend bool operator==(const Target&, const Target&) = default;
};

struct ImageRecord {
  std::string name;
  Target target;
  Digest image_id = Digest::Sha256Of("");
  std::string chain_id;
  std::string snapshotter;
  Labels labels;
  // Set by the store: created when the name was first written, updated at its last write.
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point updated;

  friend bool operator==(const ImageRecord&, const ImageRecord&) = default;
};

// What a lease keeps from garbage collection.
enum class LeaseResourceKind {
  kBlob,            // a blob by digest ("sha256:…"), and an ingest expecting that digest
  kSnapshot,        // a committed snapshot by name (a chain ID) and, implicitly, its parents
  kActiveSnapshot,  // an active snapshot by key (an unpack's scratch directory)
};

// "blob", "snapshot", "active".
std::string_view LeaseResourceKindName(LeaseResourceKind kind);

struct LeaseResource {
  LeaseResourceKind kind = LeaseResourceKind::kBlob;
  std::string key;

  friend auto operator<=>(const LeaseResource&, const LeaseResource&) = default;
};

struct LeaseRecord {
  std::string id;
  std::string description;  // what holds it, e.g. "pull docker.io/library/busybox:latest"
  std::chrono::system_clock::time_point created;
  // nullopt while held; the time a released lease stops protecting its resources.
  std::optional<std::chrono::system_clock::time_point> expires;
  std::vector<LeaseResource> resources;  // sorted, no duplicates
};

struct MetadataOptions {
  // The database file; its directory must exist.
  std::filesystem::path path;
  sqlite::Synchronous synchronous = sqlite::Synchronous::kFull;
};

class MetadataDb {
 public:
  // Opens (creating if needed) the database and brings the image tables to the current schema.
  // Errors: those of sqlite::Database::Open; kFailedPrecondition when the image schema is newer
  // than this berth knows.
  static Result<std::unique_ptr<MetadataDb>> Open(const MetadataOptions& options);

  MetadataDb(const MetadataDb&) = delete;
  MetadataDb& operator=(const MetadataDb&) = delete;

  const std::filesystem::path& path() const { return db_->path(); }

  // Creates or updates every record in one transaction: all are written or none. For a name
  // that exists, `created` is kept, target/image_id/chain_id/snapshotter are replaced and the
  // labels merged (new values win). `created`/`updated` in `records` are ignored.
  // kInvalidArgument for an empty name or two records with the same name.
  Result<void> PutImages(std::span<const ImageRecord> records);

  // Deletes the named records in one transaction; names that do not exist are skipped. Returns
  // how many records were deleted.
  Result<int64_t> DeleteImages(std::span<const std::string> names);

  // Every record, ordered by name.
  Result<std::vector<ImageRecord>> ListImages();

  // The record named `name`, or kNotFound.
  Result<ImageRecord> GetImage(std::string_view name);

  // Creates a held lease. kAlreadyExists when `id` is taken.
  Result<void> CreateLease(std::string_view id, std::string_view description);
  // Adds resources to a lease (already present ones are ignored). kNotFound for no such lease.
  Result<void> AddLeaseResources(std::string_view id, std::span<const LeaseResource> resources);
  // Deletes a lease and its resources; a missing lease is not an error.
  Result<void> DeleteLease(std::string_view id);
  // Releases the lease `id` (or, with an empty id, every held lease — at start, when the
  // processes that held them are dead): drops its active snapshots and sets its expiry. Returns
  // how many leases were released.
  Result<int64_t> ReleaseLeases(std::string_view id, std::chrono::system_clock::time_point expires);
  // Deletes released leases whose expiry is at or before `now`; returns how many.
  Result<int64_t> DeleteExpiredLeases(std::chrono::system_clock::time_point now);
  // Every lease with its resources, ordered by id.
  Result<std::vector<LeaseRecord>> ListLeases();

 private:
  explicit MetadataDb(std::unique_ptr<sqlite::Database> db) : db_(std::move(db)) {}

  std::mutex mutex_;
  std::unique_ptr<sqlite::Database> db_;
};

}  // namespace berth::metadata
