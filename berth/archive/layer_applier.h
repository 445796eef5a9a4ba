// File: berth/archive/layer_applier.h
//
// LayerApplier applies one image layer blob to a directory in a single streaming pass:
//
//   compressed bytes ─Write()─▶ Decompressor ─▶ sha256 (diffID) ─▶ TarReader ─▶ TarApplier ─▶ fs
//
// or, with ApplyOptions::visitor, ─▶ TarReader ─▶ that visitor (e.g. an erofs::ImageWriter that
// writes the layer as one image file; archive does not know what the visitor does).
//
// It is a push API: the caller (the unpacker) feeds the blob's bytes as they arrive, e.g. from
// the HTTP body sink while the same bytes go to the content store, and calls Finish() at the
// end. Memory stays bounded whatever the layer size (decoder state, one output buffer, and with
// threads one ring per hand-off, ring_bytes each).
//
//   ApplyOptions options{.root = snapshot_dir, .media_type = descriptor.media_type};
//   BERTH_ASSIGN_OR_RETURN(auto applier, LayerApplier::Create(options));
//   for (chunk : body) BERTH_RETURN_IF_ERROR(applier->Write(chunk));
//   BERTH_ASSIGN_OR_RETURN(ApplyResult result, applier->Finish());
//   if (result.diff_id != expected_diff_id) → kDataLoss, discard the snapshot.
//
// The diffID is computed but NOT compared here: the caller owns the expected value (from the
// image config) and must compare, and must discard the directory on any error — a failed apply
// leaves a partially written tree behind.
//
// See decompressor.h, tar_reader.h and tar_applier.h for the formats, limits, error codes and
// the security model (nothing is ever written outside the root).
//
// Threading (ApplyThreading):
//   kSingle        everything on the caller's thread.
//   kTwoThreads    decompression on the caller's thread; hashing + tar parsing + filesystem writes
//                  on an untar worker, fed through a bounded ring of decompressed bytes.
//   kThreeThreads  the caller's thread only copies the compressed bytes into a ring; an inflate
//                  thread decompresses them into the untar worker's ring. Meant for a layer
//                  applying alone whose caller's thread has work of its own (receiving and
//                  storing the blob): inflate, the heaviest stage, then has a core to itself.
// Write() blocks only while the first ring is full (ring_bytes each). A thread's error stops the
// stages before it and surfaces from the next Write() or from Finish(). On a busy machine the
// hand-offs and the extra copies cost more than the overlap gains, which is why the unpacker
// picks the threads per layer (unpack::LayerThreadBudget).
//
// Thread safety: one thread at a time calls Write()/Finish(). Destroying an unfinished applier
// stops its threads (the tree is left partial).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/archive/decompressor.h"
#include "berth/archive/tar_applier.h"
#include "berth/archive/tar_reader.h"
#include "berth/base/result.h"
#include "berth/digest/digest.h"

namespace berth::archive {

enum class ApplyThreading {
  kSingle,        // Everything on the caller's thread.
  kTwoThreads,    // Decompress on the caller's thread, hash + untar on a worker.
  kThreeThreads,  // Copy on the caller's thread, decompress on one worker, hash + untar on another.
};

struct ApplyLimits {
  // Decompressed (tar) bytes; beyond it kResourceExhausted (decompression bomb). 0: no limit.
  uint64_t max_uncompressed_bytes = uint64_t{256} << 30;
  // Members; beyond it kResourceExhausted. 0: no limit.
  uint64_t max_entries = 4'000'000;
  // Longest member name or link target.
  size_t max_path_bytes = 4096;
  // Largest declared size of one member, sparse files included (kInvalidArgument beyond it).
  uint64_t max_entry_bytes = uint64_t{64} << 30;
};

struct ApplyOptions {
  // Where the tar entries go instead of a TarApplier writing under `root`: not owned, must
  // outlive the applier, and is called on the untar thread (the worker with kTwoThreads or
  // kThreeThreads). Null: the entries are applied under `root`. With a visitor, `root`, `root_fd`,
  // `whiteout_mode`, `lower_dirs`, `sync` and `preserve_ownership` are ignored; whatever the
  // visitor makes is the caller's to finish after Finish(); ApplyResult's file_bytes_written and
  // implicit_dirs stay 0 and empty.
  TarVisitor* visitor = nullptr;
  // The directory to apply into (must exist). Ignored when root_fd >= 0.
  std::filesystem::path root;
  // An open directory fd to apply into; not owned (duplicated internally).
  int root_fd = -1;
  // The layer's media type (OCI or Docker; plain, gzip or zstd).
  std::string media_type;
  WhiteoutMode whiteout_mode = WhiteoutMode::kOverlay;
  // Overlay only: lower layer dirs, topmost first: hardlinks to lower-layer files are copied
  // from them, and directories the layer needs but lacks take their attributes from them
  // (tar_applier.h).
  std::vector<std::filesystem::path> lower_dirs;
  ApplyLimits limits;
  SyncPolicy sync = SyncPolicy::kNone;
  bool preserve_ownership = true;
  GzipBackend gzip_backend = GzipBackend::kIsal;
  ApplyThreading threading = ApplyThreading::kSingle;
  // Size of each ring between two threads.
  size_t ring_bytes = 8 << 20;
  // Called on the thread that decompresses (the inflate thread with kThreeThreads, else the
  // caller's) with the bytes the layer has inflated to so far, before the
  // chunk that brings it there is untarred: with the first chunk, then whenever another
  // `inflate_check_interval` bytes have inflated (so a check, e.g. a statvfs, costs nothing per
  // write). An error it returns stops the apply and is returned unchanged by Write() or
  // Finish() (sticky). Empty: never called.
  std::function<Result<void>(uint64_t inflated_bytes)> inflate_check;
  uint64_t inflate_check_interval = 8 << 20;
};

struct ApplyResult {
  // sha256 of the uncompressed tar stream.
  Digest diff_id = Digest::Sha256Of("");
  uint64_t uncompressed_bytes = 0;
  uint64_t compressed_bytes = 0;
  uint64_t entries = 0;
  uint64_t file_bytes_written = 0;
  // Directories the layer needed but did not contain (see tar_applier.h, "Implicit
  // directories"), root-relative, parents first. When ApplyOptions::lower_dirs were given they
  // already carry the lower layers' attributes; otherwise the caller should apply
  // InheritLowerDirectories once the layer's parents are known.
  std::vector<std::string> implicit_dirs;
};

class LayerApplier {
 public:
  // Opens the root and sets up the pipeline. kUnimplemented for an unknown media type,
  // kNotFound for a missing root or lower dir, kInvalidArgument for a `root_fd` that is not a
  // directory (a `root` path that is not one fails with an error naming it).
  static Result<std::unique_ptr<LayerApplier>> Create(const ApplyOptions& options);
  ~LayerApplier();
  LayerApplier(const LayerApplier&) = delete;
  LayerApplier& operator=(const LayerApplier&) = delete;

  // Consumes the next chunk of the blob. Errors are sticky. kFailedPrecondition after Finish().
  Result<void> Write(std::string_view compressed);
  // Ends the stream, finishes the tree (directory times, sync policy) and returns what was
  // applied. kDataLoss if the compressed stream or the tar was truncated. Call once
  // (kFailedPrecondition the second time).
  Result<ApplyResult> Finish();

 private:
  class Pipeline;
  explicit LayerApplier(std::unique_ptr<Pipeline> pipeline);
  std::unique_ptr<Pipeline> pipeline_;
};

// Applies the blob at `blob_path`, read in 1 MiB chunks. kNotFound if it does not exist.
Result<ApplyResult> ApplyLayerFromFile(const std::filesystem::path& blob_path,
                                       const ApplyOptions& options);

}  // namespace berth::archive
