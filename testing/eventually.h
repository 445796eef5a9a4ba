// File: testing/eventually.h
//
// Eventually polls a condition that another process or thread will make true (a file removed by
// containerd, a log line berthd writes), every 20 ms until it holds or `timeout` has passed.
// Returns whether it held. The timeout bounds a wait; it is never what a test asserts.
#pragma once

#include <chrono>
#include <thread>

namespace berth::testing {

template <typename Condition>
bool Eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace berth::testing
