// File: berth/service/observer.h
//
// ImageServiceObserver hears what the image service does, for counting (berthd's metrics,
// berth/metrics/daemon_metrics.h): pulls as they start and end, layers as they are unpacked,
// pulls disk admission refuses, and garbage collections. ImageServiceOptions::observer may be
// null; then nothing is reported.
//
// Thread safety: called from the threads of every pull and collection at once; implementations
// must be thread-safe and cheap (no I/O, no blocking).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "berth/gc/collector.h"

namespace berth::service {

class ImageServiceObserver {
 public:
  virtual ~ImageServiceObserver() = default;

  // ImageService::Pull was called (each request, joined or not).
  virtual void PullStarted() = 0;
  // That Pull returned: `code` is "OK" or the error's gRPC code name (ErrorCodeName), `elapsed`
  // its wall time.
  virtual void PullDone(std::string_view code, std::chrono::steady_clock::duration elapsed) = 0;
  // A layer was written and its diffID verified (unpack::LayerEvent::kApplied): `bytes`
  // uncompressed, `elapsed` since the layer's download was planned.
  virtual void LayerUnpacked(uint64_t bytes, std::chrono::steady_clock::duration elapsed) = 0;
  // Disk admission refused a pull (the disk cannot hold the image and keep its reserve).
  virtual void AdmissionRefused() = 0;
  // A garbage collection (not a dry run) ended with `report`.
  virtual void Collected(const gc::CollectReport& report) = 0;
};

}  // namespace berth::service
