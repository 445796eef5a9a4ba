#include "berth/archive/tar_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>

namespace berth::archive {
namespace {

constexpr size_t kBlock = 512;

uint64_t PaddingFor(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

// A NUL-terminated string field of a header.
std::string_view CString(const char* field, size_t width) {
  const char* end = static_cast<const char*>(std::memchr(field, '\0', width));
  return std::string_view(field, end ? static_cast<size_t>(end - field) : width);
}

// Parses a numeric header field: octal text (optionally padded with spaces/NULs) or GNU
// base-256 (high bit of the first byte set; 0xff first byte means negative).
Result<int64_t> ParseNumeric(const char* field, size_t width, std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("tar header field '{}' is {}", name, why));
  };
  auto first = static_cast<unsigned char>(field[0]);
  if (first & 0x80) {
    bool negative = first == 0xff;
    // Two's complement over `width` bytes, with the marker bit removed for positives.
    uint64_t value = 0;
    for (size_t i = 0; i < width; ++i) {
      auto byte = static_cast<unsigned char>(field[i]);
      if (i == 0 && !negative) byte &= 0x7f;
      if (value >> 56 != 0 && !(negative && (value >> 56) == 0xff)) {
        return bad("a base-256 number too large for 64 bits");
      }
      value = (value << 8) | byte;
    }
    auto signed_value = static_cast<int64_t>(value);
    if (!negative && signed_value < 0) return bad("a base-256 number too large for 64 bits");
    if (negative && signed_value >= 0) return bad("a malformed negative base-256 number");
    return signed_value;
  }
  size_t i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
  uint64_t value = 0;
  size_t digits = 0;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i, ++digits) {
    if (value >> 60 != 0) return bad("an octal number too large for 64 bits");
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') {
      return bad(
          fmt::format("not an octal number (byte 0x{:02x})", static_cast<unsigned char>(field[i])));
    }
  }
  if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return bad("an octal number too large");
  }
  return static_cast<int64_t>(value);
}

Result<uint64_t> ParseDecimal(std::string_view text, std::string_view name) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("pax record '{}' has a value that is not a decimal number: \"{}\"",
                            name, text.substr(0, 64)));
  }
  return value;
}

// Parses pax time "[-]seconds[.fraction]".
Result<TarTime> ParsePaxTime(std::string_view text, std::string_view name) {
  bool negative = !text.empty() && text[0] == '-';
  if (negative) text.remove_prefix(1);
  std::string_view whole = text;
  std::string_view fraction;
  if (size_t dot = text.find('.'); dot != std::string_view::npos) {
    whole = text.substr(0, dot);
    fraction = text.substr(dot + 1);
  }
  BERTH_ASSIGN_OR_RETURN(uint64_t seconds, ParseDecimal(whole, name));
  if (seconds > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("pax record '{}' is too large", name));
  }
  uint32_t nanos = 0;
  for (size_t i = 0; i < fraction.size(); ++i) {
    char c = fraction[i];
    if (c < '0' || c > '9') {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("pax record '{}' has a malformed fraction", name));
    }
    if (i < 9) nanos = nanos * 10 + static_cast<uint32_t>(c - '0');
  }
  for (size_t i = std::min<size_t>(fraction.size(), 9); i < 9; ++i) nanos *= 10;
  TarTime time{static_cast<int64_t>(seconds), nanos};
  if (negative) {
    // -1.25 is 1.25 s before the epoch: seconds -2, nanoseconds 0.75e9.
    time.seconds = -time.seconds;
    if (nanos != 0) {
      time.seconds -= 1;
      time.nanoseconds = 1000000000 - nanos;
    }
  }
  return time;
}

bool AllZero(const char* block) {
  for (size_t i = 0; i < kBlock; ++i) {
    if (block[i] != 0) return false;
  }
  return true;
}

}  // namespace

TarReader::TarReader(TarVisitor& visitor, TarLimits limits) : visitor_(visitor), limits_(limits) {}
TarReader::~TarReader() = default;

Error TarReader::Invalid(std::string_view what) const {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("malformed tar: {} (header at byte offset {})", what, header_offset_));
}

Result<void> TarReader::Write(std::string_view data) {
  if (error_) return Fail(*error_);
  while (!data.empty()) {
    if (state_ == State::kEnd) {
      // Trailing blocks after the end marker (record padding) are ignored.
      offset_ += data.size();
      return Ok();
    }
    if (auto result = Step(data); !result) {
      error_ = std::make_unique<Error>(result.error());
      return result;
    }
  }
  return Ok();
}

Result<void> TarReader::Step(std::string_view& data) {
  auto take_block = [&]() {
    size_t n = std::min(data.size(), kBlock - block_fill_);
    std::memcpy(block_ + block_fill_, data.data(), n);
    block_fill_ += n;
    data.remove_prefix(n);
    offset_ += n;
    if (block_fill_ < kBlock) return false;
    block_fill_ = 0;
    return true;
  };
  auto end_region = [&]() {
    if (padding_ > 0) {
      state_ = State::kSkip;
      remaining_ = padding_;
      padding_ = 0;
    } else {
      state_ = State::kHeader;
    }
  };
  switch (state_) {
    case State::kHeader:
      if (take_block()) return OnHeaderBlock();
      return Ok();
    case State::kSparseExt:
      if (take_block()) return OnSparseExtBlock();
      return Ok();
    case State::kSparseMap:
      if (take_block()) return ParseSparseMapBlock();
      return Ok();
    case State::kExtended: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
      extended_.append(data.data(), n);
      data.remove_prefix(n);
      offset_ += n;
      remaining_ -= n;
      if (remaining_ == 0) {
        end_region();
        return OnExtendedComplete();
      }
      return Ok();
    }
    case State::kData: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
      std::string_view chunk = data.substr(0, n);
      data.remove_prefix(n);
      offset_ += n;
      remaining_ -= n;
      BERTH_RETURN_IF_ERROR(EmitData(chunk));
      if (remaining_ == 0) {
        end_region();
        return FinishEntry();
      }
      return Ok();
    }
    case State::kSkip: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
      data.remove_prefix(n);
      offset_ += n;
      remaining_ -= n;
      if (remaining_ == 0) end_region();
      return Ok();
    }
    case State::kEnd:
      offset_ += data.size();
      data = {};
      return Ok();
  }
  return Ok();
}

Result<void> TarReader::OnHeaderBlock() {
  header_offset_ = offset_ - kBlock;
  if (AllZero(block_)) {
    if (saw_zero_block_) {
      state_ = State::kEnd;
    } else {
      saw_zero_block_ = true;
    }
    return Ok();
  }
  if (saw_zero_block_) {
    return Fail(Invalid("a zero block (end-of-archive marker) is followed by a header"));
  }
  // Checksum: the field itself counts as eight spaces. Historic tars summed signed chars.
  BERTH_ASSIGN_OR_RETURN(int64_t stored, ParseNumeric(block_ + 148, 8, "chksum"));
  int64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    bool in_field = i >= 148 && i < 156;
    unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(block_[i]);
    signed_sum += in_field ? ' ' : static_cast<signed char>(block_[i]);
  }
  if (stored != unsigned_sum && stored != signed_sum) {
    return Fail(Invalid(
        fmt::format("header checksum mismatch (stored {}, computed {}); the archive is corrupt",
                    stored, unsigned_sum)));
  }
  BERTH_ASSIGN_OR_RETURN(int64_t size, ParseNumeric(block_ + 124, 12, "size"));
  if (size < 0) return Fail(Invalid("negative size"));
  char typeflag = block_[156];
  switch (typeflag) {
    case 'x':
    case 'g':
    case 'L':
    case 'K':
      if (static_cast<uint64_t>(size) > limits_.max_extended_header_bytes) {
        return Fail(Invalid(fmt::format(
            "extended header of {} bytes exceeds the limit of {} (max_extended_header_bytes)", size,
            limits_.max_extended_header_bytes)));
      }
      extended_type_ = typeflag;
      extended_.clear();
      remaining_ = static_cast<uint64_t>(size);
      padding_ = PaddingFor(remaining_);
      if (remaining_ == 0) {
        state_ = State::kHeader;
        return OnExtendedComplete();
      }
      state_ = State::kExtended;
      return Ok();
    case 'V':  // Volume label: metadata only.
      remaining_ = static_cast<uint64_t>(size) + PaddingFor(static_cast<uint64_t>(size));
      padding_ = 0;
      state_ = remaining_ > 0 ? State::kSkip : State::kHeader;
      return Ok();
    default:
      return StartEntry();
  }
}

Result<void> TarReader::OnExtendedComplete() {
  switch (extended_type_) {
    case 'x':
      return ParsePax(extended_, /*global=*/false);
    case 'g':
      return ParsePax(extended_, /*global=*/true);
    case 'L':
    case 'K': {
      std::string_view name = extended_;
      while (!name.empty() && name.back() == '\0') name.remove_suffix(1);
      if (name.find('\0') != std::string_view::npos) {
        return Fail(Invalid("GNU long name contains a NUL byte"));
      }
      if (extended_type_ == 'L') {
        pending_path_set_ = true;
        pending_path_.assign(name);
      } else {
        pending_link_set_ = true;
        pending_link_.assign(name);
      }
      return Ok();
    }
  }
  return Ok();
}

Result<void> TarReader::ParsePax(std::string_view payload, bool global) {
  while (!payload.empty()) {
    size_t space = payload.find(' ');
    if (space == std::string_view::npos || space == 0 || space > 20) {
      return Fail(Invalid("pax record without a length"));
    }
    uint64_t length = 0;
    auto [ptr, ec] = std::from_chars(payload.data(), payload.data() + space, length);
    if (ec != std::errc() || ptr != payload.data() + space || length <= space + 2 ||
        length > payload.size() || payload[length - 1] != '\n') {
      return Fail(Invalid("pax record with a wrong length"));
    }
    std::string_view record = payload.substr(space + 1, length - space - 2);
    payload.remove_prefix(length);
    size_t equals = record.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return Fail(Invalid("pax record without a key"));
    }
    std::string_view key = record.substr(0, equals);
    std::string_view value = record.substr(equals + 1);
    if (global) continue;  // Global headers are ignored, as containerd and Docker do.

    if (key == "path") {
      pending_path_set_ = true;
      pending_path_.assign(value);
    } else if (key == "linkpath") {
      pending_link_set_ = true;
      pending_link_.assign(value);
    } else if (key == "size") {
      BERTH_ASSIGN_OR_RETURN(pending_size_, ParseDecimal(value, key));
      pending_size_set_ = true;
    } else if (key == "mtime") {
      BERTH_ASSIGN_OR_RETURN(pending_mtime_, ParsePaxTime(value, key));
      pending_mtime_set_ = true;
    } else if (key == "atime") {
      BERTH_ASSIGN_OR_RETURN(pending_atime_, ParsePaxTime(value, key));
      pending_atime_set_ = true;
    } else if (key == "uid" || key == "gid") {
      BERTH_ASSIGN_OR_RETURN(uint64_t id, ParseDecimal(value, key));
      if (id > std::numeric_limits<uint32_t>::max()) {
        return Fail(Invalid(fmt::format("pax {} {} is out of range", key, id)));
      }
      (key == "uid" ? pending_uid_set_ : pending_gid_set_) = true;
      (key == "uid" ? pending_uid_ : pending_gid_) = static_cast<uint32_t>(id);
    } else if (key.starts_with("SCHILY.xattr.")) {
      std::string_view name = key.substr(13);
      if (name.empty()) return Fail(Invalid("pax xattr record without a name"));
      pending_xattrs_.emplace_back(std::string(name), std::string(value));
    } else if (key.starts_with("GNU.sparse.")) {
      std::string_view field = key.substr(11);
      if (field == "major" || field == "minor") {
        BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(value, key));
        (field == "major" ? sparse_major_ : sparse_minor_) =
            static_cast<int>(std::min<uint64_t>(number, 1000));
      } else if (field == "name") {
        sparse_name_set_ = true;
        sparse_name_.assign(value);
      } else if (field == "realsize" || field == "size") {
        BERTH_ASSIGN_OR_RETURN(sparse_realsize_, ParseDecimal(value, key));
        sparse_realsize_set_ = true;
      } else if (field == "map") {
        // Format 0.1: "offset,length,offset,length,...".
        sparse_map_set_ = true;
        segments_.clear();
        std::vector<uint64_t> numbers;
        size_t start = 0;
        while (start <= value.size() && !value.empty()) {
          size_t comma = value.find(',', start);
          std::string_view item =
              value.substr(start, comma == std::string_view::npos ? value.npos : comma - start);
          BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(item, key));
          numbers.push_back(number);
          if (numbers.size() > 2 * limits_.max_sparse_segments) {
            return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
          }
          if (comma == std::string_view::npos) break;
          start = comma + 1;
        }
        if (numbers.size() % 2 != 0) return Fail(Invalid("sparse map has an odd count"));
        for (size_t i = 0; i < numbers.size(); i += 2) {
          segments_.push_back({numbers[i], numbers[i + 1]});
        }
      } else if (field == "offset") {
        // Format 0.0: repeated offset/numbytes pairs.
        BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(value, key));
        if (segments_.size() >= limits_.max_sparse_segments) {
          return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
        }
        sparse_map_set_ = true;
        segments_.push_back({number, 0});
      } else if (field == "numbytes") {
        BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(value, key));
        if (segments_.empty()) return Fail(Invalid("GNU.sparse.numbytes without an offset"));
        segments_.back().length = number;
      }
    }
    // Anything else (uname, gname, charset, comment, ctime, LIBARCHIVE.*) is ignored.
  }
  return Ok();
}

void TarReader::ResetPending() {
  pending_path_set_ = pending_link_set_ = pending_size_set_ = false;
  pending_mtime_set_ = pending_atime_set_ = pending_uid_set_ = pending_gid_set_ = false;
  pending_xattrs_.clear();
  sparse_major_ = sparse_minor_ = -1;
  sparse_realsize_set_ = sparse_name_set_ = sparse_map_set_ = false;
}

Result<void> TarReader::StartEntry() {
  const char* h = block_;
  bool posix = std::memcmp(h + 257, "ustar\0", 6) == 0;
  bool gnu = std::memcmp(h + 257, "ustar  \0", 8) == 0;
  char typeflag = h[156];

  TarEntry& e = entry_;
  e.sparse = false;
  switch (typeflag) {
    case '0':
    case '\0':
    case '7':
      e.type = TarEntryType::kRegular;
      break;
    case '1':
      e.type = TarEntryType::kHardlink;
      break;
    case '2':
      e.type = TarEntryType::kSymlink;
      break;
    case '3':
      e.type = TarEntryType::kCharDevice;
      break;
    case '4':
      e.type = TarEntryType::kBlockDevice;
      break;
    case '5':
      e.type = TarEntryType::kDirectory;
      break;
    case '6':
      e.type = TarEntryType::kFifo;
      break;
    case 'S':
      e.type = TarEntryType::kRegular;
      e.sparse = true;
      break;
    default:
      return Fail(ErrorCode::kUnimplemented,
                  fmt::format("tar entry \"{}\" has type '{}' (0x{:02x}), which berth cannot "
                              "apply (header at byte offset {})",
                              CString(h, 100),
                              std::isprint(static_cast<unsigned char>(typeflag)) ? typeflag : '?',
                              static_cast<unsigned char>(typeflag), header_offset_));
  }

  // Name: pax/GNU long name, else ustar prefix + name.
  if (sparse_name_set_) {
    e.path = sparse_name_;
  } else if (pending_path_set_) {
    e.path = pending_path_;
  } else {
    std::string_view name = CString(h, 100);
    std::string_view prefix = posix ? CString(h + 345, 155) : std::string_view();
    e.path.clear();
    if (!prefix.empty()) {
      e.path.append(prefix);
      e.path.push_back('/');
    }
    e.path.append(name);
  }
  if (pending_link_set_) {
    e.link_target = pending_link_;
  } else {
    e.link_target.assign(CString(h + 157, 100));
  }
  if (e.path.empty()) return Fail(Invalid("entry with an empty name"));
  if (e.path.find('\0') != std::string::npos || e.link_target.find('\0') != std::string::npos) {
    return Fail(Invalid("entry name contains a NUL byte"));
  }
  if (e.path.size() > limits_.max_path_bytes || e.link_target.size() > limits_.max_path_bytes) {
    return Fail(
        Invalid(fmt::format("entry name or link target longer than {} bytes "
                            "(max_path_bytes)",
                            limits_.max_path_bytes)));
  }
  // Old v7 archives mark directories with a trailing slash on a regular entry.
  if (e.type == TarEntryType::kRegular && !e.sparse && e.path.back() == '/') {
    e.type = TarEntryType::kDirectory;
  }

  BERTH_ASSIGN_OR_RETURN(int64_t mode, ParseNumeric(h + 100, 8, "mode"));
  if (mode < 0) return Fail(Invalid("negative mode"));
  e.mode = static_cast<uint32_t>(mode) & 07777;
  auto id = [&](bool set, uint32_t value, size_t at, std::string_view name) -> Result<uint32_t> {
    if (set) return value;
    BERTH_ASSIGN_OR_RETURN(int64_t parsed, ParseNumeric(h + at, 8, name));
    if (parsed < 0 || parsed > std::numeric_limits<uint32_t>::max()) {
      return Fail(Invalid(fmt::format("{} {} is out of range", name, parsed)));
    }
    return static_cast<uint32_t>(parsed);
  };
  BERTH_ASSIGN_OR_RETURN(e.uid, id(pending_uid_set_, pending_uid_, 108, "uid"));
  BERTH_ASSIGN_OR_RETURN(e.gid, id(pending_gid_set_, pending_gid_, 116, "gid"));
  if (pending_mtime_set_) {
    e.mtime = pending_mtime_;
  } else {
    BERTH_ASSIGN_OR_RETURN(int64_t mtime, ParseNumeric(h + 136, 12, "mtime"));
    e.mtime = TarTime{mtime, 0};
  }
  e.has_atime = pending_atime_set_;
  e.atime = pending_atime_;
  e.device_major = e.device_minor = 0;
  if ((posix || gnu) &&
      (e.type == TarEntryType::kCharDevice || e.type == TarEntryType::kBlockDevice)) {
    BERTH_ASSIGN_OR_RETURN(int64_t major, ParseNumeric(h + 329, 8, "devmajor"));
    BERTH_ASSIGN_OR_RETURN(int64_t minor, ParseNumeric(h + 337, 8, "devminor"));
    if (major < 0 || minor < 0 || major > 0xfffff || minor > 0xfffff) {
      return Fail(Invalid("device number out of range"));
    }
    e.device_major = static_cast<uint32_t>(major);
    e.device_minor = static_cast<uint32_t>(minor);
  }
  e.xattrs.swap(pending_xattrs_);
  pending_xattrs_.clear();

  BERTH_ASSIGN_OR_RETURN(int64_t header_size, ParseNumeric(h + 124, 12, "size"));
  uint64_t stored = pending_size_set_ ? pending_size_ : static_cast<uint64_t>(header_size);
  bool header_only = e.type != TarEntryType::kRegular;
  data_size_ = header_only ? 0 : stored;
  e.size = data_size_;

  // Sparse variants.
  bool gnu_1_0 = sparse_major_ == 1 && sparse_minor_ == 0;
  bool gnu_0_x = !gnu_1_0 && sparse_map_set_;
  bool old_gnu_extended = false;
  if (e.type == TarEntryType::kRegular && (gnu_1_0 || gnu_0_x || e.sparse)) {
    if (!e.sparse) {
      if (!sparse_realsize_set_) return Fail(Invalid("sparse file without GNU.sparse.realsize"));
      e.size = sparse_realsize_;
    } else {
      // Old GNU 'S': up to four segments in the header, more in extension blocks.
      BERTH_ASSIGN_OR_RETURN(int64_t realsize, ParseNumeric(h + 483, 12, "realsize"));
      if (realsize < 0) return Fail(Invalid("negative sparse size"));
      e.size = static_cast<uint64_t>(realsize);
      segments_.clear();
      for (size_t i = 0; i < 4; ++i) {
        const char* slot = h + 386 + i * 24;
        if (slot[0] == '\0') break;
        BERTH_ASSIGN_OR_RETURN(int64_t offset, ParseNumeric(slot, 12, "sparse offset"));
        BERTH_ASSIGN_OR_RETURN(int64_t length, ParseNumeric(slot + 12, 12, "sparse numbytes"));
        if (offset < 0 || length < 0) return Fail(Invalid("negative sparse segment"));
        segments_.push_back({static_cast<uint64_t>(offset), static_cast<uint64_t>(length)});
      }
      old_gnu_extended = h[482] != '\0';
    }
    e.sparse = true;
  }
  if (e.size > limits_.max_entry_bytes) {
    return Fail(Invalid(
        fmt::format("entry \"{}\" declares {} bytes, more than the limit of {} (max_entry_bytes)",
                    e.path, e.size, limits_.max_entry_bytes)));
  }
  if (limits_.max_entries != 0 && entries_ >= limits_.max_entries) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("layer has more than {} entries (max_entries); refusing it",
                            limits_.max_entries));
  }
  ResetPending();

  remaining_ = stored;
  padding_ = header_only ? 0 : PaddingFor(stored);
  if (header_only) remaining_ = 0;
  if (e.sparse && gnu_1_0) {
    // The map occupies whole blocks at the start of the stored data.
    map_text_.clear();
    map_numbers_.clear();
    map_bytes_ = 0;
    segments_.clear();
    state_ = State::kSparseMap;
    if (remaining_ < kBlock) return Fail(Invalid("sparse file too short for its map"));
    return Ok();
  }
  if (old_gnu_extended) {
    state_ = State::kSparseExt;
    return Ok();
  }
  return BeginContent();
}

Result<void> TarReader::OnSparseExtBlock() {
  for (size_t i = 0; i < 21; ++i) {
    const char* slot = block_ + i * 24;
    if (slot[0] == '\0') break;
    BERTH_ASSIGN_OR_RETURN(int64_t offset, ParseNumeric(slot, 12, "sparse offset"));
    BERTH_ASSIGN_OR_RETURN(int64_t length, ParseNumeric(slot + 12, 12, "sparse numbytes"));
    if (offset < 0 || length < 0) return Fail(Invalid("negative sparse segment"));
    if (segments_.size() >= limits_.max_sparse_segments) {
      return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
    }
    segments_.push_back({static_cast<uint64_t>(offset), static_cast<uint64_t>(length)});
  }
  if (block_[504] != '\0') return Ok();  // Another extension block follows.
  return BeginContent();
}

Result<void> TarReader::ParseSparseMapBlock() {
  if (remaining_ < kBlock) return Fail(Invalid("sparse map runs past the entry's data"));
  remaining_ -= kBlock;
  map_bytes_ += kBlock;
  if (map_bytes_ > limits_.max_extended_header_bytes) {
    return Fail(Invalid("sparse map larger than max_extended_header_bytes"));
  }
  // Parse complete decimal lines: the count, then offset/length pairs.
  map_text_.append(block_, kBlock);
  size_t pos = 0;
  while (true) {
    size_t newline = map_text_.find('\n', pos);
    if (newline == std::string::npos) break;
    BERTH_ASSIGN_OR_RETURN(
        uint64_t number,
        ParseDecimal(std::string_view(map_text_).substr(pos, newline - pos), "GNU sparse map"));
    map_numbers_.push_back(number);
    pos = newline + 1;
    if (map_numbers_.size() == 1 && number > limits_.max_sparse_segments) {
      return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
    }
    if (map_numbers_.size() == 1 + 2 * map_numbers_[0]) break;
  }
  map_text_.erase(0, pos);
  if (map_numbers_.empty() || map_numbers_.size() < 1 + 2 * map_numbers_[0]) {
    return Ok();  // Need another block.
  }
  segments_.clear();
  for (size_t i = 1; i < map_numbers_.size(); i += 2) {
    segments_.push_back({map_numbers_[i], map_numbers_[i + 1]});
  }
  map_text_.clear();
  map_numbers_.clear();
  return BeginContent();
}

Result<void> TarReader::BeginContent() {
  TarEntry& e = entry_;
  data_size_ = remaining_;
  if (e.sparse) {
    uint64_t end = 0;
    uint64_t total = 0;
    if (segments_.size() > limits_.max_sparse_segments) {
      return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
    }
    for (const Segment& s : segments_) {
      if (s.offset < end || s.length > e.size || s.offset > e.size - s.length) {
        return Fail(
            Invalid(fmt::format("sparse map of \"{}\" is unsorted, overlapping or "
                                "outside the file",
                                e.path)));
      }
      end = s.offset + s.length;
      total += s.length;
    }
    if (total != data_size_) {
      return Fail(Invalid(fmt::format("sparse map of \"{}\" covers {} bytes but {} are stored",
                                      e.path, total, data_size_)));
    }
    segment_index_ = 0;
    segment_done_ = 0;
  }
  logical_ = 0;
  ++entries_;
  in_entry_ = true;
  BERTH_RETURN_IF_ERROR(visitor_.OnEntry(e));
  if (remaining_ == 0) {
    if (padding_ > 0) {
      state_ = State::kSkip;
      remaining_ = padding_;
      padding_ = 0;
    } else {
      state_ = State::kHeader;
    }
    return FinishEntry();
  }
  state_ = State::kData;
  return Ok();
}

Result<void> TarReader::EmitData(std::string_view data) {
  if (!entry_.sparse) {
    uint64_t at = logical_;
    logical_ += data.size();
    return visitor_.OnData(at, data);
  }
  while (!data.empty()) {
    while (segment_index_ < segments_.size() && segment_done_ == segments_[segment_index_].length) {
      ++segment_index_;
      segment_done_ = 0;
    }
    if (segment_index_ >= segments_.size()) return Fail(Invalid("sparse data past its map"));
    const Segment& s = segments_[segment_index_];
    size_t n = static_cast<size_t>(std::min<uint64_t>(s.length - segment_done_, data.size()));
    BERTH_RETURN_IF_ERROR(visitor_.OnData(s.offset + segment_done_, data.substr(0, n)));
    segment_done_ += n;
    data.remove_prefix(n);
  }
  return Ok();
}

Result<void> TarReader::FinishEntry() {
  in_entry_ = false;
  return visitor_.OnEntryEnd();
}

Result<void> TarReader::Finish() {
  if (error_) return Fail(*error_);
  if (state_ == State::kEnd) return Ok();
  // A lone zero block at the very end is accepted, as GNU tar does (with a warning).
  if (state_ == State::kHeader && block_fill_ == 0 && saw_zero_block_) return Ok();
  std::string where = in_entry_ ? fmt::format("inside the content of \"{}\"", entry_.path)
                                : (state_ == State::kHeader && block_fill_ == 0
                                       ? std::string("without the end-of-archive marker")
                                       : std::string("inside a header"));
  Error error(ErrorCode::kDataLoss,
              fmt::format("tar archive is truncated: it ended {} at byte offset {}; the layer "
                          "is incomplete",
                          where, offset_));
  error_ = std::make_unique<Error>(error);
  return Fail(std::move(error));
}

}  // namespace berth::archive
