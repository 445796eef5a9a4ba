#include "berth/peers/token_bucket.h"

#include <gtest/gtest.h>

namespace berth::peers {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// Waits are computed in floating point: equal to within a microsecond.
::testing::AssertionResult WaitIs(nanoseconds actual, nanoseconds expected) {
  if (std::chrono::abs(actual - expected) <= std::chrono::microseconds(1)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "waits " << actual.count() << " ns, expected " << expected.count() << " ns";
}

// A clock the test moves by hand.
struct ManualClock {
  std::chrono::steady_clock::time_point now{std::chrono::seconds(1000)};
  std::function<std::chrono::steady_clock::time_point()> Fn() {
    return [this] { return now; };
  }
};

TEST(TokenBucketTest, AFullBucketSendsItsBurstAtOnce) {
  ManualClock clock;
  TokenBucket bucket({.rate = 1000, .burst = 500, .now = clock.Fn()});
  EXPECT_TRUE(WaitIs(bucket.Take(200), nanoseconds(0)));
  EXPECT_TRUE(WaitIs(bucket.Take(300), nanoseconds(0)));
}

TEST(TokenBucketTest, DebtIsPaidByWaitingAtTheRate) {
  ManualClock clock;
  TokenBucket bucket({.rate = 1000, .burst = 500, .now = clock.Fn()});
  EXPECT_TRUE(WaitIs(bucket.Take(500), nanoseconds(0)));
  // Empty: 100 bytes need 100 ms of refill.
  EXPECT_TRUE(WaitIs(bucket.Take(100), milliseconds(100)));
  // A second caller meanwhile waits behind the first one's debt: 300 bytes owed, 300 ms.
  EXPECT_TRUE(WaitIs(bucket.Take(200), milliseconds(300)));
  // After the 300 ms the debt is paid and the bucket is empty again.
  clock.now += milliseconds(300);
  EXPECT_TRUE(WaitIs(bucket.Take(50), milliseconds(50)));
}

TEST(TokenBucketTest, RefillStopsAtTheBurst) {
  ManualClock clock;
  TokenBucket bucket({.rate = 1000, .burst = 500, .now = clock.Fn()});
  EXPECT_TRUE(WaitIs(bucket.Take(500), nanoseconds(0)));
  clock.now += std::chrono::seconds(60);  // idle for a minute: still only 500 tokens
  EXPECT_TRUE(WaitIs(bucket.Take(500), nanoseconds(0)));
  EXPECT_TRUE(WaitIs(bucket.Take(1000), milliseconds(1000)));
}

TEST(TokenBucketTest, AChunkLargerThanTheBurstIsSentAfterItsTime) {
  ManualClock clock;
  TokenBucket bucket({.rate = 1 << 20, .burst = 64 << 10, .now = clock.Fn()});
  // 4 MiB at 1 MiB/s from a full 64 KiB bucket: (4 MiB - 64 KiB) / 1 MiB/s.
  EXPECT_TRUE(WaitIs(bucket.Take(4 << 20), milliseconds(3937) + std::chrono::microseconds(500)));
}

TEST(TokenBucketTest, TheRateHoldsOverManyChunks) {
  ManualClock clock;
  TokenBucket bucket({.rate = 10'000, .burst = 1'000, .now = clock.Fn()});
  // A sender that sleeps what Take says: 100 chunks of 1,000 bytes take 9.9 s at 10 kB/s after
  // the first burst.
  const auto start = clock.now;
  for (int i = 0; i < 100; ++i) clock.now += bucket.Take(1'000);
  EXPECT_TRUE(WaitIs(clock.now - start, milliseconds(9900)));
}

}  // namespace
}  // namespace berth::peers
