// File: berth/base/cancel.h
//
// CancelToken lets a caller stop work it started: a gRPC client that went away, a deadline, a
// SIGTERM. Long operations poll cancelled() between steps (each network read, each file) and
// return kCancelled / kDeadlineExceeded via Check().
//
// Work that blocks waiting for something (another thread's result, a free download slot, a
// backoff delay) does not poll: Wait() blocks on a condition variable until the awaited
// condition holds or the token fires, and Sleep() until a duration has passed or the token
// fires. Cancel() wakes them at once, a parent's Cancel() wakes its children's waiters, and a
// deadline ends their wait when it passes.
//
// Thread safety: Cancel() and the queries may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>

#include "berth/base/result.h"

namespace berth {

class CancelToken {
 public:
  using Clock = std::chrono::steady_clock;

  CancelToken() = default;
  // Clock::time_point::max() means no deadline.
  explicit CancelToken(Clock::time_point deadline)
      : deadline_(deadline), wait_deadline_(AsDeadline(deadline)) {}
  // A token that is also cancelled when `parent` is (and waits no longer than the parent's
  // deadline). `parent` must outlive this token.
  explicit CancelToken(const CancelToken* parent)
      : parent_(parent),
        wait_deadline_(parent->wait_deadline_),
        follow_parent_(std::in_place, parent->stop_.get_token(), ParentCancelled{this}) {}
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  // Fires the token: every Wait() and Sleep() on it (or on a token made from it) returns.
  void Cancel() {
    cancelled_.store(true, std::memory_order_relaxed);
    stop_.request_stop();
  }

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

  // Blocks on `signal` until `done()` holds (Ok) or the token fires (Check()'s error), whichever
  // comes first; a `done()` that already holds wins over a fired token. As with
  // std::condition_variable: `lock` is held on entry and on return and whenever `done()` runs,
  // and whoever makes `done()` true does so under that mutex and then notifies `signal`.
  template <typename Predicate>
  Result<void> Wait(std::condition_variable_any& signal, std::unique_lock<std::mutex>& lock,
                    Predicate done) const {
    std::stop_token stop = stop_.get_token();
    bool held = wait_deadline_ ? signal.wait_until(lock, stop, *wait_deadline_, done)
                               : signal.wait(lock, stop, done);
    if (held) return Ok();
    if (Result<void> checked = Check(); !checked) return checked;
    // Only Cancel() (here or on an ancestor) stops the wait early, and Check() reports it.
    return Fail(ErrorCode::kCancelled, "cancelled");
  }

  // Returns Ok after `duration`, or Check()'s error as soon as the token fires (or its
  // deadline passes, if that comes first).
  Result<void> Sleep(Clock::duration duration) const {
    Clock::time_point until = Clock::now() + duration;
    if (wait_deadline_ && *wait_deadline_ < until) until = *wait_deadline_;
    std::mutex mutex;
    std::condition_variable_any signal;
    std::unique_lock lock(mutex);
    signal.wait_until(lock, stop_.get_token(), until, [] { return false; });
    return Check();
  }

  // A token that is never cancelled, for callers that have none.
  static const CancelToken& Never() {
    static const CancelToken never;
    return never;
  }

 private:
  // Cancels the child when its parent is cancelled (run by the parent's Cancel()).
  struct ParentCancelled {
    CancelToken* child;
    void operator()() const { child->stop_.request_stop(); }
  };

  static std::optional<Clock::time_point> AsDeadline(Clock::time_point deadline) {
    if (deadline == Clock::time_point::max()) return std::nullopt;
    return deadline;
  }

  std::atomic<bool> cancelled_{false};
  std::optional<Clock::time_point> deadline_;
  const CancelToken* parent_ = nullptr;
  // Wakes waiters: stopped by Cancel() and, through follow_parent_, by the parent's.
  std::stop_source stop_;
  // The earliest deadline of this token and its ancestors: where a Wait() gives up.
  std::optional<Clock::time_point> wait_deadline_;
  // Declared after stop_, which it uses, so it is destroyed first.
  std::optional<std::stop_callback<ParentCancelled>> follow_parent_;
};

}  // namespace berth
