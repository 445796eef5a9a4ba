// File: berth/erofs/layout.h
//
// The second half of writing an image: once every file's contents are in the image, WriteLayout
// gives the reachable nodes of a Tree their inode numbers (nids) and link counts, then appends
// the directory blocks and the inodes (with inline xattrs, symlink targets, directories' last
// blocks and block maps) and writes the superblock. Internal to berth/erofs (ImageWriter::Finish).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "berth/base/result.h"
#include "berth/erofs/image_file.h"
#include "berth/erofs/tree.h"

namespace berth::erofs {

struct LayoutSummary {
  uint64_t directory_blocks = 0;
  uint64_t metadata_blocks = 0;
  uint64_t inodes = 0;
};

// Appends directories and inodes after the contents already in `image` (which must end on a
// block boundary), then writes the superblock. Sets implicit directories' mtimes (the newest of
// their children, whiteouts excluded) and every reachable node's nlink and nid. Errors:
// kInvalidArgument for a node's xattrs that do not fit an inode (64 KiB values, 255-byte names,
// 256 KiB in all); image I/O errors.
// `tails` is the file holding regular files' inline tails (Node::tail_offset), nullptr if none
// has one.
Result<LayoutSummary> WriteLayout(Tree& tree, ImageFile& image, const ImageFile* tails);

// The most bytes an inode with `xattrs` leaves for inline data in its block (the inode taken as
// extended), 0 if none.
uint64_t InlineRoom(const XattrList& xattrs);

// The size of the inline xattr body holding `xattrs` (0 for none). kInvalidArgument, naming the
// xattr, for a name EROFS has no index for, or when they take more than an inode holds (256 KiB).
Result<uint32_t> XattrBodySize(const XattrList& xattrs);

// Whether a symlink with an xattr body of `xattr_size` bytes can store a `target_size`-byte
// target inline without crossing a block boundary (as the kernel requires).
bool SymlinkFits(uint32_t xattr_size, size_t target_size);

// EROFS's name index for the xattr `name` and the part of the name stored after the prefix,
// or nullopt when EROFS has no index for its namespace.
std::optional<std::pair<uint8_t, std::string_view>> XattrIndex(std::string_view name);

}  // namespace berth::erofs
