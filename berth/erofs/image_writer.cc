#include "berth/erofs/image_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "berth/archive/tar_applier.h"
#include "berth/archive/whiteouts.h"
#include "berth/base/unique_fd.h"
#include "berth/erofs/format.h"
#include "berth/erofs/image_file.h"
#include "berth/erofs/layout.h"
#include "berth/erofs/tree.h"

namespace berth::erofs {
namespace {

using archive::kOpaqueMarker;
using archive::kWhiteoutMetaPrefix;
using archive::kWhiteoutPrefix;

using archive::TarEntry;
using archive::TarEntryType;
using format::kBlockSize;

constexpr char kOverlayOpaqueXattr[] = "trusted.overlay.opaque";
// Linux's PATH_MAX counts the terminating NUL.
constexpr size_t kMaxSymlinkTarget = 4095;

// Refuses names EROFS cannot store: a component longer than 255 bytes.
Result<void> CheckNameLengths(std::string_view path) {
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = std::min(path.find('/', pos), path.size());
    if (slash - pos > format::kMaxNameLength) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("name \"{}\" is {} bytes long; EROFS (like Linux) allows 255",
                              path.substr(pos, slash - pos), slash - pos));
    }
    pos = slash + 1;
  }
  return Ok();
}

// The xattrs to store of an entry (or of a lower directory): trusted.overlay.* dropped (an
// archive must not forge overlayfs metadata, as TarApplier), names and sizes EROFS cannot store
// refused.
Result<XattrList> StorableXattrs(const XattrList& given) {
  XattrList xattrs;
  for (const auto& [name, value] : given) {
    if (name.starts_with("trusted.overlay.")) continue;
    auto index = XattrIndex(name);
    if (!index) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("xattr \"{}\": EROFS stores only user.*, trusted.*, security.*, "
                              "system.posix_acl_access and system.posix_acl_default",
                              name));
    }
    if (index->second.size() > 255 || value.size() > 0xffff) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("xattr \"{}\" is too large for EROFS (names up to 255 bytes after "
                              "the prefix, values up to 65535 bytes; this value has {})",
                              name, value.size()));
    }
    SetXattr(xattrs, name, value);
  }
  BERTH_RETURN_IF_ERROR(XattrBodySize(xattrs));
  return xattrs;
}

// How finely a sparse file of `size` bytes tells data from holes. A chunk is stored whole once
// any of it has data, and the block map has one entry per chunk: chunks grow with the file so
// the map stays within 16384 entries (64 KiB), e.g. 512 KiB chunks for 5 GiB.
uint64_t SparseChunkBytes(uint64_t size) {
  constexpr uint64_t kMaxChunks = 16384;
  uint64_t chunk = kBlockSize;
  while (chunk * kMaxChunks < size) chunk *= 2;
  return chunk;
}

NodeType NodeTypeOf(TarEntryType type) {
  switch (type) {
    case TarEntryType::kCharDevice:
      return NodeType::kCharDevice;
    case TarEntryType::kBlockDevice:
      return NodeType::kBlockDevice;
    case TarEntryType::kFifo:
      return NodeType::kFifo;
    case TarEntryType::kDirectory:
      return NodeType::kDirectory;
    case TarEntryType::kSymlink:
      return NodeType::kSymlink;
    default:
      return NodeType::kRegular;
  }
}

}  // namespace

// The writer's state: the image file, the tree of entries so far, and the file receiving data.
class ImageWriter::Impl {
 public:
  Impl(UniqueFd fd, ImageWriterOptions options)
      : image_(std::move(fd), /*early_writeback=*/options.sync == ImageSync::kFsyncAtFinish),
        options_(std::move(options)),
        tree_(options_.implicit_uid, options_.implicit_gid) {}

  // Reserves block 0 (the superblock's) for the end, and opens the scratch file for tails.
  Result<void> Start();

  Result<void> OnEntry(const TarEntry& entry);
  Result<void> OnData(uint64_t offset, std::string_view data);
  Result<void> OnEntryEnd();
  Result<ImageSummary> Finish();
  std::vector<std::string> ImplicitDirectories() const;
  Result<void> InheritDirectory(std::string_view path, const InheritedDirectory& attributes);

 private:
  // Returns `result`, remembering a failure: every later call fails (see the header).
  template <typename T>
  Result<T> Sticky(Result<T> result);
  Result<void> CheckHealthy() const;

  Result<void> Apply(const TarEntry& entry);
  Result<void> ApplyWhiteout(const TarEntry& entry);
  Result<void> ApplyDirectory(const TarEntry& entry, Node* parent, const XattrList& xattrs);
  Result<void> ApplyHardlink(const TarEntry& entry, Node* parent);
  Result<void> WriteData(uint64_t offset, std::string_view data);
  Result<void> AppendFileBytes(std::string_view data);
  Result<void> SkipTo(uint64_t offset);
  Result<void> AppendZeros(uint64_t count);
  Result<void> PadLastChunk();
  Result<void> AppendPacked(uint64_t offset, std::string_view data);
  Result<void> StoreTail();

  ImageFile image_;
  ImageWriterOptions options_;
  Tree tree_;
  uint64_t entries_ = 0;
  bool finished_ = false;
  std::unique_ptr<Error> error_;

  // The entry being applied: cleaned path and its split.
  std::string path_;
  std::string parent_path_;
  std::string base_;
  bool in_entry_ = false;

  // The regular file receiving data, and how many of its bytes are placed (holes included).
  Node* file_ = nullptr;
  uint64_t file_end_ = 0;
  // The granularity of holes in the file: one block, or more for large sparse files.
  uint64_t file_chunk_ = kBlockSize;

  // Tail packing: the scratch file holding the last partial blocks of files until Finish()
  // (nullptr without a scratch directory); for the current file, whether its tail may go there
  // and the bytes after its last whole block (less than a block).
  std::unique_ptr<ImageFile> tails_;
  bool pack_tail_ = false;
  std::string pending_;
};

Result<void> ImageWriter::Impl::Start() {
  if (!options_.scratch_directory.empty()) {
    int fd = open(options_.scratch_directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) {
      tails_ = std::make_unique<ImageFile>(UniqueFd(fd));
    } else if (errno != EOPNOTSUPP) {  // Without O_TMPFILE: no tail packing.
      return Fail(ErrnoError(errno, fmt::format("create a scratch file in {} for erofs tails",
                                                options_.scratch_directory.string())));
    }
  }
  return image_.AppendZeros(kBlockSize);
}

Result<void> ImageWriter::Impl::CheckHealthy() const {
  if (error_) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("the erofs image writer failed earlier ({})", error_->ToString()));
  }
  if (finished_) return Fail(ErrorCode::kFailedPrecondition, "the erofs image is finished");
  return Ok();
}

template <typename T>
Result<T> ImageWriter::Impl::Sticky(Result<T> result) {
  if (!result) error_ = std::make_unique<Error>(result.error());
  return result;
}

Result<void> ImageWriter::Impl::OnEntry(const TarEntry& entry) {
  BERTH_RETURN_IF_ERROR(CheckHealthy());
  ++entries_;
  in_entry_ = true;
  file_ = nullptr;
  return Sticky(WithContext(Apply(entry), fmt::format("write erofs entry \"{}\"", entry.path)));
}

Result<void> ImageWriter::Impl::Apply(const TarEntry& entry) {
  BERTH_RETURN_IF_ERROR(archive::CleanArchivePath(entry.path, path_));
  size_t slash = path_.rfind('/');
  parent_path_ = slash == std::string::npos ? std::string() : path_.substr(0, slash);
  base_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  BERTH_RETURN_IF_ERROR(CheckNameLengths(parent_path_));
  // A whiteout's own name is never stored: the name it hides is (checked there).
  if (base_.starts_with(kWhiteoutPrefix)) return ApplyWhiteout(entry);
  BERTH_RETURN_IF_ERROR(CheckNameLengths(base_));
  if (path_.empty()) {
    // The root's attributes are the writer's (see the header), as the applier's root is its
    // caller's.
    if (entry.type == TarEntryType::kDirectory) return Ok();
    return Fail(ErrorCode::kInvalidArgument, "a non-directory entry names the root itself");
  }
  BERTH_ASSIGN_OR_RETURN(XattrList xattrs, StorableXattrs(entry.xattrs));
  BERTH_ASSIGN_OR_RETURN(Node * parent, tree_.FindDirectory(parent_path_, Tree::Missing::kCreate));
  if (entry.type == TarEntryType::kHardlink) return ApplyHardlink(entry, parent);
  if (entry.type == TarEntryType::kDirectory) {
    return ApplyDirectory(entry, parent, xattrs);
  }
  if (entry.type == TarEntryType::kSymlink &&
      (entry.link_target.empty() || entry.link_target.size() > kMaxSymlinkTarget)) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("symlink target of {} bytes (Linux allows 1 to 4095)",
                            entry.link_target.size()));
  }
  if (entry.type == TarEntryType::kSymlink) {
    BERTH_ASSIGN_OR_RETURN(uint32_t xattr_size, XattrBodySize(xattrs));
    if (!SymlinkFits(xattr_size, entry.link_target.size())) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("symlink target of {} bytes with {} bytes of xattrs does not fit "
                              "one 4096-byte EROFS block",
                              entry.link_target.size(), xattr_size));
    }
  }
  Node* node = tree_.NewNode(NodeTypeOf(entry.type));
  node->permissions = entry.type == TarEntryType::kSymlink ? 0777 : entry.mode & 07777;
  node->uid = entry.uid;
  node->gid = entry.gid;
  node->mtime = entry.mtime;
  node->xattrs = std::move(xattrs);
  node->symlink_target = entry.link_target;
  node->device_major = entry.device_major;
  node->device_minor = entry.device_minor;
  if (entry.type == TarEntryType::kRegular) {
    node->size = entry.size;
    file_ = node;
    file_end_ = 0;
    pack_tail_ = tails_ != nullptr && !entry.sparse;
    pending_.clear();
    file_chunk_ = entry.sparse ? SparseChunkBytes(entry.size) : kBlockSize;
  }
  Tree::Link(parent, base_, node);
  return Ok();
}

Result<void> ImageWriter::Impl::ApplyDirectory(const TarEntry& entry, Node* parent,
                                               const XattrList& xattrs) {
  Node* directory = Tree::Lookup(parent, base_);
  if (directory == nullptr || directory->type != NodeType::kDirectory) {
    directory = tree_.NewNode(NodeType::kDirectory);
    Tree::Link(parent, base_, directory);
  }
  // Over an existing directory the contents stay and the new xattrs join the old ones, as
  // the applier's setxattr calls do.
  directory->implicit = false;
  directory->permissions = entry.mode & 07777;
  directory->uid = entry.uid;
  directory->gid = entry.gid;
  directory->mtime = entry.mtime;
  XattrList merged = directory->xattrs;
  for (const auto& [name, value] : xattrs) SetXattr(merged, name, value);
  BERTH_RETURN_IF_ERROR(XattrBodySize(merged));
  directory->xattrs = std::move(merged);
  return Ok();
}

Result<void> ImageWriter::Impl::ApplyHardlink(const TarEntry& entry, Node* parent) {
  std::string target;
  BERTH_RETURN_IF_ERROR(
      WithContext(archive::CleanArchivePath(entry.link_target, target), "hardlink target"));
  if (target.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "hardlink target is the root directory");
  }
  if (target == path_) return Ok();  // A hardlink to itself changes nothing.
  size_t slash = target.rfind('/');
  std::string_view target_parent =
      slash == std::string::npos ? std::string_view() : std::string_view(target).substr(0, slash);
  std::string_view target_base = slash == std::string::npos
                                     ? std::string_view(target)
                                     : std::string_view(target).substr(slash + 1);
  BERTH_ASSIGN_OR_RETURN(Node * directory,
                         tree_.FindDirectory(target_parent, Tree::Missing::kReturnNull));
  Node* node = directory == nullptr ? nullptr : Tree::Lookup(directory, target_base);
  if (node == nullptr) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("hardlink \"{}\" links to \"{}\", which is not an earlier entry of "
                            "this layer (it may be a file of a layer below, which an EROFS "
                            "layer image cannot link to)",
                            path_, entry.link_target));
  }
  if (node->type == NodeType::kDirectory) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("hardlink \"{}\" links to the directory \"{}\"", path_, target));
  }
  Tree::Link(parent, base_, node);
  return Ok();
}

Result<void> ImageWriter::Impl::ApplyWhiteout(const TarEntry& entry) {
  if (base_ == kOpaqueMarker) {
    BERTH_ASSIGN_OR_RETURN(Node * directory,
                           tree_.FindDirectory(parent_path_, Tree::Missing::kCreate));
    SetXattr(directory->xattrs, kOverlayOpaqueXattr, "y");
    return Ok();
  }
  if (base_.starts_with(kWhiteoutMetaPrefix)) return Ok();  // aufs metadata: ignored.
  std::string_view name = std::string_view(base_).substr(kWhiteoutPrefix.size());
  if (name.empty() || name == "." || name == "..") {
    return Fail(ErrorCode::kPermissionDenied,
                fmt::format("whiteout \"{}\" names \"{}\", which is not a removable entry; the "
                            "layer is refused",
                            entry.path, name));
  }
  BERTH_RETURN_IF_ERROR(CheckNameLengths(name));
  BERTH_ASSIGN_OR_RETURN(Node * parent, tree_.FindDirectory(parent_path_, Tree::Missing::kCreate));
  Node* whiteout = tree_.NewNode(NodeType::kCharDevice);
  whiteout->whiteout = true;
  whiteout->uid = entry.uid;
  whiteout->gid = entry.gid;
  whiteout->mtime = entry.mtime;
  Tree::Link(parent, name, whiteout);
  return Ok();
}

Result<void> ImageWriter::Impl::OnData(uint64_t offset, std::string_view data) {
  BERTH_RETURN_IF_ERROR(CheckHealthy());
  if (file_ == nullptr || data.empty()) return Ok();
  return Sticky(
      WithContext(WriteData(offset, data), fmt::format("write erofs entry \"{}\"", path_)));
}

Result<void> ImageWriter::Impl::WriteData(uint64_t offset, std::string_view data) {
  if (pack_tail_) return AppendPacked(offset, data);
  if (offset < file_end_ || offset + data.size() > file_->size) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("data at offset {} ({} bytes) overlaps earlier data or passes the "
                            "file's size {}",
                            offset, data.size(), file_->size));
  }
  if (offset > file_end_) BERTH_RETURN_IF_ERROR(SkipTo(offset));
  return AppendFileBytes(data);
}

// Tail packing (non-sparse files): whole blocks go to the image at once; the bytes after the
// last whole block wait in pending_ until the next data completes the block or the file ends.
Result<void> ImageWriter::Impl::AppendPacked(uint64_t offset, std::string_view data) {
  if (offset != file_end_ + pending_.size() || offset + data.size() > file_->size) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("data at offset {} ({} bytes) does not follow the earlier data or "
                            "passes the file's size {}",
                            offset, data.size(), file_->size));
  }
  if (!pending_.empty()) {
    size_t take = std::min(data.size(), kBlockSize - pending_.size());
    pending_.append(data.substr(0, take));
    data.remove_prefix(take);
    if (pending_.size() < kBlockSize) return Ok();
    BERTH_RETURN_IF_ERROR(AppendFileBytes(pending_));
    pending_.clear();
  }
  size_t whole = data.size() / kBlockSize * kBlockSize;
  if (whole > 0) BERTH_RETURN_IF_ERROR(AppendFileBytes(data.substr(0, whole)));
  pending_.assign(data.substr(whole));
  return Ok();
}

// At the end of a packed file: its partial last block goes to the scratch file, to be stored
// after the inode, when inode, xattrs and tail fit one block; else to the image like the rest.
Result<void> ImageWriter::Impl::StoreTail() {
  if (pending_.empty()) return Ok();
  if (pending_.size() <= InlineRoom(file_->xattrs)) {
    file_->tail_offset = tails_->size();
    file_->tail_size = static_cast<uint32_t>(pending_.size());
    BERTH_RETURN_IF_ERROR(tails_->Append(pending_));
  } else {
    BERTH_RETURN_IF_ERROR(AppendFileBytes(pending_));
  }
  pending_.clear();
  return Ok();
}

// Appends bytes at the file's current end, starting a new extent at a block boundary that the
// last extent does not reach (after a hole).
Result<void> ImageWriter::Impl::AppendFileBytes(std::string_view data) {
  if (file_end_ % kBlockSize == 0) {
    uint64_t block = file_end_ / kBlockSize;
    auto& extents = file_->extents;
    if (extents.empty() || extents.back().logical_block + extents.back().blocks != block) {
      extents.push_back({.logical_block = block, .physical_block = image_.block(), .blocks = 0});
    }
  }
  BERTH_RETURN_IF_ERROR(image_.Append(data));
  file_end_ += data.size();
  Extent& extent = file_->extents.back();
  extent.blocks = format::RoundUp(file_end_, kBlockSize) / kBlockSize - extent.logical_block;
  return Ok();
}

// Moves the file's end to `offset` over a hole: zeros inside a chunk already started (a chunk
// is all data or all hole), nothing for whole chunks (they become holes).
Result<void> ImageWriter::Impl::SkipTo(uint64_t offset) {
  if (file_end_ % file_chunk_ != 0) {
    uint64_t chunk_end = format::RoundUp(file_end_, file_chunk_);
    BERTH_RETURN_IF_ERROR(AppendZeros(std::min(offset, chunk_end) - file_end_));
    if (offset <= chunk_end) return Ok();
  }
  file_end_ = offset / file_chunk_ * file_chunk_;
  return AppendZeros(offset - file_end_);
}

Result<void> ImageWriter::Impl::AppendZeros(uint64_t count) {
  static const std::string kZeros(kBlockSize, '\0');
  while (count > 0) {
    uint64_t now = std::min<uint64_t>(count, kZeros.size());
    BERTH_RETURN_IF_ERROR(AppendFileBytes(std::string_view(kZeros).substr(0, now)));
    count -= now;
  }
  return Ok();
}

Result<void> ImageWriter::Impl::OnEntryEnd() {
  BERTH_RETURN_IF_ERROR(CheckHealthy());
  in_entry_ = false;
  if (file_ == nullptr) return Ok();
  Result<void> padded = PadLastChunk();
  file_ = nullptr;
  return Sticky(WithContext(std::move(padded), fmt::format("write erofs entry \"{}\"", path_)));
}

// Stores a packed file's tail, or completes the chunk the file's data ends in (up to the file's
// last block), so that the chunk is all data; then the image continues on a block boundary.
Result<void> ImageWriter::Impl::PadLastChunk() {
  if (pack_tail_) BERTH_RETURN_IF_ERROR(StoreTail());
  if (file_end_ % file_chunk_ != 0) {
    uint64_t end =
        std::min(format::RoundUp(file_end_, file_chunk_), format::RoundUp(file_->size, kBlockSize));
    BERTH_RETURN_IF_ERROR(AppendZeros(end - file_end_));
  }
  return image_.PadToBlock();
}

Result<ImageSummary> ImageWriter::Impl::Finish() {
  BERTH_RETURN_IF_ERROR(CheckHealthy());
  if (in_entry_) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("erofs image finished inside entry \"{}\"", path_));
  }
  const uint64_t data_end = image_.block();
  if (tails_ != nullptr) BERTH_RETURN_IF_ERROR(Sticky(tails_->Flush()));
  BERTH_ASSIGN_OR_RETURN(LayoutSummary layout, Sticky(WriteLayout(tree_, image_, tails_.get())));
  BERTH_RETURN_IF_ERROR(Sticky(image_.Close(
      options_.sync == ImageSync::kFsyncAtFinish ? ImageFile::Sync::kYes : ImageFile::Sync::kNo)));
  finished_ = true;
  return ImageSummary{.image_bytes = image_.size(),
                      .blocks = image_.block(),
                      .data_blocks = data_end - 1,
                      .directory_blocks = layout.directory_blocks,
                      .metadata_blocks = layout.metadata_blocks,
                      .inodes = layout.inodes,
                      .entries = entries_};
}

std::vector<std::string> ImageWriter::Impl::ImplicitDirectories() const {
  std::vector<std::string> paths;
  // Depth first from the root; a directory this layer makes opaque hides the layers below.
  std::vector<std::pair<const Node*, std::string>> stack = {{tree_.root(), ""}};
  while (!stack.empty()) {
    auto [directory, path] = std::move(stack.back());
    stack.pop_back();
    if (directory->implicit && !path.empty()) paths.push_back(path);
    for (auto it = directory->children.rbegin(); it != directory->children.rend(); ++it) {
      const Node* child = it->second;
      if (child->type != NodeType::kDirectory) continue;
      const bool opaque =
          std::any_of(child->xattrs.begin(), child->xattrs.end(),
                      [](const auto& xattr) { return xattr.first == kOverlayOpaqueXattr; });
      if (opaque) continue;
      stack.emplace_back(child, path.empty() ? it->first : path + "/" + it->first);
    }
  }
  return paths;
}

Result<void> ImageWriter::Impl::InheritDirectory(std::string_view path,
                                                 const InheritedDirectory& attributes) {
  BERTH_RETURN_IF_ERROR(CheckHealthy());
  auto inherit = [&]() -> Result<void> {
    BERTH_ASSIGN_OR_RETURN(Node * directory, tree_.FindDirectory(path, Tree::Missing::kReturnNull));
    if (directory == nullptr || !directory->implicit || directory == tree_.root()) {
      return Fail(ErrorCode::kNotFound, "not an implicit directory of the layer");
    }
    BERTH_ASSIGN_OR_RETURN(XattrList xattrs, StorableXattrs(attributes.xattrs));
    directory->implicit = false;
    directory->permissions = attributes.permissions & 07777;
    if (attributes.owner) std::tie(directory->uid, directory->gid) = *attributes.owner;
    directory->mtime = attributes.mtime;
    directory->xattrs = std::move(xattrs);
    return Ok();
  };
  return Sticky(WithContext(inherit(), fmt::format("give erofs directory \"{}\" its lower layers' "
                                                   "attributes",
                                                   path)));
}

ImageWriter::ImageWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ImageWriter::~ImageWriter() = default;

Result<std::unique_ptr<ImageWriter>> ImageWriter::Create(int fd, ImageWriterOptions options) {
  UniqueFd own(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!own) return Fail(ErrnoError(errno, "dup erofs image fd"));
  struct stat st;
  if (fstat(own.get(), &st) != 0) return Fail(ErrnoError(errno, "stat erofs image"));
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, "the erofs image fd is not a regular file");
  }
  auto impl = std::make_unique<Impl>(std::move(own), std::move(options));
  BERTH_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<ImageWriter>(new ImageWriter(std::move(impl)));
}

Result<std::unique_ptr<ImageWriter>> ImageWriter::Create(const std::filesystem::path& path,
                                                         ImageWriterOptions options) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("create erofs image {}", path.string())));
  if (options.scratch_directory.empty()) {
    options.scratch_directory = path.has_parent_path() ? path.parent_path() : ".";
  }
  return Create(fd.get(), std::move(options));
}

Result<void> ImageWriter::OnEntry(const archive::TarEntry& entry) { return impl_->OnEntry(entry); }
Result<void> ImageWriter::OnData(uint64_t offset, std::string_view data) {
  return impl_->OnData(offset, data);
}
Result<void> ImageWriter::OnEntryEnd() { return impl_->OnEntryEnd(); }
Result<ImageSummary> ImageWriter::Finish() { return impl_->Finish(); }
std::vector<std::string> ImageWriter::ImplicitDirectories() const {
  return impl_->ImplicitDirectories();
}
Result<void> ImageWriter::InheritDirectory(std::string_view path,
                                           const InheritedDirectory& attributes) {
  return impl_->InheritDirectory(path, attributes);
}

Result<size_t> InheritLowerDirectories(ImageWriter& writer,
                                       const std::vector<std::filesystem::path>& lower_dirs,
                                       bool preserve_ownership) {
  const std::vector<std::string> paths = writer.ImplicitDirectories();
  if (paths.empty() || lower_dirs.empty()) return size_t{0};
  BERTH_ASSIGN_OR_RETURN(archive::LowerLayers lowers, archive::LowerLayers::Open(lower_dirs));
  size_t inherited = 0;
  for (const std::string& path : paths) {
    BERTH_ASSIGN_OR_RETURN(std::optional<archive::LowerDirectory> lower,
                           archive::FindLowerDirectory(lowers.fds(), path));
    if (!lower) continue;
    InheritedDirectory attributes{
        .permissions = lower->st.st_mode & 07777,
        .mtime = {.seconds = lower->st.st_mtim.tv_sec,
                  .nanoseconds = static_cast<uint32_t>(lower->st.st_mtim.tv_nsec)},
        .xattrs = std::move(lower->xattrs)};
    if (preserve_ownership) attributes.owner = {lower->st.st_uid, lower->st.st_gid};
    BERTH_RETURN_IF_ERROR(writer.InheritDirectory(path, attributes));
    ++inherited;
  }
  return inherited;
}

}  // namespace berth::erofs
