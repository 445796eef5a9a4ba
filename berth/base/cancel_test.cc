#include "berth/base/cancel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

namespace berth {
namespace {

using namespace std::chrono_literals;
using Clock = CancelToken::Clock;

// A waiter that nobody notifies: only the token can end its wait.
std::future<Result<void>> WaitForever(const CancelToken& token) {
  return std::async(std::launch::async, [&token] {
    std::mutex mutex;
    std::condition_variable_any signal;
    std::unique_lock lock(mutex);
    return token.Wait(signal, lock, [] { return false; });
  });
}

TEST(CancelTokenTest, WaitReturnsOkOnceTheConditionHolds) {
  CancelToken token;
  std::mutex mutex;
  std::condition_variable_any signal;
  bool ready = false;
  std::thread setter([&] {
    std::this_thread::sleep_for(10ms);
    {
      std::lock_guard lock(mutex);
      ready = true;
    }
    signal.notify_all();
  });
  std::unique_lock lock(mutex);
  EXPECT_TRUE(token.Wait(signal, lock, [&] { return ready; }));
  EXPECT_TRUE(lock.owns_lock());
  lock.unlock();
  setter.join();
}

TEST(CancelTokenTest, CancelWakesAWaiter) {
  CancelToken token;
  auto waiter = WaitForever(token);
  EXPECT_EQ(waiter.wait_for(50ms), std::future_status::timeout);
  token.Cancel();
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  Result<void> waited = waiter.get();
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().code(), ErrorCode::kCancelled);
}

TEST(CancelTokenTest, ParentCancelWakesAChildsWaiter) {
  CancelToken parent;
  CancelToken child(&parent);
  CancelToken grandchild(&child);
  auto waiter = WaitForever(grandchild);
  EXPECT_EQ(waiter.wait_for(50ms), std::future_status::timeout);
  parent.Cancel();
  ASSERT_EQ(waiter.wait_for(10s), std::future_status::ready);
  Result<void> waited = waiter.get();
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().code(), ErrorCode::kCancelled);
  EXPECT_TRUE(child.cancelled());
}

TEST(CancelTokenTest, ChildCancelLeavesTheParentRunning) {
  CancelToken parent;
  CancelToken child(&parent);
  child.Cancel();
  EXPECT_TRUE(child.cancelled());
  EXPECT_FALSE(parent.cancelled());
  EXPECT_TRUE(parent.Check());
}

TEST(CancelTokenTest, ATokenMadeFromACancelledParentIsCancelled) {
  CancelToken parent;
  parent.Cancel();
  CancelToken child(&parent);
  Result<void> waited = WaitForever(child).get();
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().code(), ErrorCode::kCancelled);
}

TEST(CancelTokenTest, DeadlineEndsAWait) {
  CancelToken token(Clock::now() + 30ms);
  auto started = Clock::now();
  Result<void> waited = WaitForever(token).get();
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_GE(Clock::now() - started, 30ms);

  CancelToken parent(Clock::now() + 30ms);
  CancelToken child(&parent);
  Result<void> child_waited = WaitForever(child).get();
  ASSERT_FALSE(child_waited);
  EXPECT_EQ(child_waited.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST(CancelTokenTest, ConditionThatHoldsWinsOverAFiredToken) {
  CancelToken token;
  token.Cancel();
  std::mutex mutex;
  std::condition_variable_any signal;
  std::unique_lock lock(mutex);
  EXPECT_TRUE(token.Wait(signal, lock, [] { return true; }));
}

TEST(CancelTokenTest, MaxDeadlineMeansNone) {
  CancelToken token(Clock::time_point::max());
  EXPECT_FALSE(token.cancelled());
  EXPECT_TRUE(token.Sleep(1ms));
  auto waiter = WaitForever(token);
  EXPECT_EQ(waiter.wait_for(50ms), std::future_status::timeout);
  token.Cancel();
  EXPECT_EQ(waiter.get().error().code(), ErrorCode::kCancelled);
}

TEST(CancelTokenTest, SleepSleepsUnlessTheTokenFires) {
  auto started = Clock::now();
  EXPECT_TRUE(CancelToken::Never().Sleep(20ms));
  EXPECT_GE(Clock::now() - started, 20ms);

  CancelToken token;
  auto sleeper = std::async(std::launch::async, [&] { return token.Sleep(1h); });
  EXPECT_EQ(sleeper.wait_for(50ms), std::future_status::timeout);
  token.Cancel();
  ASSERT_EQ(sleeper.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(sleeper.get().error().code(), ErrorCode::kCancelled);

  CancelToken deadline(Clock::now() + 20ms);
  Result<void> slept = deadline.Sleep(1h);
  ASSERT_FALSE(slept);
  EXPECT_EQ(slept.error().code(), ErrorCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace berth
