#include "berth/base/single_flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace berth {
namespace {

using namespace std::chrono_literals;

// Spins (briefly sleeping) until `condition` holds; false after 10 s.
template <typename Condition>
bool Eventually(Condition condition) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(SingleFlightTest, ConcurrentCallersForOneKeyShareOneRun) {
  SingleFlight<std::string, int> flight;
  constexpr int kJoiners = 8;
  std::atomic<int> runs{0};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto work = [&]() -> Result<int> {
    ++runs;
    released.wait();
    return 42;
  };
  std::vector<std::future<Result<SingleFlight<std::string, int>::Outcome>>> callers;
  callers.push_back(
      std::async(std::launch::async, [&] { return flight.Do("key", work, CancelToken::Never()); }));
  ASSERT_TRUE(Eventually([&] { return runs.load() == 1; }));
  for (int i = 0; i < kJoiners; ++i) {
    callers.push_back(std::async(std::launch::async,
                                 [&] { return flight.Do("key", work, CancelToken::Never()); }));
  }
  ASSERT_TRUE(Eventually([&] { return flight.joined("key") == kJoiners; }));
  release.set_value();

  int led = 0;
  for (auto& caller : callers) {
    auto outcome = caller.get();
    ASSERT_TRUE(outcome) << outcome.error().ToString();
    ASSERT_TRUE(outcome->result);
    EXPECT_EQ(*outcome->result, 42);
    if (outcome->role == FlightRole::kLed) ++led;
  }
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(led, 1);
  EXPECT_EQ(flight.in_flight(), 0u);
}

TEST(SingleFlightTest, JoinedCallersReceiveTheRunsError) {
  SingleFlight<int, void> flight;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto failing = [&]() -> Result<void> {
    released.wait();
    return Fail(ErrorCode::kNotFound, "no such blob");
  };
  auto leader =
      std::async(std::launch::async, [&] { return flight.Do(1, failing, CancelToken::Never()); });
  ASSERT_TRUE(Eventually([&] { return flight.in_flight() == 1; }));
  auto joiner =
      std::async(std::launch::async, [&] { return flight.Do(1, failing, CancelToken::Never()); });
  ASSERT_TRUE(Eventually([&] { return flight.joined(1) == 1; }));
  release.set_value();
  for (auto* caller : {&leader, &joiner}) {
    auto outcome = caller->get();
    ASSERT_TRUE(outcome);
    ASSERT_FALSE(outcome->result);
    EXPECT_EQ(outcome->result.error().code(), ErrorCode::kNotFound);
    EXPECT_EQ(outcome->result.error().message(), "no such blob");
  }
}

TEST(SingleFlightTest, DifferentKeysRunConcurrently) {
  SingleFlight<int, int> flight;
  std::promise<void> b_ran;
  std::shared_future<void> b_done = b_ran.get_future().share();
  // A's work waits for B's: if the keys were serialised this would never finish.
  auto a = std::async(std::launch::async, [&] {
    return flight.Do(
        1,
        [&]() -> Result<int> {
          if (b_done.wait_for(10s) != std::future_status::ready) {
            return Fail(ErrorCode::kDeadlineExceeded, "B never ran");
          }
          return 1;
        },
        CancelToken::Never());
  });
  auto b = flight.Do(
      2,
      [&]() -> Result<int> {
        b_ran.set_value();
        return 2;
      },
      CancelToken::Never());
  ASSERT_TRUE(b && b->result);
  EXPECT_EQ(b->role, FlightRole::kLed);
  auto a_outcome = a.get();
  ASSERT_TRUE(a_outcome && a_outcome->result) << a_outcome->result.error().ToString();
  EXPECT_EQ(*a_outcome->result, 1);
}

TEST(SingleFlightTest, ResultsAreNotCachedAfterTheRunEnds) {
  SingleFlight<int, int> flight;
  int runs = 0;
  for (int i = 0; i < 3; ++i) {
    auto outcome = flight.Do(
        7, [&]() -> Result<int> { return ++runs; }, CancelToken::Never());
    ASSERT_TRUE(outcome && outcome->result);
    EXPECT_EQ(outcome->role, FlightRole::kLed);
    EXPECT_EQ(*outcome->result, i + 1);
  }
}

TEST(SingleFlightTest, AJoinedCallerStopsWaitingWhenItsTokenFires) {
  SingleFlight<int, int> flight;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto work = [&]() -> Result<int> {
    released.wait();
    return 5;
  };
  auto leader =
      std::async(std::launch::async, [&] { return flight.Do(1, work, CancelToken::Never()); });
  ASSERT_TRUE(Eventually([&] { return flight.in_flight() == 1; }));

  CancelToken cancel;
  auto joiner = std::async(std::launch::async, [&] { return flight.Do(1, work, cancel); });
  ASSERT_TRUE(Eventually([&] { return flight.joined(1) == 1; }));
  cancel.Cancel();
  // Woken by the token, not by the run (which is still held).
  ASSERT_EQ(joiner.wait_for(10s), std::future_status::ready);
  auto cancelled = joiner.get();
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code(), ErrorCode::kCancelled);

  CancelToken deadline(std::chrono::steady_clock::now() + 50ms);
  auto late = flight.Do(1, work, deadline);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code(), ErrorCode::kDeadlineExceeded);

  release.set_value();
  auto led = leader.get();
  ASSERT_TRUE(led && led->result);
  EXPECT_EQ(*led->result, 5);
}

}  // namespace
}  // namespace berth
