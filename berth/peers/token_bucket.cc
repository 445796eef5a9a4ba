#include "berth/peers/token_bucket.h"

#include <algorithm>

#include "berth/base/check.h"

namespace berth::peers {

TokenBucket::TokenBucket(TokenBucketOptions options)
    : options_(std::move(options)),
      tokens_(static_cast<double>(options_.burst)),
      refilled_at_(options_.now()) {
  BERTH_CHECK(options_.rate > 0 && options_.burst > 0) << "a token bucket needs a rate and a burst";
}

std::chrono::nanoseconds TokenBucket::Take(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  const auto now = options_.now();
  const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
  if (elapsed > 0) {
    tokens_ = std::min(static_cast<double>(options_.burst),
                       tokens_ + elapsed * static_cast<double>(options_.rate));
    refilled_at_ = now;
  }
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  const double seconds = -tokens_ / static_cast<double>(options_.rate);
  return std::chrono::ceil<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
}

}  // namespace berth::peers
