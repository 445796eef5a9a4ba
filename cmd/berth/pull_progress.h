// File: cmd/berth/pull_progress.h
//
// How `berth pull` shows a pull while it runs. Every view reads the same thing: the image
// service's progress board (service::PullStatus per pull: per blob the bytes fetched of the
// total, the bytes unpacked, and a state), which the backend delivers in both modes (berthd's
// Admin.PullProgress stream, or the in-process board in embedded mode; backend.h).
//
//   LiveView  a terminal: one line per blob (manifest, config, each layer: fetched / total,
//             unpacked, rate, state), redrawn in place at most ten times a second, then a
//             summary line. Lines are cut to the terminal's width, so none wraps and the
//             redraw stays in place.
//   LineView  not a terminal (or --progress): a line when a blob is fetched, found present or
//             unpacked, a line for a failure, and the summary.
//   JsonView  --json: one JSON object per line on stdout: {"event":"blob",...} when a blob's
//             state changes or, while it downloads or unpacks, at most four times a second;
//             then {"event":"pulled","reference","image_id","seconds","fetched_bytes",
//             "unpacked_bytes"} or {"event":"failed","error"}.
//
// Thread safety: Update() and Finish() may be called from different threads (one at a time is
// not required: each view serializes its own output).
#pragma once

#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "berth/service/image_service.h"
#include "berth/service/pull_progress.h"

namespace berth::cli {

class ProgressView {
 public:
  virtual ~ProgressView() = default;
  // The pulls of this command as the board shows them now (usually one).
  virtual void Update(const std::vector<service::PullStatus>& pulls) = 0;
  // The pull ended with `result` after `seconds`.
  virtual void Finish(const Result<service::PullResult>& result, double seconds) = 0;
};

// `terminal` is the stream drawn on (stderr); its width is read from `terminal_fd`.
std::unique_ptr<ProgressView> MakeLiveView(std::FILE* terminal, int terminal_fd);
std::unique_ptr<ProgressView> MakeLineView(std::FILE* out);
std::unique_ptr<ProgressView> MakeJsonView(std::ostream& out);

}  // namespace berth::cli
