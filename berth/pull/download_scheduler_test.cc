#include "berth/pull/download_scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace berth::pull {
namespace {

using ::testing::ElementsAre;

// Polls `done` until it holds or a minute has passed (a stuck scheduler fails the test instead of
// hanging it). The bound is generous on purpose: under the sanitizer suite on two busy cores a
// thread can take seconds to be scheduled, and the tests assert on order, never on time.
template <typename Predicate>
bool WaitFor(Predicate done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Waits until `scheduler` has `count` callers blocked in Acquire(), so that the tests line up
// waiters in a known state before releasing a permit.
bool WaitForWaiting(const DownloadScheduler& scheduler, int count) {
  return WaitFor([&] { return scheduler.stats().waiting == count; });
}

// A thread that acquires a permit and records the order in which permits were granted; it holds
// its permit until Finish().
class Download {
 public:
  Download(DownloadScheduler::Member& member, std::string registry, size_t layer, std::string name,
           std::vector<std::string>& order, std::mutex& order_mutex)
      : thread_([&, registry, layer, name] {
          Result<DownloadScheduler::Permit> permit = member.Acquire(registry, layer, cancel_);
          if (!permit) {
            error_ = permit.error().ToString();
            granted_ = true;
            return;
          }
          {
            std::lock_guard lock(order_mutex);
            order.push_back(name);
          }
          granted_ = true;
          while (!finish_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }) {}
  ~Download() {
    Finish();
    thread_.join();
  }
  void Finish() { finish_ = true; }
  void Cancel() { cancel_.Cancel(); }
  bool granted() const { return granted_; }
  const std::optional<std::string>& error() const { return error_; }
  void Join() { thread_.join(); }

 private:
  CancelToken cancel_;
  std::atomic<bool> finish_{false};
  std::atomic<bool> granted_{false};
  std::optional<std::string> error_;
  std::thread thread_;
};

class DownloadSchedulerTest : public ::testing::Test {
 protected:
  std::vector<std::string> Order() {
    std::lock_guard lock(order_mutex_);
    return order_;
  }
  // Starts a download and waits until it is either running or waiting, so that arrival order
  // is the order of the calls.
  std::unique_ptr<Download> Start(DownloadScheduler& scheduler, DownloadScheduler::Member& member,
                                  std::string registry, size_t layer, std::string name) {
    DownloadSchedulerStats before = scheduler.stats();
    auto download = std::make_unique<Download>(member, std::move(registry), layer, std::move(name),
                                               order_, order_mutex_);
    const bool arrived = WaitFor([&] {
      DownloadSchedulerStats now = scheduler.stats();
      return now.waiting > before.waiting || now.granted > before.granted;
    });
    EXPECT_TRUE(arrived) << "the download never reached the scheduler";
    return download;
  }

  std::mutex order_mutex_;
  std::vector<std::string> order_;
};

TEST_F(DownloadSchedulerTest, GlobalLimitHoldsBackTheRestUntilAPermitIsReturned) {
  DownloadScheduler scheduler({.max_total = 2});
  DownloadScheduler::Member member = scheduler.Join();
  auto a = Start(scheduler, member, "r", 0, "a");
  auto b = Start(scheduler, member, "r", 1, "b");
  auto c = Start(scheduler, member, "r", 2, "c");
  ASSERT_TRUE(WaitForWaiting(scheduler, 1));
  EXPECT_EQ(scheduler.stats().running, 2);
  EXPECT_FALSE(c->granted());
  a->Finish();
  a.reset();
  ASSERT_TRUE(WaitForWaiting(scheduler, 0));
  b.reset();
  c.reset();
  EXPECT_THAT(Order(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(scheduler.stats().max_running, 2);
  EXPECT_EQ(scheduler.stats().running, 0);
}

TEST_F(DownloadSchedulerTest, WithinAPullLowerLayersGoFirstWhateverTheArrivalOrder) {
  DownloadScheduler scheduler({.max_total = 1});
  DownloadScheduler::Member member = scheduler.Join();
  auto holder = Start(scheduler, member, "r", 9, "holder");
  auto five = Start(scheduler, member, "r", 5, "5");
  auto three = Start(scheduler, member, "r", 3, "3");
  auto four = Start(scheduler, member, "r", 4, "4");
  ASSERT_TRUE(WaitForWaiting(scheduler, 3));
  holder.reset();
  ASSERT_TRUE(WaitForWaiting(scheduler, 2));
  three.reset();
  ASSERT_TRUE(WaitForWaiting(scheduler, 1));
  four.reset();
  ASSERT_TRUE(WaitForWaiting(scheduler, 0));
  five.reset();
  EXPECT_THAT(Order(), ElementsAre("holder", "3", "4", "5"));
}

TEST_F(DownloadSchedulerTest, PullsAreServedRoundRobinNotInArrivalOrder) {
  DownloadScheduler scheduler({.max_total = 1});
  DownloadScheduler::Member first = scheduler.Join();
  DownloadScheduler::Member second = scheduler.Join();
  DownloadScheduler::Member third = scheduler.Join();
  auto holder = Start(scheduler, first, "r", 0, "first-0");
  // The first pull queues three layers before the others queue anything: FIFO would serve all
  // of them first.
  std::vector<std::unique_ptr<Download>> queued;
  queued.push_back(Start(scheduler, first, "r", 1, "first-1"));
  queued.push_back(Start(scheduler, first, "r", 2, "first-2"));
  queued.push_back(Start(scheduler, first, "r", 3, "first-3"));
  queued.push_back(Start(scheduler, second, "r", 0, "second-0"));
  queued.push_back(Start(scheduler, second, "r", 1, "second-1"));
  queued.push_back(Start(scheduler, third, "r", 0, "third-0"));
  ASSERT_TRUE(WaitForWaiting(scheduler, 6));
  holder.reset();
  // Finish whichever download runs, one at a time, until all have run.
  for (int left = 5; left >= 0; --left) {
    ASSERT_TRUE(WaitForWaiting(scheduler, left));
    const bool finished = WaitFor([&] {
      for (auto& download : queued) {
        if (download && download->granted()) {
          download.reset();
          return true;
        }
      }
      return false;
    });
    ASSERT_TRUE(finished);
  }
  EXPECT_THAT(Order(), ElementsAre("first-0", "second-0", "third-0", "first-1", "second-1",
                                   "first-2", "first-3"));
  EXPECT_EQ(scheduler.stats().max_running, 1);
}

TEST_F(DownloadSchedulerTest, PerRegistryLimitLetsOtherRegistriesThrough) {
  DownloadScheduler scheduler({.max_total = 3, .max_per_registry = 1});
  DownloadScheduler::Member one = scheduler.Join();
  DownloadScheduler::Member two = scheduler.Join();
  auto a = Start(scheduler, one, "a.example", 0, "a0");
  auto a_next = Start(scheduler, one, "a.example", 1, "a1");
  auto b = Start(scheduler, two, "b.example", 0, "b0");
  // b0 runs although a1 arrived first: a.example is at its limit, b.example is not.
  ASSERT_TRUE(WaitForWaiting(scheduler, 1));
  EXPECT_TRUE(WaitFor([&] { return b->granted(); }));
  EXPECT_FALSE(a_next->granted());
  EXPECT_EQ(scheduler.stats().running, 2);
  a.reset();
  ASSERT_TRUE(WaitForWaiting(scheduler, 0));
  a_next.reset();
  b.reset();
  EXPECT_THAT(Order(), ElementsAre("a0", "b0", "a1"));
}

TEST_F(DownloadSchedulerTest, ManyThreadsNeverExceedTheLimits) {
  DownloadScheduler scheduler({.max_total = 3, .max_per_registry = 2});
  std::atomic<int> running_total{0};
  std::atomic<int> running_a{0};
  std::atomic<int> worst_total{0};
  std::atomic<int> worst_a{0};
  auto raise = [](std::atomic<int>& worst, int value) {
    int seen = worst.load();
    while (value > seen && !worst.compare_exchange_weak(seen, value)) {
    }
  };
  std::vector<std::thread> pulls;
  for (int p = 0; p < 6; ++p) {
    pulls.emplace_back([&, p] {
      DownloadScheduler::Member member = scheduler.Join();
      std::vector<std::thread> workers;
      for (int w = 0; w < 3; ++w) {
        workers.emplace_back([&, p, w] {
          for (int layer = w; layer < 12; layer += 3) {
            std::string registry = p % 2 == 0 ? "a" : "b";
            Result<DownloadScheduler::Permit> permit =
                member.Acquire(registry, static_cast<size_t>(layer), CancelToken::Never());
            ASSERT_TRUE(permit);
            raise(worst_total, ++running_total);
            if (registry == "a") raise(worst_a, ++running_a);
            std::this_thread::yield();
            if (registry == "a") --running_a;
            --running_total;
          }
        });
      }
      for (std::thread& worker : workers) worker.join();
    });
  }
  for (std::thread& pull : pulls) pull.join();
  EXPECT_LE(worst_total.load(), 3);
  EXPECT_LE(worst_a.load(), 2);
  EXPECT_LE(scheduler.stats().max_running, 3);
  EXPECT_EQ(scheduler.stats().granted, 6u * 12u);
  EXPECT_EQ(scheduler.stats().running, 0);
}

TEST_F(DownloadSchedulerTest, CancelledWaiterLeavesWithoutAPermit) {
  DownloadScheduler scheduler({.max_total = 1});
  DownloadScheduler::Member member = scheduler.Join();
  auto holder = Start(scheduler, member, "r", 0, "holder");
  auto waiting = Start(scheduler, member, "r", 1, "waiting");
  ASSERT_TRUE(WaitForWaiting(scheduler, 1));
  waiting->Cancel();
  ASSERT_TRUE(WaitForWaiting(scheduler, 0));
  ASSERT_TRUE(WaitFor([&] { return waiting->granted(); }));
  ASSERT_TRUE(waiting->error().has_value());
  EXPECT_THAT(*waiting->error(), ::testing::HasSubstr("cancelled"));
  EXPECT_EQ(scheduler.stats().running, 1);
  holder.reset();
  waiting.reset();
  EXPECT_THAT(Order(), ElementsAre("holder"));
  EXPECT_EQ(scheduler.stats().running, 0);
}

TEST_F(DownloadSchedulerTest, ZeroMeansNoLimit) {
  DownloadScheduler scheduler({});
  DownloadScheduler::Member member = scheduler.Join();
  std::vector<DownloadScheduler::Permit> permits;
  for (size_t i = 0; i < 50; ++i) {
    Result<DownloadScheduler::Permit> permit = member.Acquire("r", i, CancelToken::Never());
    ASSERT_TRUE(permit);
    permits.push_back(std::move(*permit));
  }
  EXPECT_EQ(scheduler.stats().running, 50);
  permits.clear();
  EXPECT_EQ(scheduler.stats().running, 0);
}

}  // namespace
}  // namespace berth::pull
