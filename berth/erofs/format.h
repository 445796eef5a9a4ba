// File: berth/erofs/format.h
//
// The parts of the EROFS on-disk format that berth writes (uncompressed images only), as
// constants and little-endian encoders. Offsets and values follow the kernel's
// Documentation/filesystems/erofs.rst and erofs-utils' include/erofs_fs.h. Internal to
// berth/erofs: callers use image_writer.h.
//
// Image layout written by ImageWriter, in 4096-byte blocks:
//   block 0            zeros, with the 128-byte superblock at byte 1024 (written last)
//   blocks 1..         file contents, block-aligned, in archive order
//   then               directory blocks (dirents and names), but for a directory's last block
//                      when it fits after the inode
//   meta_blkaddr..     inodes, each followed by its inline xattrs and then: a symlink's target,
//                      a directory's last block, or a chunk-based file's block map; the root
//                      inode first (nid 0), since the superblock stores the root nid in 16 bits
#pragma once

#include <cstdint>
#include <cstring>

namespace berth::erofs::format {

inline constexpr uint32_t kBlockBits = 12;
inline constexpr uint32_t kBlockSize = 1u << kBlockBits;

inline constexpr uint32_t kSuperBlockOffset = 1024;
inline constexpr uint32_t kSuperBlockSize = 128;
inline constexpr uint32_t kMagic = 0xE0F5E1E2;
inline constexpr uint32_t kFeatureIncompatChunkedFile = 0x4;
// Superblock fields berth writes, as byte offsets inside the superblock.
inline constexpr uint32_t kSbMagic = 0;             // le32
inline constexpr uint32_t kSbBlockBits = 12;        // u8
inline constexpr uint32_t kSbRootNid = 14;          // le16
inline constexpr uint32_t kSbInodes = 16;           // le64
inline constexpr uint32_t kSbBuildTime = 24;        // le64
inline constexpr uint32_t kSbBuildTimeNsec = 32;    // le32
inline constexpr uint32_t kSbBlocks = 36;           // le32
inline constexpr uint32_t kSbMetaBlockAddr = 40;    // le32
inline constexpr uint32_t kSbFeatureIncompat = 80;  // le32

// Inodes are addressed by nid: (byte offset - meta_blkaddr * block size) / 32.
inline constexpr uint32_t kInodeSlotSize = 32;
inline constexpr uint32_t kCompactInodeSize = 32;
inline constexpr uint32_t kExtendedInodeSize = 64;

// i_format: bit 0 is the inode version (compact/extended), bits 1-3 the data layout.
inline constexpr uint16_t kVersionCompact = 0;
inline constexpr uint16_t kVersionExtended = 1;
inline constexpr uint16_t kLayoutFlatPlain = 0;
inline constexpr uint16_t kLayoutFlatInline = 2;
inline constexpr uint16_t kLayoutChunkBased = 4;
inline constexpr uint16_t InodeFormat(uint16_t version, uint16_t layout) {
  return static_cast<uint16_t>(version | (layout << 1));
}

// Chunk-based files: i_u holds the chunk format, whose low 5 bits are log2(chunk size / block
// size); without the index flag, a 4-byte block address per chunk follows the inode's xattrs,
// kNullBlock for a hole.
inline constexpr uint32_t kChunkBlockBitsMask = 0x1f;
inline constexpr uint32_t kBlockMapEntrySize = 4;
inline constexpr uint32_t kNullBlock = 0xffffffff;

// Directory entries: 12 bytes each (nid le64, nameoff le16, file type u8, reserved u8), all
// of a block's entries first, then their names without terminators.
inline constexpr uint32_t kDirentSize = 12;
inline constexpr uint32_t kMaxNameLength = 255;
inline constexpr uint8_t kFileTypeRegular = 1;
inline constexpr uint8_t kFileTypeDirectory = 2;
inline constexpr uint8_t kFileTypeCharDevice = 3;
inline constexpr uint8_t kFileTypeBlockDevice = 4;
inline constexpr uint8_t kFileTypeFifo = 5;
inline constexpr uint8_t kFileTypeSocket = 6;
inline constexpr uint8_t kFileTypeSymlink = 7;

// Inline xattrs: a 12-byte body header (name filter le32, shared count u8, 7 reserved), then
// entries (name length u8, name index u8, value size le16, name suffix, value), each padded to
// 4 bytes. i_xattr_icount = (body size - 12) / 4 + 1.
inline constexpr uint32_t kXattrBodyHeaderSize = 12;
inline constexpr uint32_t kXattrEntryHeaderSize = 4;
inline constexpr uint8_t kXattrIndexUser = 1;
inline constexpr uint8_t kXattrIndexPosixAclAccess = 2;
inline constexpr uint8_t kXattrIndexPosixAclDefault = 3;
inline constexpr uint8_t kXattrIndexTrusted = 4;
inline constexpr uint8_t kXattrIndexSecurity = 6;

inline void PutLe16(char* at, uint16_t value) {
  for (int i = 0; i < 2; ++i) at[i] = static_cast<char>(value >> (8 * i));
}
inline void PutLe32(char* at, uint32_t value) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<char>(value >> (8 * i));
}
inline void PutLe64(char* at, uint64_t value) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<char>(value >> (8 * i));
}

inline uint64_t GetLe(const char* at, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(at[i]);
  return value;
}

// The kernel's "new" 32-bit device number encoding (new_encode_dev), which EROFS stores.
inline uint32_t EncodeDevice(uint32_t major, uint32_t minor) {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
}

inline constexpr uint64_t RoundUp(uint64_t value, uint64_t unit) {
  return (value + unit - 1) / unit * unit;
}

}  // namespace berth::erofs::format
