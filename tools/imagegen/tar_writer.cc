#include "tools/imagegen/tar_writer.h"

#include <fmt/format.h>

#include <array>
#include <cstring>

namespace berth::imagegen {
namespace {

constexpr size_t kBlockSize = 512;

// Field offsets and widths of the ustar header (POSIX.1-2001, "ustar Interchange Format").
struct Field {
  size_t offset;
  size_t width;
};
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr Field kTypeflag{156, 1};
constexpr Field kLinkname{157, 100};
constexpr Field kMagic{257, 6};
constexpr Field kVersion{263, 2};
constexpr Field kUname{265, 32};
constexpr Field kGname{297, 32};
constexpr Field kDevMajor{329, 8};
constexpr Field kDevMinor{337, 8};

using Block = std::array<char, kBlockSize>;

// The largest value an octal field of `width` bytes holds (width - 1 digits and a NUL).
constexpr uint64_t MaxOctal(size_t width) { return (uint64_t{1} << (3 * (width - 1))) - 1; }

void PutString(Block& block, Field field, std::string_view value) {
  if (value.empty()) return;  // memcpy from an empty view's null data() is undefined.
  std::memcpy(block.data() + field.offset, value.data(), std::min(value.size(), field.width));
}

void PutOctal(Block& block, Field field, uint64_t value) {
  std::string digits = fmt::format("{:0{}o}", value, field.width - 1);
  PutString(block, field, digits);  // The last byte stays NUL.
}

char Typeflag(EntryType type) {
  switch (type) {
    case EntryType::kRegular:
      return '0';
    case EntryType::kHardlink:
      return '1';
    case EntryType::kSymlink:
      return '2';
    case EntryType::kCharDevice:
      return '3';
    case EntryType::kBlockDevice:
      return '4';
    case EntryType::kDirectory:
      return '5';
    case EntryType::kFifo:
      return '6';
  }
  return '0';
}

Block MakeHeader(std::string_view name, char typeflag, uint32_t mode, uint64_t uid, uint64_t gid,
                 uint64_t size, uint64_t mtime, std::string_view linkname, std::string_view uname,
                 std::string_view gname, uint32_t dev_major, uint32_t dev_minor) {
  Block block{};
  PutString(block, kName, name);
  PutOctal(block, kMode, mode & 07777);
  PutOctal(block, kUid, uid);
  PutOctal(block, kGid, gid);
  PutOctal(block, kSize, size);
  PutOctal(block, kMtime, mtime);
  block[kTypeflag.offset] = typeflag;
  PutString(block, kLinkname, linkname);
  PutString(block, kMagic, std::string_view("ustar\0", 6));
  PutString(block, kVersion, "00");
  PutString(block, kUname, uname);
  PutString(block, kGname, gname);
  PutOctal(block, kDevMajor, dev_major);
  PutOctal(block, kDevMinor, dev_minor);
  // The checksum is computed with its own field read as spaces, then stored as six octal
  // digits, a NUL and a space.
  std::memset(block.data() + kChecksum.offset, ' ', kChecksum.width);
  unsigned sum = 0;
  for (char c : block) sum += static_cast<unsigned char>(c);
  std::string checksum = fmt::format("{:06o}", sum);
  std::memcpy(block.data() + kChecksum.offset, checksum.data(), 6);
  block[kChecksum.offset + 6] = '\0';
  return block;
}

std::string FormatMtime(int64_t seconds, uint32_t nanoseconds) {
  if (nanoseconds == 0) return fmt::format("{}", seconds);
  // A negative time with a fraction is "-(|s| - 1).(1e9 - ns)" in the pax form, which is the
  // plain decimal value of seconds + ns/1e9.
  std::string fraction;
  int64_t whole = seconds;
  uint32_t frac = nanoseconds;
  bool negative = false;
  if (seconds < 0) {
    negative = true;
    whole = -(seconds + 1);
    frac = 1'000'000'000u - nanoseconds;
  }
  fraction = fmt::format("{:09d}", frac);
  while (!fraction.empty() && fraction.back() == '0') fraction.pop_back();
  return fmt::format("{}{}.{}", negative ? "-" : "", whole, fraction);
}

// "dir/PaxHeaders.0/base", truncated to fit the name field. The pax header's own name is never
// used by readers that understand pax; this spelling follows Go's archive/tar.
std::string PaxHeaderName(std::string_view path) {
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string_view::npos ? "" : std::string(path.substr(0, slash + 1));
  std::string base(slash == std::string_view::npos ? path : path.substr(slash + 1));
  std::string name = dir + "PaxHeaders.0/" + base;
  if (name.size() > kName.width) name.resize(kName.width);
  return name;
}

// "dir/GNUSparseFile.0/base" ("./GNUSparseFile.0/base" for a top-level file), truncated to fit
// the name field: GNU tar's "%d/GNUSparseFile.%p/%f" with a fixed %p, so output stays a pure
// function of the entry. Readers of the format take the real name from GNU.sparse.name.
std::string SparseHeaderName(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view dir = slash == std::string_view::npos ? "" : path.substr(0, slash);
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  std::string name = fmt::format("{}/GNUSparseFile.0/{}", dir.empty() ? "." : dir, base);
  if (name.size() > kName.width) name.resize(kName.width);
  return name;
}

// The bytes of data a sparse entry stores (the sum of its segment lengths), once its map is
// checked: sorted, not overlapping and inside the logical size.
Result<uint64_t> SparseDataBytes(const Entry& entry) {
  uint64_t end = 0;
  uint64_t total = 0;
  for (const SparseSegment& segment : *entry.sparse_map) {
    if (segment.offset < end || segment.length > entry.size ||
        segment.offset > entry.size - segment.length) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("tar entry {:?}: sparse segment {}+{} is unsorted, overlapping or "
                              "outside the file's {} bytes",
                              entry.path, segment.offset, segment.length, entry.size));
    }
    end = segment.offset + segment.length;
    total += segment.length;
  }
  return total;
}

// The GNU 1.0 sparse map that opens the stored data: "count\n" then "offset\nlength\n" per
// segment, NUL-padded to whole blocks.
std::string SparseMapBlocks(const std::vector<SparseSegment>& segments) {
  std::string map = fmt::format("{}\n", segments.size());
  for (const SparseSegment& segment : segments) {
    map += fmt::format("{}\n{}\n", segment.offset, segment.length);
  }
  map.resize(map.size() + (kBlockSize - map.size() % kBlockSize) % kBlockSize, '\0');
  return map;
}

}  // namespace

std::string PaxRecord(std::string_view key, std::string_view value) {
  // The length prefix counts itself, so find the fixed point of "digits + rest".
  size_t rest = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t length = rest + fmt::formatted_size("{}", rest);
  if (fmt::formatted_size("{}", length) + rest != length)
    length = rest + fmt::formatted_size("{}", length);
  std::string record = fmt::format("{} ", length);
  record.append(key);
  record.push_back('=');
  record.append(value);
  record.push_back('\n');
  return record;
}

Result<void> TarWriter::CloseEntry() {
  if (remaining_ != 0) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("tar entry {:?} got {} bytes of content, {} still missing",
                            current_path_, written_in_entry_, remaining_));
  }
  size_t padding = (kBlockSize - written_in_entry_ % kBlockSize) % kBlockSize;
  written_in_entry_ = 0;
  if (padding == 0) return Ok();
  static constexpr Block kZeros{};
  return out_.Write(std::string_view(kZeros.data(), padding));
}

Result<void> TarWriter::WriteHeader(const Entry& entry) {
  if (finished_) return Fail(ErrorCode::kFailedPrecondition, "tar writer already finished");
  BERTH_RETURN_IF_ERROR(CloseEntry());
  if (entry.path.empty()) return Fail(ErrorCode::kInvalidArgument, "tar entry with empty path");
  if (entry.mtime_nanoseconds >= 1'000'000'000u) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("tar entry {:?}: mtime nanoseconds {} out of range", entry.path,
                            entry.mtime_nanoseconds));
  }
  if (entry.type != EntryType::kRegular && entry.size != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("tar entry {:?}: only regular files have content", entry.path));
  }
  const bool sparse = entry.sparse_map.has_value();
  if (sparse && entry.type != EntryType::kRegular) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("tar entry {:?}: only regular files can be sparse", entry.path));
  }
  // What follows the header: the content, or for a sparse file its map and then the data.
  uint64_t data_bytes = entry.size;
  std::string sparse_map;
  if (sparse) {
    BERTH_ASSIGN_OR_RETURN(data_bytes, SparseDataBytes(entry));
    sparse_map = SparseMapBlocks(*entry.sparse_map);
  }
  const uint64_t stored_bytes = sparse_map.size() + data_bytes;

  std::string name = sparse ? SparseHeaderName(entry.path) : entry.path;
  if (entry.type == EntryType::kDirectory && name.back() != '/') name.push_back('/');

  std::string pax;
  if (sparse) {
    pax += PaxRecord("GNU.sparse.major", "1");
    pax += PaxRecord("GNU.sparse.minor", "0");
    pax += PaxRecord("GNU.sparse.name", entry.path);
    pax += PaxRecord("GNU.sparse.realsize", fmt::format("{}", entry.size));
  } else if (name.size() > kName.width) {
    pax += PaxRecord("path", name);
  }
  if (entry.link_target.size() > kLinkname.width) pax += PaxRecord("linkpath", entry.link_target);
  uint64_t size_field = stored_bytes;
  if (stored_bytes > MaxOctal(kSize.width)) {
    pax += PaxRecord("size", fmt::format("{}", stored_bytes));
    size_field = 0;
  }
  uint64_t uid_field = entry.uid;
  if (entry.uid > MaxOctal(kUid.width)) {
    pax += PaxRecord("uid", fmt::format("{}", entry.uid));
    uid_field = 0;
  }
  uint64_t gid_field = entry.gid;
  if (entry.gid > MaxOctal(kGid.width)) {
    pax += PaxRecord("gid", fmt::format("{}", entry.gid));
    gid_field = 0;
  }
  // ustar name fields are NUL-terminated only when shorter than the field, so 32 bytes fit.
  if (entry.user_name.size() > kUname.width) pax += PaxRecord("uname", entry.user_name);
  if (entry.group_name.size() > kGname.width) pax += PaxRecord("gname", entry.group_name);
  uint64_t mtime_field = 0;
  if (entry.mtime_nanoseconds != 0 || entry.mtime_seconds < 0 ||
      static_cast<uint64_t>(entry.mtime_seconds) > MaxOctal(kMtime.width)) {
    pax += PaxRecord("mtime", FormatMtime(entry.mtime_seconds, entry.mtime_nanoseconds));
  }
  if (entry.mtime_seconds >= 0) {
    mtime_field = std::min<uint64_t>(entry.mtime_seconds, MaxOctal(kMtime.width));
  }
  for (const auto& [key, value] : entry.xattrs) pax += PaxRecord("SCHILY.xattr." + key, value);

  if (!pax.empty()) {
    Block pax_header = MakeHeader(PaxHeaderName(sparse ? entry.path : name), 'x', 0644, 0, 0,
                                  pax.size(), mtime_field, {}, {}, {}, 0, 0);
    BERTH_RETURN_IF_ERROR(out_.Write(std::string_view(pax_header.data(), pax_header.size())));
    BERTH_RETURN_IF_ERROR(out_.Write(pax));
    written_in_entry_ = pax.size();
    remaining_ = 0;
    BERTH_RETURN_IF_ERROR(CloseEntry());
  }

  bool has_devices = entry.type == EntryType::kCharDevice || entry.type == EntryType::kBlockDevice;
  Block header =
      MakeHeader(name, Typeflag(entry.type), entry.mode, uid_field, gid_field, size_field,
                 mtime_field, entry.link_target, entry.user_name, entry.group_name,
                 has_devices ? entry.device_major : 0, has_devices ? entry.device_minor : 0);
  BERTH_RETURN_IF_ERROR(out_.Write(std::string_view(header.data(), header.size())));
  // The map fills whole blocks, so it does not change the padding after the data.
  if (!sparse_map.empty()) BERTH_RETURN_IF_ERROR(out_.Write(sparse_map));
  current_path_ = entry.path;
  remaining_ = data_bytes;
  written_in_entry_ = 0;
  return Ok();
}

Result<void> TarWriter::WriteData(std::string_view data) {
  if (data.size() > remaining_) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("tar entry {:?}: {} bytes of content exceed its declared size",
                            current_path_, written_in_entry_ + data.size()));
  }
  BERTH_RETURN_IF_ERROR(out_.Write(data));
  remaining_ -= data.size();
  written_in_entry_ += data.size();
  return Ok();
}

Result<void> TarWriter::WriteEntry(const Entry& entry, std::string_view content) {
  if (entry.type != EntryType::kRegular) {
    if (!content.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("tar entry {:?}: only regular files have content", entry.path));
    }
    return WriteHeader(entry);
  }
  if (entry.sparse_map) {
    BERTH_ASSIGN_OR_RETURN(uint64_t data_bytes, SparseDataBytes(entry));
    if (content.size() != data_bytes) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("tar entry {:?}: {} bytes of content for sparse segments of {} bytes",
                              entry.path, content.size(), data_bytes));
    }
    BERTH_RETURN_IF_ERROR(WriteHeader(entry));
    return WriteData(content);
  }
  Entry sized = entry;
  sized.size = content.size();
  BERTH_RETURN_IF_ERROR(WriteHeader(sized));
  return WriteData(content);
}

Result<void> TarWriter::Finish() {
  if (finished_) return Fail(ErrorCode::kFailedPrecondition, "tar writer already finished");
  BERTH_RETURN_IF_ERROR(CloseEntry());
  finished_ = true;
  static constexpr std::array<char, 2 * kBlockSize> kTrailer{};
  BERTH_RETURN_IF_ERROR(out_.Write(std::string_view(kTrailer.data(), kTrailer.size())));
  return out_.Finish();
}

}  // namespace berth::imagegen
