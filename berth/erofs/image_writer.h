// File: berth/erofs/image_writer.h
//
// ImageWriter writes one layer as an uncompressed EROFS image (4096-byte blocks), in one
// streaming pass: it is a TarVisitor, so it sits behind an archive::TarReader in place of an
// archive::TarApplier, and anything else that can describe a tree as TarEntry values (a walker
// over a directory a container wrote into) can feed it the same way.
//
//   BERTH_ASSIGN_OR_RETURN(auto writer, ImageWriter::Create(image_path));
//   archive::TarReader reader(*writer);
//   ... reader.Write(chunk) ...; reader.Finish();
//   BERTH_ASSIGN_OR_RETURN(ImageSummary summary, writer->Finish());
//   // mount -t erofs -o ro <image> <dir>
//
// Streaming: file contents are appended to the image, block-aligned, as OnData() delivers them
// (through one fixed-size write buffer); only the current file's last partial block waits in
// memory until the file ends, then goes to the image or, with tail packing, to a scratch file
// (see ImageWriterOptions::scratch_directory). Inodes, directories and xattrs are kept in
// memory — memory grows with the number of entries only — and written after the data by
// Finish(), the superblock last. An image is only valid after Finish() succeeded.
//
// The image shows what TarApplier (kOverlay, no lower dirs) would create from the same stream,
// so that EROFS mounts of a chain of layers stacked as overlayfs lower dirs show what berth's
// overlay snapshotter shows:
//   - names are cleaned with archive::CleanArchivePath (".." refused with kPermissionDenied);
//     intermediate symlinks are followed inside the layer, never out of it (kPermissionDenied
//     or kInvalidArgument for a parent symlink that does not lead to a directory of the layer,
//     as the applier); a parent that is not a directory is kInvalidArgument;
//   - later entries replace earlier ones (a directory entry over a directory updates its
//     attributes and adds its xattrs, keeping its contents); missing parents are created 0755,
//     owned by ImageWriterOptions' implicit owner, and get the newest mtime of their children
//     (whiteouts excluded) at Finish(); the root is such a directory, and the archive's own
//     entry for it ("./") is skipped as the applier does. Where the applier leaves the time
//     of unpacking (whiteout devices, a directory holding only whiteouts) the image has the
//     whiteout entry's mtime, so that it depends on the archive alone;
//   - hardlinks name an earlier entry of the layer (kFailedPrecondition otherwise, as the
//     applier without lower dirs): both names share one inode (nlink > 1); a hardlink to a
//     directory is kInvalidArgument;
//   - ".wh.<name>" becomes a 0/0 character device <name> (mode 0, owned like the whiteout);
//     ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory; other ".wh..wh.*" names
//     are ignored; a whiteout of "", "." or ".." is kPermissionDenied;
//   - xattrs: user.*, trusted.*, security.* (security.capability included),
//     system.posix_acl_access and system.posix_acl_default are stored; trusted.overlay.* from
//     the archive is dropped (only whiteouts make overlayfs metadata); any other name is
//     kInvalidArgument, naming the entry and the xattr;
//   - mtime to the nanosecond (EROFS keeps no atime); uid/gid of 32 bits; sizes past 4 GiB
//     (extended inodes where a compact one cannot say it);
//   - sparse files (TarEntry::sparse) keep their holes: chunk-based layout, a null chunk per
//     hole. Chunks are 4 KiB up to 64 MiB files and grow with the size (at most 16384 chunks:
//     512 KiB for 5 GiB); a chunk holding any data is stored whole. The kernel reports st_blocks
//     of uncompressed EROFS files from their size, but SEEK_DATA/SEEK_HOLE and the image's size
//     show the holes.
// Names longer than 255 bytes are kInvalidArgument (EROFS's limit, the same as Linux's), and so
// are symlink targets longer than 4095 bytes.
// Blocks of a file replaced by a later entry stay in the image, unreferenced. Without tail
// packing (ImageWriterOptions::scratch_directory) every file takes whole blocks.
//
// Other sources of entries (a walker committing a container's upper directory) describe each
// node as a TarEntry: hardlinks as kHardlink entries naming the first path, overlayfs whiteouts
// and opaque markers translated back to ".wh." entries (trusted.overlay.* is dropped).
//
// Errors name the entry ("write erofs entry \"<path>\": ..."). I/O errors map as ErrnoError
// (ENOSPC → kResourceExhausted); an image past 2^32 blocks (16 TiB) is kResourceExhausted.
// Errors are sticky: after one, every call fails and the image is garbage.
//
// Thread safety: one thread at a time. Blocking: OnData() and Finish() write to the image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/archive/tar_reader.h"
#include "berth/base/result.h"

namespace berth::erofs {

enum class ImageSync {
  kNone,           // The caller syncs (or does not need to).
  kFsyncAtFinish,  // Finish() fsyncs the image after the superblock.
};

struct ImageWriterOptions {
  // Owner of the root and of directories created only as parents (TarApplier gives them the
  // calling process's owner, root in berthd).
  uint32_t implicit_uid = 0;
  uint32_t implicit_gid = 0;
  ImageSync sync = ImageSync::kNone;
  // Tail packing: the last partial block of a (non-sparse) file is stored after its inode
  // instead of taking a whole block, when it fits there. Those bytes wait in an unlinked
  // temporary file (O_TMPFILE) in this directory until Finish(): memory stays independent of
  // file contents. Empty: Create(path) uses the image's directory, Create(fd) packs no tails;
  // neither packs on a filesystem without O_TMPFILE.
  std::filesystem::path scratch_directory;
};

// Attributes an implicit directory takes from the layers below (see ImageWriter::
// InheritDirectory).
struct InheritedDirectory {
  uint32_t permissions = 0755;  // 07777
  // Kept as the writer's implicit owner when empty.
  std::optional<std::pair<uint32_t, uint32_t>> owner;
  archive::TarTime mtime;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

struct ImageSummary {
  uint64_t image_bytes = 0;
  uint64_t blocks = 0;       // image_bytes / 4096
  uint64_t data_blocks = 0;  // file contents (including those of replaced files)
  uint64_t directory_blocks = 0;
  // Inodes, xattrs and inline data: symlink targets, block maps, directories' and files' last
  // blocks.
  uint64_t metadata_blocks = 0;
  uint64_t inodes = 0;
  uint64_t entries = 0;  // archive entries seen
};

class ImageWriter final : public archive::TarVisitor {
 public:
  // Writes the image into `fd` (duplicated: the caller may close its own), a regular file open
  // for writing; its contents are overwritten from offset 0 and it is truncated to the image's
  // size at Finish(). kInvalidArgument if `fd` is not a regular file; an errno error naming the
  // scratch directory if the scratch file cannot be made there.
  static Result<std::unique_ptr<ImageWriter>> Create(int fd, ImageWriterOptions options = {});
  // Creates (or truncates) the file `path`, mode 0644; the scratch directory defaults to its
  // directory.
  static Result<std::unique_ptr<ImageWriter>> Create(const std::filesystem::path& path,
                                                     ImageWriterOptions options = {});
  ~ImageWriter() override;

  Result<void> OnEntry(const archive::TarEntry& entry) override;
  Result<void> OnData(uint64_t offset, std::string_view data) override;
  Result<void> OnEntryEnd() override;

  // Implicit directories (made only as parents of entries; see above) stand in for whatever the
  // layers below have at their paths, which the writer cannot see: on overlayfs their mode,
  // owner, mtime and xattrs would hide the lower directory's. A caller that knows those layers
  // (the unpacker, once they are committed) gives them the lower attributes before Finish(), as
  // TarApplier does for a directory layer (InheritLowerDirectories below does it from mounted
  // layers).
  //
  // The implicit directories whose lower counterpart can show through: root-relative paths,
  // parents first; the root and anything below a directory this layer makes opaque are left
  // out.
  std::vector<std::string> ImplicitDirectories() const;
  // Gives the implicit directory `path` these attributes; Finish() then keeps its mtime.
  // kNotFound if `path` is not an implicit directory; kInvalidArgument for an xattr EROFS
  // cannot store (trusted.overlay.* is dropped). Sticky like the other errors.
  Result<void> InheritDirectory(std::string_view path, const InheritedDirectory& attributes);

  // Writes directories, inodes and the superblock; the image is complete when it returns.
  // Call once, after the last entry. kFailedPrecondition if an entry is still open.
  Result<ImageSummary> Finish();

 private:
  class Impl;
  explicit ImageWriter(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

// Gives each of `writer`'s implicit directories what the merged overlay view of `lower_dirs`
// (layer directories or layer mounts, topmost first) shows at its path
// (archive::FindLowerDirectory): mode, mtime, xattrs, and the owner when `preserve_ownership`.
// Returns how many directories inherited; errno errors name the lower directory.
Result<size_t> InheritLowerDirectories(ImageWriter& writer,
                                       const std::vector<std::filesystem::path>& lower_dirs,
                                       bool preserve_ownership);

}  // namespace berth::erofs
