// File: berth/archive/tar_reader.h
//
// TarReader is a streaming (push-model) tar parser: the caller pushes the bytes of an
// uncompressed tar in chunks of any size with Write() (it is a ChunkSink, so a Decompressor can
// feed it directly), and the reader calls a TarVisitor for every member:
//
//   OnEntry(entry)            once per member, after all its extended headers were merged
//   OnData(offset, bytes)...  regular files only: the content, in order, at logical offsets
//   OnEntryEnd()              after the last byte of the member's content
//
// File content is passed as views into the caller's chunk whenever possible (no copy); only
// 512-byte headers that straddle chunks and extended-header payloads are buffered.
//
// Formats understood:
//   - ustar (POSIX.1-1988) with the prefix field, old v7 headers, GNU headers (base-256 numbers)
//   - pax extended headers ('x'): path, linkpath, size, mtime/atime (with fractions), uid, gid,
//     SCHILY.xattr.*; uname/gname/charset/comment are ignored; global headers ('g') are ignored
//     (as containerd does)
//   - GNU long names/links ('L'/'K')
//   - sparse files: GNU.sparse pax formats 0.0, 0.1 and 1.0, and old GNU 'S' headers. Sparse
//     content is delivered as data segments at their logical offsets; holes are never materialized
//     by the reader. TarEntry::size is the logical size.
//
// Validation: header checksums (unsigned or signed sum, as historic tars vary), numeric fields
// (octal or base-256; negative sizes/ids and non-octal garbage refused), pax record syntax, sparse
// maps (sorted, non-overlapping, inside the file, adding up to the stored data), and TarLimits.
// Header-only types (links, directories, devices, fifos) carry no data even if `size` says so:
// the next header follows at once, as Go's archive/tar reads them.
//
// Errors: kInvalidArgument for malformed or absurd headers (including a size above
// TarLimits::max_entry_bytes), kResourceExhausted for too many entries, kUnimplemented for an
// entry type berth cannot apply, kDataLoss from Finish() when the archive ends before its
// end-of-archive marker (inside a member, or without the two zero blocks). Any visitor error is
// returned unchanged. Errors are sticky.
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/archive/decompressor.h"
#include "berth/base/result.h"

namespace berth::archive {

enum class TarEntryType {
  kRegular,
  kDirectory,
  kSymlink,
  kHardlink,
  kCharDevice,
  kBlockDevice,
  kFifo,
};

struct TarTime {
  int64_t seconds = 0;
  uint32_t nanoseconds = 0;
  friend bool operator==(const TarTime&, const TarTime&) = default;
};

struct TarEntry {
  // The member name as archived, after pax/GNU long-name overrides; not cleaned or validated as
  // a path (that is the applier's job). Directories may keep their trailing '/'.
  std::string path;
  // Symlink target (any text) or hardlink target (the name of an earlier member).
  std::string link_target;
  TarEntryType type = TarEntryType::kRegular;
  // Permission bits including setuid/setgid/sticky (07777).
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  TarTime mtime;
  // Set when a pax "atime" record was present; `atime` is zero otherwise.
  bool has_atime = false;
  TarTime atime;
  // Logical size of a regular file (for sparse files, the size including holes).
  uint64_t size = 0;
  // True when content arrives as segments with holes between them; the consumer must extend the
  // file to `size` at the end.
  bool sparse = false;
  uint32_t device_major = 0;
  uint32_t device_minor = 0;
  // Extended attributes from SCHILY.xattr.<name> records, in archive order.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarVisitor {
 public:
  virtual ~TarVisitor() = default;
  // `entry` is valid until OnEntryEnd() returns.
  virtual Result<void> OnEntry(const TarEntry& entry) = 0;
  // Content of the current regular file: `data` belongs at byte `offset` of the file. Offsets
  // increase; for non-sparse files they are contiguous from 0.
  virtual Result<void> OnData(uint64_t offset, std::string_view data) = 0;
  virtual Result<void> OnEntryEnd() = 0;
};

struct TarLimits {
  // Largest logical size of one member (sparse members count their declared size).
  uint64_t max_entry_bytes = uint64_t{64} << 30;
  // Longest member name or link target, in bytes.
  size_t max_path_bytes = 4096;
  // Largest pax extended header or GNU long name payload, and largest GNU 1.0 sparse map.
  size_t max_extended_header_bytes = 1 << 20;
  // Most members (extended headers not counted). 0 means no limit.
  uint64_t max_entries = 0;
  // Most data segments in one sparse file.
  size_t max_sparse_segments = 1 << 16;
};

class TarReader final : public ChunkSink {
 public:
  // `visitor` must outlive the reader.
  explicit TarReader(TarVisitor& visitor, TarLimits limits = {});
  ~TarReader() override;

  // Parses `data`, calling the visitor as members complete.
  Result<void> Write(std::string_view data) override;
  // Declares the end of the stream. kDataLoss unless the end-of-archive marker was seen.
  Result<void> Finish();

  // Members reported through OnEntry() so far.
  uint64_t entries() const { return entries_; }
  // Bytes consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  enum class State {
    kHeader,     // Collecting a 512-byte header block.
    kExtended,   // Collecting a pax or GNU long-name payload.
    kSparseExt,  // Collecting an old-GNU sparse extension block.
    kSparseMap,  // Collecting the GNU 1.0 sparse map at the start of the data.
    kData,       // Streaming member content to the visitor.
    kSkip,       // Skipping bytes (padding, ignored members).
    kEnd,        // After the end-of-archive marker: bytes are ignored.
  };
  struct Segment {
    uint64_t offset;
    uint64_t length;
  };

  // A 512-byte header block with its ustar fields by name (defined in tar_reader.cc).
  class Header;

  // What the extended headers before a member ('x' pax records, 'L'/'K' GNU long names) say
  // about it; each set field overrides the member's own header. Cleared once the member starts.
  struct Overrides {
    std::optional<std::string> path;
    std::optional<std::string> link_target;
    std::optional<uint64_t> size;
    std::optional<TarTime> mtime;
    std::optional<TarTime> atime;
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    std::vector<std::pair<std::string, std::string>> xattrs;
    // GNU.sparse.* records: the format version (-1 when absent), the real name and size of a
    // sparse member, and whether a 0.0/0.1 map was given (its segments are in segments_).
    int sparse_major = -1;
    int sparse_minor = -1;
    std::optional<std::string> sparse_name;
    std::optional<uint64_t> sparse_realsize;
    bool sparse_map = false;
  };

  // How a member's sparse map arrives, decided from its header and overrides.
  enum class SparseMap {
    kNone,        // Not sparse, or the map is complete (pax 0.0/0.1, old GNU in the header).
    kInData,      // GNU 1.0: a decimal map in whole blocks at the start of the stored data.
    kExtensions,  // Old GNU 'S': more segments in extension blocks after the header.
  };

  Result<void> Step(std::string_view& data);
  Result<void> OnHeaderBlock();
  Result<void> StartExtendedHeader(char typeflag, uint64_t size);
  Result<void> OnExtendedComplete();
  Result<void> ParsePax(std::string_view payload, bool global);
  Result<void> ApplyPaxRecord(std::string_view key, std::string_view value);
  Result<void> ApplySparseRecord(std::string_view key, std::string_view field,
                                 std::string_view value);
  Result<void> StartEntry();
  Result<void> ReadType(const Header& header);
  Result<void> ReadNames(const Header& header);
  Result<void> ReadAttributes(const Header& header);
  Result<SparseMap> ReadSparseLayout(const Header& header);
  Result<void> CheckEntryLimits() const;
  Result<void> EnterContent(uint64_t stored, SparseMap map);
  Result<void> OnSparseExtBlock();
  Result<void> ParseSparseMapBlock();
  Result<void> BeginContent();
  Result<void> FinishEntry();
  Result<void> EmitData(std::string_view data);
  Error Invalid(std::string_view what) const;

  TarVisitor& visitor_;
  TarLimits limits_;
  State state_ = State::kHeader;
  char block_[512];
  size_t block_fill_ = 0;
  uint64_t offset_ = 0;
  uint64_t header_offset_ = 0;
  uint64_t entries_ = 0;
  bool saw_zero_block_ = false;
  uint64_t remaining_ = 0;  // Bytes left in the current state's region.
  uint64_t padding_ = 0;    // Padding to skip after the region.
  char extended_type_ = 0;
  std::string extended_;

  Overrides overrides_;
  // The sparse map of the next or current member.
  std::vector<Segment> segments_;

  // The member being delivered.
  TarEntry entry_;
  bool in_entry_ = false;
  uint64_t data_size_ = 0;  // Stored (physical) content bytes.
  uint64_t logical_ = 0;    // Next logical offset for non-sparse content.
  size_t segment_index_ = 0;
  uint64_t segment_done_ = 0;
  // GNU 1.0 sparse map parsing.
  std::string map_text_;
  std::vector<uint64_t> map_numbers_;
  uint64_t map_bytes_ = 0;

  std::unique_ptr<Error> error_;
};

}  // namespace berth::archive
