#include "berth/archive/tar_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

namespace berth::archive {
namespace {

constexpr size_t kBlock = 512;

uint64_t PaddingFor(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

// A field of a header block: its byte offset and width.
struct Field {
  size_t offset;
  size_t width;
};

// The ustar header layout (POSIX.1-1988), with the old GNU fields that share the block.
namespace ustar {
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr size_t kTypeflag = 156;
constexpr Field kLinkname{157, 100};
constexpr Field kMagic{257, 8};  // Magic and version together.
constexpr Field kDevMajor{329, 8};
constexpr Field kDevMinor{337, 8};
constexpr Field kPrefix{345, 155};  // POSIX only; old GNU headers use the space otherwise.
constexpr std::string_view kPosixMagic("ustar\0", 6);  // Any version follows.
constexpr std::string_view kGnuMagic("ustar  \0", 8);
}  // namespace ustar

// Old GNU sparse headers ('S'): a map of (offset, numbytes) slots in the header, continued in
// extension blocks while the "is extended" byte is set.
namespace gnu_sparse {
constexpr Field kSlotOffset{0, 12};  // Within a slot.
constexpr Field kSlotLength{12, 12};
constexpr size_t kSlotBytes = 24;
constexpr size_t kHeaderSlots = 386;  // Four slots in the header.
constexpr size_t kHeaderSlotCount = 4;
constexpr size_t kHeaderIsExtended = 482;
constexpr Field kRealSize{483, 12};
constexpr size_t kExtensionSlotCount = 21;  // From offset 0 of an extension block.
constexpr size_t kExtensionIsExtended = 504;
}  // namespace gnu_sparse

// pax record keys with a prefix.
constexpr std::string_view kPaxXattrPrefix = "SCHILY.xattr.";
constexpr std::string_view kPaxSparsePrefix = "GNU.sparse.";

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

// Reads one (offset, numbytes) slot of an old GNU sparse map; nullopt for an empty slot.
Result<std::optional<std::pair<int64_t, int64_t>>> ReadSparseSlot(const char* slot) {
  if (slot[0] == '\0') return std::nullopt;
  BERTH_ASSIGN_OR_RETURN(int64_t offset,
                         ParseNumeric(slot + gnu_sparse::kSlotOffset.offset,
                                      gnu_sparse::kSlotOffset.width, "sparse offset"));
  BERTH_ASSIGN_OR_RETURN(int64_t length,
                         ParseNumeric(slot + gnu_sparse::kSlotLength.offset,
                                      gnu_sparse::kSlotLength.width, "sparse numbytes"));
  return std::pair{offset, length};
}

}  // namespace

// A view of the 512-byte header block being parsed, read field by field.
class TarReader::Header {
 public:
  explicit Header(const char* block) : block_(block) {}

  std::string_view String(Field field) const { return CString(block_ + field.offset, field.width); }
  Result<int64_t> Number(Field field, std::string_view name) const {
    return ParseNumeric(block_ + field.offset, field.width, name);
  }
  char typeflag() const { return block_[ustar::kTypeflag]; }
  bool posix() const { return Magic().substr(0, ustar::kPosixMagic.size()) == ustar::kPosixMagic; }
  bool gnu() const { return Magic() == ustar::kGnuMagic; }
  const char* at(size_t offset) const { return block_ + offset; }

 private:
  std::string_view Magic() const {
    return std::string_view(block_ + ustar::kMagic.offset, ustar::kMagic.width);
  }

  const char* block_;
};

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
  const Header header(block_);
  // Checksum: the field itself counts as eight spaces. Historic tars summed signed chars.
  BERTH_ASSIGN_OR_RETURN(int64_t stored, header.Number(ustar::kChecksum, "chksum"));
  int64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    bool in_field =
        i >= ustar::kChecksum.offset && i < ustar::kChecksum.offset + ustar::kChecksum.width;
    unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(block_[i]);
    signed_sum += in_field ? ' ' : static_cast<signed char>(block_[i]);
  }
  if (stored != unsigned_sum && stored != signed_sum) {
    return Fail(Invalid(
        fmt::format("header checksum mismatch (stored {}, computed {}); the archive is corrupt",
                    stored, unsigned_sum)));
  }
  BERTH_ASSIGN_OR_RETURN(int64_t size, header.Number(ustar::kSize, "size"));
  if (size < 0) return Fail(Invalid("negative size"));
  switch (header.typeflag()) {
    case 'x':
    case 'g':
    case 'L':
    case 'K':
      return StartExtendedHeader(header.typeflag(), static_cast<uint64_t>(size));
    case 'V':  // Volume label: metadata only.
      remaining_ = static_cast<uint64_t>(size) + PaddingFor(static_cast<uint64_t>(size));
      padding_ = 0;
      state_ = remaining_ > 0 ? State::kSkip : State::kHeader;
      return Ok();
    default:
      return StartEntry();
  }
}

Result<void> TarReader::StartExtendedHeader(char typeflag, uint64_t size) {
  if (size > limits_.max_extended_header_bytes) {
    return Fail(Invalid(fmt::format(
        "extended header of {} bytes exceeds the limit of {} (max_extended_header_bytes)", size,
        limits_.max_extended_header_bytes)));
  }
  extended_type_ = typeflag;
  extended_.clear();
  remaining_ = size;
  padding_ = PaddingFor(remaining_);
  if (remaining_ == 0) {
    state_ = State::kHeader;
    return OnExtendedComplete();
  }
  state_ = State::kExtended;
  return Ok();
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
      (extended_type_ == 'L' ? overrides_.path : overrides_.link_target) = std::string(name);
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
    if (global) continue;  // Global headers are ignored, as containerd and Docker do.
    BERTH_RETURN_IF_ERROR(ApplyPaxRecord(record.substr(0, equals), record.substr(equals + 1)));
  }
  return Ok();
}

Result<void> TarReader::ApplyPaxRecord(std::string_view key, std::string_view value) {
  if (key == "path") {
    overrides_.path = std::string(value);
  } else if (key == "linkpath") {
    overrides_.link_target = std::string(value);
  } else if (key == "size") {
    BERTH_ASSIGN_OR_RETURN(overrides_.size, ParseDecimal(value, key));
  } else if (key == "mtime") {
    BERTH_ASSIGN_OR_RETURN(overrides_.mtime, ParsePaxTime(value, key));
  } else if (key == "atime") {
    BERTH_ASSIGN_OR_RETURN(overrides_.atime, ParsePaxTime(value, key));
  } else if (key == "uid" || key == "gid") {
    BERTH_ASSIGN_OR_RETURN(uint64_t id, ParseDecimal(value, key));
    if (id > std::numeric_limits<uint32_t>::max()) {
      return Fail(Invalid(fmt::format("pax {} {} is out of range", key, id)));
    }
    (key == "uid" ? overrides_.uid : overrides_.gid) = static_cast<uint32_t>(id);
  } else if (key.starts_with(kPaxXattrPrefix)) {
    std::string_view name = key.substr(kPaxXattrPrefix.size());
    if (name.empty()) return Fail(Invalid("pax xattr record without a name"));
    overrides_.xattrs.emplace_back(std::string(name), std::string(value));
  } else if (key.starts_with(kPaxSparsePrefix)) {
    return ApplySparseRecord(key, key.substr(kPaxSparsePrefix.size()), value);
  }
  // Anything else (uname, gname, charset, comment, ctime, LIBARCHIVE.*) is ignored.
  return Ok();
}

Result<void> TarReader::ApplySparseRecord(std::string_view key, std::string_view field,
                                          std::string_view value) {
  if (field == "major" || field == "minor") {
    BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(value, key));
    (field == "major" ? overrides_.sparse_major : overrides_.sparse_minor) =
        static_cast<int>(std::min<uint64_t>(number, 1000));
  } else if (field == "name") {
    overrides_.sparse_name = std::string(value);
  } else if (field == "realsize" || field == "size") {
    BERTH_ASSIGN_OR_RETURN(overrides_.sparse_realsize, ParseDecimal(value, key));
  } else if (field == "map") {
    // Format 0.1: "offset,length,offset,length,...".
    overrides_.sparse_map = true;
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
    overrides_.sparse_map = true;
    segments_.push_back({number, 0});
  } else if (field == "numbytes") {
    BERTH_ASSIGN_OR_RETURN(uint64_t number, ParseDecimal(value, key));
    if (segments_.empty()) return Fail(Invalid("GNU.sparse.numbytes without an offset"));
    segments_.back().length = number;
  }
  return Ok();
}

// A member's header block, merged with the extended headers before it, becomes entry_; then the
// reader moves on to the member's sparse map or content.
Result<void> TarReader::StartEntry() {
  const Header header(block_);
  BERTH_RETURN_IF_ERROR(ReadType(header));
  BERTH_RETURN_IF_ERROR(ReadNames(header));
  BERTH_RETURN_IF_ERROR(ReadAttributes(header));
  BERTH_ASSIGN_OR_RETURN(int64_t header_size, header.Number(ustar::kSize, "size"));
  uint64_t stored = overrides_.size.value_or(static_cast<uint64_t>(header_size));
  bool header_only = entry_.type != TarEntryType::kRegular;
  data_size_ = header_only ? 0 : stored;
  entry_.size = data_size_;
  BERTH_ASSIGN_OR_RETURN(SparseMap map, ReadSparseLayout(header));
  BERTH_RETURN_IF_ERROR(CheckEntryLimits());
  overrides_ = {};
  return EnterContent(header_only ? 0 : stored, map);
}

Result<void> TarReader::ReadType(const Header& header) {
  TarEntry& e = entry_;
  e.sparse = false;
  switch (header.typeflag()) {
    case '0':
    case '\0':
    case '7':
      e.type = TarEntryType::kRegular;
      return Ok();
    case '1':
      e.type = TarEntryType::kHardlink;
      return Ok();
    case '2':
      e.type = TarEntryType::kSymlink;
      return Ok();
    case '3':
      e.type = TarEntryType::kCharDevice;
      return Ok();
    case '4':
      e.type = TarEntryType::kBlockDevice;
      return Ok();
    case '5':
      e.type = TarEntryType::kDirectory;
      return Ok();
    case '6':
      e.type = TarEntryType::kFifo;
      return Ok();
    case 'S':  // Old GNU sparse file.
      e.type = TarEntryType::kRegular;
      e.sparse = true;
      return Ok();
  }
  auto typeflag = static_cast<unsigned char>(header.typeflag());
  return Fail(
      ErrorCode::kUnimplemented,
      fmt::format("tar entry \"{}\" has type '{}' (0x{:02x}), which berth cannot "
                  "apply (header at byte offset {})",
                  header.String(ustar::kName), std::isprint(typeflag) ? header.typeflag() : '?',
                  typeflag, header_offset_));
}

// Name: GNU sparse real name, else a pax/GNU long name, else the ustar prefix + name.
Result<void> TarReader::ReadNames(const Header& header) {
  TarEntry& e = entry_;
  if (overrides_.sparse_name) {
    e.path = *overrides_.sparse_name;
  } else if (overrides_.path) {
    e.path = *overrides_.path;
  } else {
    std::string_view prefix = header.posix() ? header.String(ustar::kPrefix) : std::string_view();
    e.path.clear();
    if (!prefix.empty()) {
      e.path.append(prefix);
      e.path.push_back('/');
    }
    e.path.append(header.String(ustar::kName));
  }
  if (overrides_.link_target) {
    e.link_target = *overrides_.link_target;
  } else {
    e.link_target.assign(header.String(ustar::kLinkname));
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
  return Ok();
}

// Mode, owner, times, device numbers and xattrs.
Result<void> TarReader::ReadAttributes(const Header& header) {
  TarEntry& e = entry_;
  BERTH_ASSIGN_OR_RETURN(int64_t mode, header.Number(ustar::kMode, "mode"));
  if (mode < 0) return Fail(Invalid("negative mode"));
  e.mode = static_cast<uint32_t>(mode) & 07777;
  auto id = [&](const std::optional<uint32_t>& pax, Field field,
                std::string_view name) -> Result<uint32_t> {
    if (pax) return *pax;
    BERTH_ASSIGN_OR_RETURN(int64_t parsed, header.Number(field, name));
    if (parsed < 0 || parsed > std::numeric_limits<uint32_t>::max()) {
      return Fail(Invalid(fmt::format("{} {} is out of range", name, parsed)));
    }
    return static_cast<uint32_t>(parsed);
  };
  BERTH_ASSIGN_OR_RETURN(e.uid, id(overrides_.uid, ustar::kUid, "uid"));
  BERTH_ASSIGN_OR_RETURN(e.gid, id(overrides_.gid, ustar::kGid, "gid"));
  if (overrides_.mtime) {
    e.mtime = *overrides_.mtime;
  } else {
    BERTH_ASSIGN_OR_RETURN(int64_t mtime, header.Number(ustar::kMtime, "mtime"));
    e.mtime = TarTime{mtime, 0};
  }
  e.has_atime = overrides_.atime.has_value();
  e.atime = overrides_.atime.value_or(TarTime{});
  e.device_major = e.device_minor = 0;
  if ((header.posix() || header.gnu()) &&
      (e.type == TarEntryType::kCharDevice || e.type == TarEntryType::kBlockDevice)) {
    BERTH_ASSIGN_OR_RETURN(int64_t major, header.Number(ustar::kDevMajor, "devmajor"));
    BERTH_ASSIGN_OR_RETURN(int64_t minor, header.Number(ustar::kDevMinor, "devminor"));
    if (major < 0 || minor < 0 || major > 0xfffff || minor > 0xfffff) {
      return Fail(Invalid("device number out of range"));
    }
    e.device_major = static_cast<uint32_t>(major);
    e.device_minor = static_cast<uint32_t>(minor);
  }
  e.xattrs.swap(overrides_.xattrs);
  overrides_.xattrs.clear();
  return Ok();
}

// Decides whether a regular member is sparse (pax GNU.sparse 1.0 or 0.x records, or an old GNU
// 'S' header) and sets its logical size; reads the old GNU header's map slots.
Result<TarReader::SparseMap> TarReader::ReadSparseLayout(const Header& header) {
  TarEntry& e = entry_;
  bool gnu_1_0 = overrides_.sparse_major == 1 && overrides_.sparse_minor == 0;
  bool gnu_0_x = !gnu_1_0 && overrides_.sparse_map;
  if (e.type != TarEntryType::kRegular || !(gnu_1_0 || gnu_0_x || e.sparse)) {
    return SparseMap::kNone;
  }
  if (!e.sparse) {
    if (!overrides_.sparse_realsize)
      return Fail(Invalid("sparse file without GNU.sparse.realsize"));
    e.size = *overrides_.sparse_realsize;
    e.sparse = true;
    return gnu_1_0 ? SparseMap::kInData : SparseMap::kNone;
  }
  // Old GNU 'S': up to four segments in the header, more in extension blocks.
  BERTH_ASSIGN_OR_RETURN(int64_t realsize, header.Number(gnu_sparse::kRealSize, "realsize"));
  if (realsize < 0) return Fail(Invalid("negative sparse size"));
  e.size = static_cast<uint64_t>(realsize);
  segments_.clear();
  for (size_t i = 0; i < gnu_sparse::kHeaderSlotCount; ++i) {
    BERTH_ASSIGN_OR_RETURN(auto slot, ReadSparseSlot(header.at(gnu_sparse::kHeaderSlots +
                                                               i * gnu_sparse::kSlotBytes)));
    if (!slot) break;
    if (slot->first < 0 || slot->second < 0) return Fail(Invalid("negative sparse segment"));
    segments_.push_back({static_cast<uint64_t>(slot->first), static_cast<uint64_t>(slot->second)});
  }
  // GNU 1.0 records win over an 'S' header; otherwise extension blocks may follow.
  if (gnu_1_0) return SparseMap::kInData;
  return *header.at(gnu_sparse::kHeaderIsExtended) != '\0' ? SparseMap::kExtensions
                                                           : SparseMap::kNone;
}

Result<void> TarReader::CheckEntryLimits() const {
  if (entry_.size > limits_.max_entry_bytes) {
    return Fail(Invalid(
        fmt::format("entry \"{}\" declares {} bytes, more than the limit of {} (max_entry_bytes)",
                    entry_.path, entry_.size, limits_.max_entry_bytes)));
  }
  if (limits_.max_entries != 0 && entries_ >= limits_.max_entries) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("layer has more than {} entries (max_entries); refusing it",
                            limits_.max_entries));
  }
  return Ok();
}

// `stored` content bytes follow the header (0 for header-only types).
Result<void> TarReader::EnterContent(uint64_t stored, SparseMap map) {
  remaining_ = stored;
  padding_ = PaddingFor(stored);
  switch (map) {
    case SparseMap::kInData:
      // The map occupies whole blocks at the start of the stored data.
      map_text_.clear();
      map_numbers_.clear();
      map_bytes_ = 0;
      segments_.clear();
      state_ = State::kSparseMap;
      if (remaining_ < kBlock) return Fail(Invalid("sparse file too short for its map"));
      return Ok();
    case SparseMap::kExtensions:
      state_ = State::kSparseExt;
      return Ok();
    case SparseMap::kNone:
      return BeginContent();
  }
  return BeginContent();
}

Result<void> TarReader::OnSparseExtBlock() {
  for (size_t i = 0; i < gnu_sparse::kExtensionSlotCount; ++i) {
    BERTH_ASSIGN_OR_RETURN(auto slot, ReadSparseSlot(block_ + i * gnu_sparse::kSlotBytes));
    if (!slot) break;
    if (slot->first < 0 || slot->second < 0) return Fail(Invalid("negative sparse segment"));
    if (segments_.size() >= limits_.max_sparse_segments) {
      return Fail(Invalid("sparse map has too many segments (max_sparse_segments)"));
    }
    segments_.push_back({static_cast<uint64_t>(slot->first), static_cast<uint64_t>(slot->second)});
  }
  if (block_[gnu_sparse::kExtensionIsExtended] != '\0') return Ok();  // Another block follows.
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
