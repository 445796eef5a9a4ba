// File: berth/content/store.h
//
// Store keeps verified blobs under <root>/blobs/<algorithm>/<hex>. A blob becomes visible only
// when Writer::Commit() has checked its size and digest and renamed it into place, so a reader
// never sees a partial or unverified blob, and a crash leaves at most an ingest behind.
//
// Ingests live in <root>/ingest/<sha256(ref)>/ with files `data` (bytes so far), `ref` and
// `expected` ("<digest> <size>"). An ingest survives restarts: OpenWriter() with the same ref
// re-hashes what is on disk and continues from there (a pull resumes with an HTTP Range request).
// A broken ingest (longer than expected, for another digest, unreadable) is reset rather than
// failing the caller.
//
// Thread safety: Store is safe for concurrent use. One Writer per ref at a time, across threads
// and processes (an flock on the ingest enforces it); a second OpenWriter() for a busy ref is
// kUnavailable. A Writer must be used by one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/durability.h"
#include "berth/base/result.h"
#include "berth/base/unique_fd.h"
#include "berth/digest/digest.h"

namespace berth::content {

struct StoreOptions {
  std::filesystem::path root;  // e.g. /var/lib/berth/content
  // Unless kNone, a blob's bytes and its directory entry are fsync'ed before it becomes visible
  // (kLayer and kFile alike: a blob is one file).
  Durability durability = Durability::kLayer;
};

struct BlobInfo {
  Digest digest;
  int64_t size = 0;
  // Disk space the blob takes: allocated blocks (st_blocks * 512), as du counts them.
  int64_t allocated_bytes = 0;
};

struct IngestInfo {
  std::string id;      // the directory name under <root>/ingest (for RemoveIngest)
  std::string ref;     // empty when the ingest is broken (its `ref` file was never written)
  int64_t offset = 0;  // bytes on disk
  std::optional<Digest> expected;
  int64_t expected_size = -1;  // -1 when unknown
};

class Writer;

class Store {
 public:
  // Creates <root>/blobs/<algorithm> (sha256, sha384, sha512) and <root>/ingest if needed.
  // kInvalidArgument for an empty root.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);

  const std::filesystem::path& root() const { return options_.root; }

  // Size and disk space of a committed blob, or kNotFound.
  Result<BlobInfo> Info(const Digest& digest) const;
  bool Contains(const Digest& digest) const;

  // Reads a whole committed blob (for manifests and configs). kNotFound; kResourceExhausted
  // when it is larger than `max_bytes`.
  Result<std::string> ReadBlob(const Digest& digest, size_t max_bytes) const;

  // Opens a committed blob for reading.
  Result<UniqueFd> OpenBlob(const Digest& digest) const;

  // Feeds a committed blob's bytes to `consume` in order, in chunks of up to 1 MiB, from one
  // open descriptor (a Delete meanwhile does not cut the stream short). kNotFound when absent;
  // an error of `consume` stops the stream and is returned. Blocks on disk I/O.
  Result<void> StreamBlob(const Digest& digest,
                          const std::function<Result<void>(std::string_view)>& consume) const;

  // Writes `bytes` as a blob after checking them against `expected`; returns kDataLoss on a
  // mismatch. Succeeds without writing when the blob already exists.
  Result<void> WriteBlob(const Digest& expected, std::string_view bytes);

  // Removes a committed blob. kNotFound when absent.
  Result<void> Delete(const Digest& digest);

  // Calls `visit` for each committed blob, in no particular order.
  Result<void> Walk(const std::function<void(const BlobInfo&)>& visit) const;

  // Starts or resumes the ingest named `ref` for a blob expected to be `expected`/`size` (size
  // -1 when unknown). kUnavailable when another writer holds `ref`.
  Result<std::unique_ptr<Writer>> OpenWriter(std::string_view ref, const Digest& expected,
                                             int64_t size);

  // In-flight ingests, for status and garbage collection.
  Result<std::vector<IngestInfo>> ListIngests() const;
  // Removes an ingest (kNotFound if none; kUnavailable if a writer holds it).
  Result<void> AbortIngest(std::string_view ref);
  // Removes the ingest directory `id` (IngestInfo::id), broken ones included: kUnavailable if a
  // writer holds it, or — unless `no_writer_starting` (nothing else uses the store, e.g. at
  // start) — if it has no data file yet and is under a minute old (a writer may be creating
  // it). kNotFound if none; kInvalidArgument for an id that is not a directory name.
  Result<void> RemoveIngest(std::string_view id, bool no_writer_starting = false);

 private:
  explicit Store(StoreOptions options) : options_(std::move(options)) {}
  // The path a committed blob lives at (whether or not it exists). The layout is the store's
  // own: callers read blobs through OpenBlob/StreamBlob/ReadBlob and measure them with Info.
  std::filesystem::path BlobPath(const Digest& digest) const;
  std::filesystem::path IngestDir(std::string_view ref) const;
  friend class Writer;

  StoreOptions options_;
};

// Writer appends bytes to one ingest and hashes them as they arrive.
class Writer {
 public:
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Bytes written so far, including those found on disk when the ingest was resumed.
  int64_t offset() const { return offset_; }
  const Digest& expected() const { return expected_; }
  // The digest of the bytes written so far, [0, offset()) (Commit checks it against expected()).
  Digest digest() const { return hasher_.Finish(); }

  // Appends `bytes`. kResourceExhausted on a full disk, kDataLoss when the blob would grow past
  // its expected size.
  Result<void> Write(std::string_view bytes);

  // Discards what was written (a server that ignored a Range request sends everything again).
  Result<void> Truncate();

  // Feeds the bytes already in the ingest (those of a resumed download, [0, offset())) to
  // `consume` in order, in chunks of up to 1 MiB, so a streaming consumer can catch up.
  Result<void> ReadExisting(const std::function<Result<void>(std::string_view)>& consume) const;

  // Opens the ingest's bytes for reading (pread, sendfile): [0, offset()) now, more as they are
  // written. The descriptor stays valid whatever becomes of the ingest (committed, aborted);
  // after a Truncate() its old bytes are gone. For serving a blob while it arrives.
  Result<UniqueFd> OpenReader() const;
  // Checks size and digest, makes the blob durable (per the store's Durability), renames it into
  // place and removes the ingest. On a size or digest mismatch returns kDataLoss (naming both
  // sizes or both digests) and removes the ingest, whose bytes are useless. kFailedPrecondition
  // for a closed Writer. The Writer is closed afterwards, whatever the result.
  Result<BlobInfo> Commit();

 private:
  friend class Store;
  Writer(Store& store, std::string ref, std::filesystem::path dir, UniqueFd data, Digest expected,
         int64_t expected_size);

  Store& store_;
  std::string ref_;
  std::filesystem::path dir_;
  UniqueFd data_;
  Digest expected_;
  int64_t expected_size_;
  int64_t offset_ = 0;
  Hasher hasher_;
  bool closed_ = false;
};

}  // namespace berth::content
