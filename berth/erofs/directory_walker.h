// File: berth/erofs/directory_walker.h
//
// WalkDirectory describes a directory tree as the tar entry stream a layer would carry, so that
// an ImageWriter (or any other archive::TarVisitor) can turn the tree into a layer: it is how the
// erofs snapshotter commits the upper directory a container (or a test) wrote into.
//
//   BERTH_ASSIGN_OR_RETURN(auto writer, ImageWriter::Create(image_path));
//   BERTH_RETURN_IF_ERROR(WalkDirectory(upper_dir, *writer));
//   BERTH_ASSIGN_OR_RETURN(ImageSummary summary, writer->Finish());
//
// What the visitor sees, in a depth-first walk with each directory's names sorted (so the same
// tree always gives the same stream), the root itself left out:
//   - directories, regular files (their contents through OnData, in chunks, from offset 0),
//     symlinks, character and block devices and FIFOs, with mode (07777), uid, gid, mtime to the
//     nanosecond and every xattr the filesystem lists, except trusted.overlay.* and
//     user.overlay.* (overlayfs's own bookkeeping);
//   - a second name of an inode (st_nlink > 1, not a directory) as a kHardlink entry naming the
//     first name met;
//   - overlayfs whiteouts translated back to the tar form: a 0/0 character device <name> becomes
//     ".wh.<name>", and a directory carrying trusted.overlay.opaque=y (or user.overlay.opaque=y)
//     is followed by its "<dir>/.wh..wh..opq" entry;
//   - sockets are skipped (a tar stream cannot hold them).
// Paths are relative ("etc/passwd"). The tree must not change during the walk.
//
// Errors: an errno error naming the path that could not be read; any visitor error, unchanged.
// Blocking: reads the whole tree. Thread safety: a free function; one walk per visitor at a time.
#pragma once

#include <filesystem>

#include "berth/archive/tar_reader.h"
#include "berth/base/result.h"

namespace berth::erofs {

Result<void> WalkDirectory(const std::filesystem::path& root, archive::TarVisitor& visitor);

}  // namespace berth::erofs
