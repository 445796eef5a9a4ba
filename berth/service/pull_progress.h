// File: berth/service/pull_progress.h
//
// PullProgressBoard is where the running pulls of one ImageService show how far they are: per
// blob the bytes fetched of the total, per layer the bytes unpacked, and a state (waiting →
// downloading → unpacking → committed, or cached when nothing had to be done). ImageService
// writes to it from its pulls' progress callbacks; readers (berthd's Admin.PullProgress) take
// views and wait for the next change.
//
// A finished pull stays on the board (state kDone or kFailed) among the last kKeptFinished
// finished pulls, so a reader that was waiting for it still sees how it ended.
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/error.h"
#include "berth/image/descriptor.h"
#include "berth/pull/puller.h"
#include "berth/unpack/layer_progress.h"

namespace berth::service {

// Called from the pull's threads with what the unpacker did with each layer of a pull.
using LayerUnpackFn = unpack::LayerProgressFn;

enum class BlobState { kWaiting, kDownloading, kUnpacking, kCommitted, kCached };
enum class PullState { kRunning, kDone, kFailed };

std::string_view BlobStateName(BlobState state);  // "waiting", "downloading", …
std::string_view PullStateName(PullState state);  // "running", "done", "failed"

struct BlobStatus {
  std::string digest;  // "sha256:…"
  std::string media_type;
  bool layer = false;  // one of the manifest's layers (unpacked), not the manifest or config
  int64_t fetched_bytes = 0;
  int64_t total_bytes = 0;
  uint64_t unpacked_bytes = 0;
  BlobState state = BlobState::kWaiting;
};

struct PullStatus {
  uint64_t id = 0;        // unique on this board, increasing with each Start
  std::string reference;  // as given to Start (ImageService: normalized)
  PullState state = PullState::kRunning;
  std::string error;              // kFailed only
  std::vector<BlobStatus> blobs;  // in the order first heard of (layers in manifest order)
};

// The board at one moment.
struct PullBoardView {
  uint64_t version = 0;           // grows with every change
  uint64_t next_id = 1;           // the id the next Start will return
  std::vector<PullStatus> pulls;  // running and recently finished, by id
};

class PullProgressBoard {
 public:
  static constexpr size_t kKeptFinished = 32;

  PullProgressBoard() = default;
  PullProgressBoard(const PullProgressBoard&) = delete;
  PullProgressBoard& operator=(const PullProgressBoard&) = delete;

  // A pull of `reference` starts; returns its id for the calls below.
  uint64_t Start(std::string reference);
  // The manifest is known: its layers, in order (the unpack events' indexes refer to these).
  void SetLayers(uint64_t pull, const std::vector<image::Descriptor>& layers);
  // pull::ProgressFn's report for one blob of `pull`.
  void Fetched(uint64_t pull, const pull::BlobProgress& blob);
  // The unpacker's report for one layer of `pull`.
  void Unpacked(uint64_t pull, const unpack::LayerProgress& layer);
  // The pull ended: with `error` nullptr it succeeded. Calls for an unknown or finished id are
  // ignored.
  void Finish(uint64_t pull, const Error* error);

  PullBoardView View() const;
  // Waits until the board's version is no longer `seen_version` or `timeout` passes, then
  // returns the board as it is (compare its version to tell which happened).
  PullBoardView WaitForChange(uint64_t seen_version, std::chrono::milliseconds timeout) const;

  // A pull::LayerHandler that tells the board the layers at Begin, then forwards every call to
  // `inner`.
  std::unique_ptr<pull::LayerHandler> Observe(uint64_t pull,
                                              std::unique_ptr<pull::LayerHandler> inner);

 private:
  struct Entry {
    PullStatus status;
    std::vector<size_t> layer_slots;  // manifest layer index → index in status.blobs
  };
  // REQUIRES: mutex_ held.
  Entry* FindRunning(uint64_t pull);
  BlobStatus& SlotFor(Entry& entry, const std::string& digest);
  void Changed();

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  uint64_t version_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Entry> pulls_;
  std::deque<uint64_t> finished_;  // oldest first
};

}  // namespace berth::service
