// File: berth/pull/schema1_converter.h
//
// Converts a Docker schema1 image into a Docker schema2 image in the content store, as
// containerd 1.x's schema1 converter does on pull:
//
//   1. every distinct blob of a non-empty layer is fetched into the store (by the caller's
//      FetchBlobFn; the blob's size is unknown, so its descriptor has size -1);
//   2. each one is read back from the store, decompressed and hashed: its diffID. Layers are
//      gzip; one that does not start with the gzip magic is taken as an uncompressed tar and
//      listed as such (application/vnd.docker.image.rootfs.diff.tar), as containerd does;
//   3. a config is built from the newest v1Compatibility (berth/image/schema1.h) and stored;
//   4. a schema2 manifest naming that config and the layers (oldest first) is stored.
//
// The result is an ordinary schema2 image: the image ID is the generated config's digest. That
// digest, and the generated manifest's, exist only on this host, so a converted image must not
// be given a repo digest (PulledImage::converted_schema1 says so).
//
// Thread safety: ConvertSchema1 may run concurrently with other pulls on the same store; it
// calls `fetch` from up to `max_concurrent` threads at once.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "berth/base/cancel.h"
#include "berth/base/result.h"
#include "berth/content/store.h"
#include "berth/digest/digest.h"
#include "berth/image/descriptor.h"
#include "berth/image/schema1.h"

namespace berth::pull {

// Puts the blob named by `descriptor` (size -1: unknown) into the store, verified, or fails.
// Honours `cancel` (cancelled when another layer of the conversion failed).
using FetchBlobFn =
    std::function<Result<void>(const image::Descriptor& descriptor, const CancelToken& cancel)>;

struct ConvertedSchema1 {
  image::Descriptor manifest;  // the generated Docker schema2 manifest, in the store
  std::string manifest_bytes;
  image::Descriptor config;  // the generated config, in the store: its digest is the image ID
};

// Converts the schema1 manifest `document`. Fetches at most `max_concurrent` blobs at once.
// Blocks on `fetch` and on disk I/O; honours `cancel`. Errors: those of ParseSchema1Manifest
// (kInvalidArgument, kResourceExhausted), of `fetch` (with the blob as context), kInvalidArgument
// or kDataLoss for a layer that does not decompress as gzip, kCancelled.
Result<ConvertedSchema1> ConvertSchema1(content::Store& store, std::string_view document,
                                        const FetchBlobFn& fetch, int max_concurrent,
                                        const CancelToken& cancel);

// The diffID of the committed blob `digest`: sha256 of its contents decompressed as
// `media_type` says (gzip, zstd or none). Reads the blob from the store in chunks.
// kNotFound if it is not there; the decompressor's errors (kInvalidArgument, kDataLoss) for
// bad data; kCancelled.
Result<Digest> DiffIdOfStoredBlob(const content::Store& store, const Digest& digest,
                                  std::string_view media_type, const CancelToken& cancel);

}  // namespace berth::pull
