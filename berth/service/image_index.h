// File: berth/service/image_index.h
//
// ImageIndex is the image service's in-memory view of the image records: image ID ↔ names, plus
// the fields ImageStatus reports, so List and Status never touch the database or parse JSON.
// The database (metadata::MetadataDb) stays the source of truth: the index is rebuilt from it at
// start and updated after each committed write.
//
// Vocabulary: a name is a record name, one of
//   - a repo tag    "docker.io/library/busybox:1.36"
//   - a repo digest "docker.io/library/busybox@sha256:…"
//   - the image ID  "sha256:<config digest>" (kept in the database, not listed as a name here)
//
// Thread safety: safe for concurrent use (a reader/writer lock inside). Entries are returned by
// value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "berth/digest/digest.h"

namespace berth::service {

struct ImageEntry {
  Digest id = Digest::Sha256Of("");
  std::vector<std::string> repo_tags;     // sorted
  std::vector<std::string> repo_digests;  // sorted
  // Cached status fields.
  int64_t size = 0;                // manifest + config + layers, as containerd reports
  std::vector<std::string> chain;  // chain ID of each layer prefix; back() is the top
  std::string snapshotter;
  std::string user;           // the config's User
  std::string config_json;    // the config blob as stored
  std::vector<Digest> blobs;  // every blob the image needs (index, manifest, config, layers)

  std::string top_chain_id() const { return chain.empty() ? std::string() : chain.back(); }
};

class ImageIndex {
 public:
  // Adds or replaces the cached fields of `entry.id` and points each of `names` at it. A name
  // that pointed at another image moves: that image loses it but stays, as its ID record does
  // in the database. `entry`'s own name lists are ignored.
  void Put(const ImageEntry& entry, const std::vector<std::string>& names);

  // Removes the image and every name pointing at it. Returns the entry if it existed.
  std::optional<ImageEntry> Remove(const Digest& id);

  // The image named `name` exactly (a repo tag or repo digest).
  std::optional<ImageEntry> FindByName(std::string_view name) const;
  // The image with this ID.
  std::optional<ImageEntry> FindById(const Digest& id) const;
  // The one image whose ID's hex starts with `prefix` (hex, without "sha256:"). Empty when none
  // or more than one match.
  std::optional<ImageEntry> FindByIdPrefix(std::string_view prefix) const;

  // Every image with a repo tag or repo digest in `repository` (a normalized repository name,
  // "docker.io/library/busybox", without tag or digest), ordered by ID. Names in other
  // repositories that merely start with the same text ("…/busybox-extra") do not count.
  std::vector<ImageEntry> FindByRepository(std::string_view repository) const;

  // Every image, ordered by ID.
  std::vector<ImageEntry> List() const;

 private:
  static void AddName(ImageEntry& entry, const std::string& name);
  static void DropName(ImageEntry& entry, const std::string& name);

  mutable std::shared_mutex mutex_;
  std::map<Digest, ImageEntry> images_;
  std::map<std::string, Digest, std::less<>> names_;
};

}  // namespace berth::service
