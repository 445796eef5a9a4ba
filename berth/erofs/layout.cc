#include "berth/erofs/layout.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "berth/erofs/format.h"

namespace berth::erofs {
namespace {

using archive::TarTime;
using format::kBlockSize;

bool Newer(const TarTime& a, const TarTime& b) {
  return a.seconds != b.seconds ? a.seconds > b.seconds : a.nanoseconds > b.nanoseconds;
}

// The nodes reachable from the root, breadth first (the root first, so its nid is 0), with
// `ino` numbering them from 1 and `nlink` counted: names for non-directories, 2 plus
// subdirectories for directories.
std::vector<Node*> CollectReachable(Tree& tree) {
  std::vector<Node*> order{tree.root()};
  tree.root()->ino = 1;
  for (size_t i = 0; i < order.size(); ++i) {
    Node* node = order[i];
    if (node->type != NodeType::kDirectory) continue;
    node->nlink = 2;
    for (auto& [name, child] : node->children) {
      if (child->ino == 0) {
        child->ino = static_cast<uint32_t>(order.size() + 1);
        child->nlink = 0;
        order.push_back(child);
      }
      if (child->type == NodeType::kDirectory) {
        ++node->nlink;
      } else {
        ++child->nlink;
      }
    }
  }
  return order;
}

// Gives each implicit directory the newest mtime of its children, whiteouts excluded (or of its
// whiteouts when it has nothing else), as TarApplier does, so the image does not depend on when
// it was written. Children first: a child may be implicit too.
void SetImplicitTimes(const std::vector<Node*>& order) {
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    if (!node->implicit) continue;
    std::optional<TarTime> newest;
    std::optional<TarTime> newest_whiteout;
    for (const auto& [name, child] : node->children) {
      auto& slot = child->whiteout ? newest_whiteout : newest;
      if (!slot || Newer(child->mtime, *slot)) slot = child->mtime;
    }
    if (newest) {
      node->mtime = *newest;
    } else if (newest_whiteout) {
      node->mtime = *newest_whiteout;
    }
  }
}

// The most common mtime: compact inodes carry none and show the superblock's epoch instead.
TarTime ChooseEpoch(const std::vector<Node*>& order) {
  std::map<std::pair<int64_t, uint32_t>, uint64_t> counts;
  for (const Node* node : order) {
    if (node->mtime.seconds >= 0) ++counts[{node->mtime.seconds, node->mtime.nanoseconds}];
  }
  TarTime epoch;
  uint64_t best = 0;
  for (const auto& [time, count] : counts) {
    if (count > best) {
      best = count;
      epoch = {time.first, time.second};
    }
  }
  return epoch;
}

uint8_t FileType(const Node& node) {
  switch (node.type) {
    case NodeType::kRegular:
      return format::kFileTypeRegular;
    case NodeType::kDirectory:
      return format::kFileTypeDirectory;
    case NodeType::kSymlink:
      return format::kFileTypeSymlink;
    case NodeType::kCharDevice:
      return format::kFileTypeCharDevice;
    case NodeType::kBlockDevice:
      return format::kFileTypeBlockDevice;
    case NodeType::kFifo:
      return format::kFileTypeFifo;
    case NodeType::kSocket:
      return format::kFileTypeSocket;
  }
  return 0;
}

uint32_t ModeType(NodeType type) {
  switch (type) {
    case NodeType::kRegular:
      return S_IFREG;
    case NodeType::kDirectory:
      return S_IFDIR;
    case NodeType::kSymlink:
      return S_IFLNK;
    case NodeType::kCharDevice:
      return S_IFCHR;
    case NodeType::kBlockDevice:
      return S_IFBLK;
    case NodeType::kFifo:
      return S_IFIFO;
    case NodeType::kSocket:
      return S_IFSOCK;
  }
  return 0;
}

using Dirent = std::pair<std::string_view, const Node*>;

// A directory's entries in the order EROFS requires (bytewise by name, "." and ".." among
// them).
std::vector<Dirent> SortedDirents(const Node& directory) {
  std::vector<Dirent> dirents;
  dirents.reserve(directory.children.size() + 2);
  dirents.emplace_back(".", &directory);
  dirents.emplace_back("..", directory.parent);
  for (const auto& [name, child] : directory.children) dirents.emplace_back(name, child);
  // "." and ".." sort after names starting with a byte below '.', so merge them in.
  std::stable_sort(dirents.begin(), dirents.end(),
                   [](const Dirent& a, const Dirent& b) { return a.first < b.first; });
  return dirents;
}

// Splits `dirents` into directory blocks: calls fn(begin, end) for each block's range, and
// returns the directory's size (whole blocks, then the bytes used in the last one).
template <typename Fn>
uint64_t SplitBlocks(const std::vector<Dirent>& dirents, Fn&& fn) {
  size_t begin = 0;
  uint64_t used = 0;
  uint64_t full_blocks = 0;
  for (size_t i = 0; i < dirents.size(); ++i) {
    uint64_t need = format::kDirentSize + dirents[i].first.size();
    if (used + need > kBlockSize) {
      fn(begin, i);
      ++full_blocks;
      begin = i;
      used = 0;
    }
    used += need;
  }
  fn(begin, dirents.size());
  return full_blocks * kBlockSize + used;
}

// Where a directory's blocks go: whole blocks from `start_block` in the data area, except that
// a last block small enough to follow the inode in its metadata block is stored there.
struct DirectoryPlan {
  uint64_t start_block = 0;
  uint64_t size = 0;
  bool inline_tail = false;

  uint64_t blocks() const { return format::RoundUp(size, kBlockSize) / kBlockSize; }
  uint64_t tail_size() const { return size - (blocks() - 1) * kBlockSize; }
  uint64_t data_blocks() const { return inline_tail ? blocks() - 1 : blocks(); }
};

// How a regular file's blocks are found: one contiguous run (flat), or a block map with one
// entry per 2^chunk_log blocks.
struct FileMapping {
  bool flat = true;
  uint32_t chunk_log = 0;
  uint64_t chunks = 0;
};

FileMapping MapFile(const Node& node) {
  uint64_t total = format::RoundUp(node.size, kBlockSize) / kBlockSize;
  const auto& extents = node.extents;
  if (total == 0 ||
      (extents.size() == 1 && extents[0].logical_block == 0 && extents[0].blocks == total)) {
    return {};
  }
  // The largest chunk that never mixes data and hole: every run starts on a chunk and fills
  // whole chunks, except one that runs to the end of the file.
  uint32_t log = 0;
  while ((uint64_t{1} << log) < total && log < format::kChunkBlockBitsMask) ++log;
  for (; log > 0; --log) {
    uint64_t chunk = uint64_t{1} << log;
    bool fits = std::all_of(extents.begin(), extents.end(), [&](const Extent& extent) {
      return extent.logical_block % chunk == 0 &&
             (extent.blocks % chunk == 0 || extent.logical_block + extent.blocks == total);
    });
    if (fits) break;
  }
  uint64_t chunk = uint64_t{1} << log;
  return {.flat = false, .chunk_log = log, .chunks = (total + chunk - 1) / chunk};
}

// Everything about a node's inode record but its placement.
struct Shape {
  bool extended = false;
  uint16_t layout = format::kLayoutFlatPlain;
  uint64_t size = 0;
  uint32_t inode_u = 0;  // i_u: start block, device, or chunk format
  uint32_t xattr_size = 0;
  uint64_t tail_size = 0;  // symlink target or block map
  FileMapping mapping;

  uint64_t head() const {
    return (extended ? format::kExtendedInodeSize : format::kCompactInodeSize) + xattr_size;
  }
  uint64_t record() const { return head() + tail_size; }
};

uint32_t XattrEntrySize(std::string_view suffix, std::string_view value) {
  return static_cast<uint32_t>(
      format::RoundUp(format::kXattrEntryHeaderSize + suffix.size() + value.size(), 4));
}

}  // namespace

Result<uint32_t> XattrBodySize(const XattrList& xattrs) {
  if (xattrs.empty()) return uint32_t{0};
  uint64_t size = format::kXattrBodyHeaderSize;
  for (const auto& [name, value] : xattrs) {
    auto index = XattrIndex(name);
    if (!index) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("xattr {} has a namespace EROFS cannot store", name));
    }
    size += XattrEntrySize(index->second, value);
  }
  if ((size - format::kXattrBodyHeaderSize) / 4 + 1 > 0xffff) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("the xattrs of one entry take {} bytes, more than an EROFS inode "
                            "holds (256 KiB)",
                            size));
  }
  return static_cast<uint32_t>(size);
}

namespace {

Result<Shape> ShapeOf(const Node& node, const TarTime& epoch,
                      const std::vector<DirectoryPlan>& directories) {
  Shape shape;
  BERTH_ASSIGN_OR_RETURN(shape.xattr_size, XattrBodySize(node.xattrs));
  switch (node.type) {
    case NodeType::kRegular:
      shape.size = node.size;
      if (node.tail_size != 0) {
        // Whole blocks in one run (extents[0], if any), the last block after the inode.
        shape.layout = format::kLayoutFlatInline;
        shape.inode_u =
            node.extents.empty() ? 0 : static_cast<uint32_t>(node.extents[0].physical_block);
        shape.tail_size = node.tail_size;
        break;
      }
      shape.mapping = MapFile(node);
      if (shape.mapping.flat) {
        shape.inode_u =
            node.extents.empty() ? 0 : static_cast<uint32_t>(node.extents[0].physical_block);
      } else {
        shape.layout = format::kLayoutChunkBased;
        shape.inode_u = shape.mapping.chunk_log;
        shape.tail_size = shape.mapping.chunks * format::kBlockMapEntrySize;
      }
      break;
    case NodeType::kDirectory: {
      const DirectoryPlan& plan = directories[node.ino - 1];
      shape.size = plan.size;
      shape.inode_u = static_cast<uint32_t>(plan.start_block);
      if (plan.inline_tail) {
        shape.layout = format::kLayoutFlatInline;
        shape.tail_size = plan.tail_size();
      }
      break;
    }
    case NodeType::kSymlink:
      shape.layout = format::kLayoutFlatInline;
      shape.size = node.symlink_target.size();
      shape.tail_size = shape.size;
      break;
    case NodeType::kCharDevice:
    case NodeType::kBlockDevice:
      shape.inode_u = format::EncodeDevice(node.device_major, node.device_minor);
      break;
    case NodeType::kFifo:
    case NodeType::kSocket:
      break;
  }
  shape.extended = shape.size > 0xffffffff || node.uid > 0xffff || node.gid > 0xffff ||
                   node.nlink > 0xffff || node.mtime != epoch;
  return shape;
}

// Where a record of `shape` goes, at or after byte `at` of the metadata area (32-aligned): a
// record that fits a block never crosses one; data stored inline (a symlink target, a
// directory's last block) must not.
Result<uint64_t> Place(uint64_t at, const Shape& shape) {
  if (shape.record() <= kBlockSize) {
    if (at % kBlockSize + shape.record() > kBlockSize) at = format::RoundUp(at, kBlockSize);
    return at;
  }
  if (shape.layout != format::kLayoutFlatInline) return at;
  for (uint64_t step = 0; step < kBlockSize / format::kInodeSlotSize; ++step) {
    uint64_t tail = at + shape.head();
    if (tail % kBlockSize + shape.tail_size <= kBlockSize) return at;
    at += format::kInodeSlotSize;
  }
  // The writer refuses such symlinks (SymlinkFits) before they get here.
  return Fail(ErrorCode::kInternal,
              "a symlink's target and xattrs together do not fit one 4096-byte block");
}

void PutXattrs(const Node& node, char* at) {
  at += format::kXattrBodyHeaderSize;  // No name filter, no shared xattrs: zeros.
  for (const auto& [name, value] : node.xattrs) {
    auto [index, suffix] = *XattrIndex(name);
    at[0] = static_cast<char>(suffix.size());
    at[1] = static_cast<char>(index);
    format::PutLe16(at + 2, static_cast<uint16_t>(value.size()));
    std::copy(suffix.begin(), suffix.end(), at + 4);
    std::copy(value.begin(), value.end(), at + 4 + suffix.size());
    at += XattrEntrySize(suffix, value);
  }
}

void PutBlockMap(const Node& node, const FileMapping& mapping, char* at) {
  std::vector<uint32_t> map(mapping.chunks, format::kNullBlock);
  for (const Extent& extent : node.extents) {
    uint64_t first = extent.logical_block >> mapping.chunk_log;
    uint64_t end =
        (extent.logical_block + extent.blocks + (uint64_t{1} << mapping.chunk_log) - 1) >>
        mapping.chunk_log;
    for (uint64_t chunk = first; chunk < end; ++chunk) {
      uint64_t offset = (chunk << mapping.chunk_log) - extent.logical_block;
      map[chunk] = static_cast<uint32_t>(extent.physical_block + offset);
    }
  }
  for (uint64_t chunk = 0; chunk < mapping.chunks; ++chunk) {
    format::PutLe32(at + chunk * format::kBlockMapEntrySize, map[chunk]);
  }
}

// The inode record of `node`: the inode, its xattrs, then its tail (`inline_data` for a
// directory or regular file whose last block is inline).
std::string EncodeInode(const Node& node, const Shape& shape, std::string_view inline_data) {
  std::string record(shape.record(), '\0');
  char* p = record.data();
  uint16_t version = shape.extended ? format::kVersionExtended : format::kVersionCompact;
  uint16_t xattr_count =
      shape.xattr_size == 0
          ? 0
          : static_cast<uint16_t>((shape.xattr_size - format::kXattrBodyHeaderSize) / 4 + 1);
  uint32_t mode = ModeType(node.type) | node.permissions;
  format::PutLe16(p, format::InodeFormat(version, shape.layout));
  format::PutLe16(p + 2, xattr_count);
  format::PutLe16(p + 4, static_cast<uint16_t>(mode));
  format::PutLe32(p + 16, shape.inode_u);
  format::PutLe32(p + 20, node.ino);
  if (shape.extended) {
    format::PutLe64(p + 8, shape.size);
    format::PutLe32(p + 24, node.uid);
    format::PutLe32(p + 28, node.gid);
    format::PutLe64(p + 32, static_cast<uint64_t>(node.mtime.seconds));
    format::PutLe32(p + 40, node.mtime.nanoseconds);
    format::PutLe32(p + 44, node.nlink);
  } else {
    format::PutLe16(p + 6, static_cast<uint16_t>(node.nlink));
    format::PutLe32(p + 8, static_cast<uint32_t>(shape.size));
    // i_mtime at 12 stays 0: the inode's mtime is the epoch itself.
    format::PutLe16(p + 24, static_cast<uint16_t>(node.uid));
    format::PutLe16(p + 26, static_cast<uint16_t>(node.gid));
  }
  char* xattrs = p + (shape.extended ? format::kExtendedInodeSize : format::kCompactInodeSize);
  if (shape.xattr_size != 0) PutXattrs(node, xattrs);
  char* tail = p + shape.head();
  if (node.type == NodeType::kSymlink) {
    std::copy(node.symlink_target.begin(), node.symlink_target.end(), tail);
  } else if (shape.layout == format::kLayoutFlatInline) {
    std::memcpy(tail, inline_data.data(), std::min<size_t>(inline_data.size(), shape.tail_size));
  } else if (!shape.mapping.flat) {
    PutBlockMap(node, shape.mapping, tail);
  }
  return record;
}

// Fills `block` with the directory block of dirents [begin, end): their records, then their
// names, zeros after.
void FillDirectoryBlock(const std::vector<Dirent>& dirents, size_t begin, size_t end,
                        std::string& block) {
  block.assign(kBlockSize, '\0');
  uint32_t name_offset = static_cast<uint32_t>((end - begin) * format::kDirentSize);
  for (size_t i = begin; i < end; ++i) {
    char* dirent = block.data() + (i - begin) * format::kDirentSize;
    format::PutLe64(dirent, dirents[i].second->nid);
    format::PutLe16(dirent + 8, static_cast<uint16_t>(name_offset));
    dirent[10] = static_cast<char>(FileType(*dirents[i].second));
    std::memcpy(block.data() + name_offset, dirents[i].first.data(), dirents[i].first.size());
    name_offset += static_cast<uint32_t>(dirents[i].first.size());
  }
}

// Appends the directory's blocks that go to the data area (all but an inline last block).
Result<void> WriteDirectoryBlocks(const Node& directory, const DirectoryPlan& plan,
                                  ImageFile& image, std::string& block) {
  std::vector<Dirent> dirents = SortedDirents(directory);
  Result<void> status = Ok();
  uint64_t written = 0;
  SplitBlocks(dirents, [&](size_t begin, size_t end) {
    if (!status || written == plan.data_blocks()) return;
    FillDirectoryBlock(dirents, begin, end, block);
    status = image.Append(block);
    ++written;
  });
  return status;
}

// The stored bytes of the directory's last block, for a plan that puts it inline.
std::string DirectoryTail(const Node& directory, const DirectoryPlan& plan) {
  std::vector<Dirent> dirents = SortedDirents(directory);
  std::string block;
  SplitBlocks(dirents, [&](size_t begin, size_t end) {
    if (end == dirents.size()) FillDirectoryBlock(dirents, begin, end, block);
  });
  block.resize(plan.tail_size());
  return block;
}

Result<void> WriteSuperBlock(ImageFile& image, const Node& root, uint64_t inodes,
                             const TarTime& epoch, uint64_t meta_block, bool chunked) {
  std::array<char, format::kSuperBlockSize> block{};
  char* p = block.data();
  format::PutLe32(p + format::kSbMagic, format::kMagic);
  p[format::kSbBlockBits] = static_cast<char>(format::kBlockBits);
  format::PutLe16(p + format::kSbRootNid, static_cast<uint16_t>(root.nid));
  format::PutLe64(p + format::kSbInodes, inodes);
  format::PutLe64(p + format::kSbBuildTime, static_cast<uint64_t>(epoch.seconds));
  format::PutLe32(p + format::kSbBuildTimeNsec, epoch.nanoseconds);
  format::PutLe32(p + format::kSbBlocks, static_cast<uint32_t>(image.block()));
  format::PutLe32(p + format::kSbMetaBlockAddr, static_cast<uint32_t>(meta_block));
  format::PutLe32(p + format::kSbFeatureIncompat,
                  chunked ? format::kFeatureIncompatChunkedFile : 0);
  BERTH_RETURN_IF_ERROR(image.Flush());
  return image.WriteAt(format::kSuperBlockOffset, std::string_view(block.data(), block.size()));
}

}  // namespace

std::optional<std::pair<uint8_t, std::string_view>> XattrIndex(std::string_view name) {
  struct Prefix {
    std::string_view prefix;
    uint8_t index;
    bool whole_name;
  };
  static constexpr Prefix kPrefixes[] = {
      {"user.", format::kXattrIndexUser, false},
      {"trusted.", format::kXattrIndexTrusted, false},
      {"security.", format::kXattrIndexSecurity, false},
      {"system.posix_acl_access", format::kXattrIndexPosixAclAccess, true},
      {"system.posix_acl_default", format::kXattrIndexPosixAclDefault, true},
  };
  for (const Prefix& prefix : kPrefixes) {
    if (prefix.whole_name ? name == prefix.prefix
                          : name.starts_with(prefix.prefix) && name.size() > prefix.prefix.size()) {
      return std::pair{prefix.index, name.substr(prefix.prefix.size())};
    }
  }
  return std::nullopt;
}

bool SymlinkFits(uint32_t xattr_size, size_t target_size) {
  // Inodes start 32-aligned and take 32 or 64 bytes, so the target can start no nearer a block
  // boundary than xattr_size % 32 bytes past it.
  return xattr_size % format::kInodeSlotSize + target_size <= kBlockSize;
}

uint64_t InlineRoom(const XattrList& xattrs) {
  auto xattr_size = XattrBodySize(xattrs);
  if (!xattr_size) return 0;
  uint64_t head = format::kExtendedInodeSize + *xattr_size;
  return head < kBlockSize ? kBlockSize - head : 0;
}

Result<LayoutSummary> WriteLayout(Tree& tree, ImageFile& image, const ImageFile* tails) {
  std::vector<Node*> order = CollectReachable(tree);
  SetImplicitTimes(order);
  const TarTime epoch = ChooseEpoch(order);

  // Directory blocks go right after the file contents; their size depends on names only.
  const uint64_t directory_start = image.block();
  std::vector<DirectoryPlan> directories(order.size());
  uint64_t next_block = directory_start;
  for (const Node* node : order) {
    if (node->type != NodeType::kDirectory) continue;
    DirectoryPlan& plan = directories[node->ino - 1];
    plan.size = SplitBlocks(SortedDirents(*node), [](size_t, size_t) {});
    BERTH_ASSIGN_OR_RETURN(Shape plain, ShapeOf(*node, epoch, directories));
    plan.inline_tail = plain.head() + plan.tail_size() <= kBlockSize;
    plan.start_block = plan.data_blocks() == 0 ? 0 : next_block;
    next_block += plan.data_blocks();
  }
  const uint64_t meta_block = next_block;

  // Inodes: the root first, at nid 0.
  uint64_t at = 0;
  bool chunked = false;
  for (Node* node : order) {
    BERTH_ASSIGN_OR_RETURN(Shape shape, ShapeOf(*node, epoch, directories));
    BERTH_ASSIGN_OR_RETURN(at, Place(at, shape));
    node->nid = at / format::kInodeSlotSize;
    at = format::RoundUp(at + shape.record(), format::kInodeSlotSize);
    chunked = chunked || !shape.mapping.flat;
  }

  std::string buffer;
  for (const Node* node : order) {
    if (node->type == NodeType::kDirectory) {
      BERTH_RETURN_IF_ERROR(WriteDirectoryBlocks(*node, directories[node->ino - 1], image, buffer));
    }
  }
  const uint64_t meta_start = meta_block * kBlockSize;
  for (const Node* node : order) {
    BERTH_ASSIGN_OR_RETURN(Shape shape, ShapeOf(*node, epoch, directories));
    uint64_t position = meta_start + node->nid * format::kInodeSlotSize;
    while (image.size() < position) {
      BERTH_RETURN_IF_ERROR(
          image.AppendZeros(std::min<uint64_t>(position - image.size(), kBlockSize)));
    }
    std::string inline_data;
    if (node->type == NodeType::kDirectory && directories[node->ino - 1].inline_tail) {
      inline_data = DirectoryTail(*node, directories[node->ino - 1]);
    } else if (node->tail_size != 0 && tails != nullptr) {
      BERTH_RETURN_IF_ERROR(tails->ReadAt(node->tail_offset, node->tail_size, &inline_data));
    }
    BERTH_RETURN_IF_ERROR(image.Append(EncodeInode(*node, shape, inline_data)));
  }
  BERTH_RETURN_IF_ERROR(image.PadToBlock());
  BERTH_RETURN_IF_ERROR(
      WriteSuperBlock(image, *tree.root(), order.size(), epoch, meta_block, chunked));
  return LayoutSummary{.directory_blocks = meta_block - directory_start,
                       .metadata_blocks = image.block() - meta_block,
                       .inodes = order.size()};
}

}  // namespace berth::erofs
