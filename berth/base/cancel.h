// File: berth/base/cancel.h
//
// CancelToken lets a caller stop work it started: a gRPC client that went away, a deadline, a
// SIGTERM. Long operations poll cancelled() between steps (each network read, each file) and
// return kCancelled / kDeadlineExceeded via Check().
//
// Thread safety: Cancel() and the queries may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

#include "berth/base/result.h"

namespace berth {

class CancelToken {
 public:
  using Clock = std::chrono::steady_clock;

  CancelToken() = default;
  explicit CancelToken(Clock::time_point deadline) : deadline_(deadline) {}
  // A token that is also cancelled when `parent` is. `parent` must outlive this token.
  explicit CancelToken(const CancelToken* parent) : parent_(parent) {}
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }

  bool cancelled() const {
    return cancelled_.load(std::memory_order_relaxed) ||
           (deadline_ && Clock::now() >= *deadline_) || (parent_ && parent_->cancelled());
  }

  // Ok while the work may go on; kCancelled after Cancel(), kDeadlineExceeded past the deadline.
  Result<void> Check() const {
    if (cancelled_.load(std::memory_order_relaxed)) {
      return Fail(ErrorCode::kCancelled, "cancelled");
    }
    if (deadline_ && Clock::now() >= *deadline_) {
      return Fail(ErrorCode::kDeadlineExceeded, "deadline exceeded");
    }
    if (parent_ != nullptr) return parent_->Check();
    return Ok();
  }

  // A token that is never cancelled, for callers that have none.
  static const CancelToken& Never() {
    static const CancelToken never;
    return never;
  }

 private:
  std::atomic<bool> cancelled_{false};
  std::optional<Clock::time_point> deadline_;
  const CancelToken* parent_ = nullptr;
};

}  // namespace berth
