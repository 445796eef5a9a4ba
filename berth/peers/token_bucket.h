// File: berth/peers/token_bucket.h
//
// TokenBucket paces bytes to a rate shared by every caller: the peer endpoint's
// peers.max_upload_rate, one bucket for all connections. It holds up to `burst` tokens (bytes),
// refilled at `rate` per second. Take(n) always succeeds at once and returns how long the
// caller must wait before sending those n bytes: the bucket may go into debt, and the debt is
// paid by waiting, so callers sending at the same time share the rate between them (each one's
// wait grows with what the others took first) and a chunk larger than the burst is still sent.
//
//   TokenBucket bucket({.rate = 100 << 20, .burst = 1 << 20});
//   std::this_thread::sleep_for(bucket.Take(chunk.size()));  // then send the chunk
//
// The clock is injected (tests drive it by hand); the bucket itself never sleeps.
//
// Thread safety: Take() may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace berth::peers {

struct TokenBucketOptions {
  uint64_t rate = 0;   // bytes per second; REQUIRES: > 0
  uint64_t burst = 0;  // bytes the bucket holds when full (it starts full); REQUIRES: > 0
  std::function<std::chrono::steady_clock::time_point()> now = &std::chrono::steady_clock::now;
};

class TokenBucket {
 public:
  explicit TokenBucket(TokenBucketOptions options);

  // Takes `bytes` tokens and returns how long to wait before sending them: zero while the
  // bucket holds enough, else the time the refill needs to pay the debt.
  std::chrono::nanoseconds Take(uint64_t bytes);

 private:
  const TokenBucketOptions options_;
  std::mutex mutex_;
  double tokens_;  // may be negative: a debt
  std::chrono::steady_clock::time_point refilled_at_;
};

}  // namespace berth::peers
