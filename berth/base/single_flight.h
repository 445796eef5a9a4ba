// File: berth/base/single_flight.h
//
// SingleFlight runs at most one operation per key at a time: the first caller for a key runs
// its work (it leads), and callers that arrive for the same key while that work runs wait for
// it and receive a copy of its result (they join) instead of doing the same work again. Once
// the work has returned, the key is free: the next caller leads a new run. Results are not
// cached.
//
//   SingleFlight<Digest, int64_t> downloads;
//   Result<SingleFlight<Digest, int64_t>::Outcome> outcome =
//       downloads.Do(digest, [&] { return Download(digest); }, cancel);
//   if (!outcome) return outcome.error();             // this caller's cancel fired while joined
//   if (outcome->role == FlightRole::kJoined) ...     // someone else's run; maybe check again
//
// A joined caller stops waiting when its own CancelToken fires; the run it joined goes on for
// its leader and the other callers.
//
// Thread safety: Do() may be called from any number of threads. REQUIRES: work does not throw.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "berth/base/cancel.h"
#include "berth/base/result.h"

namespace berth {

// Whether a caller of SingleFlight::Do ran the work itself or received another caller's result.
enum class FlightRole { kLed, kJoined };

template <typename Key, typename T>
class SingleFlight {
 public:
  struct Outcome {
    Result<T> result;  // the work's result (a copy of it for a joined caller)
    FlightRole role;
  };

  SingleFlight() = default;
  SingleFlight(const SingleFlight&) = delete;
  SingleFlight& operator=(const SingleFlight&) = delete;

  // Runs `work` (a callable returning Result<T>) unless a run for `key` is in flight, in which
  // case waits for that run and returns its result. Blocks while the work runs. Errors (of the
  // outer Result): only a joined caller's `cancel` firing before the run ended (kCancelled,
  // kDeadlineExceeded); the work's own errors are in Outcome::result.
  template <typename Work>
  Result<Outcome> Do(const Key& key, Work&& work, const CancelToken& cancel) {
    auto [flight, role] = Enter(key);
    if (role == FlightRole::kLed) {
      Result<T> result = std::forward<Work>(work)();
      Finish(key, *flight, result);
      return Outcome{std::move(result), FlightRole::kLed};
    }
    std::unique_lock lock(flight->mutex);
    // Captures the pointer, not the binding: clang 14 (the sanitizer build) cannot capture
    // structured bindings in lambdas yet.
    BERTH_RETURN_IF_ERROR(cancel.Wait(
        flight->done, lock, [entry = flight.get()] { return entry->result.has_value(); }));
    return Outcome{*flight->result, FlightRole::kJoined};
  }

  // Keys with a run in flight (for tests and diagnostics).
  size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return flights_.size();
  }

  // How many callers joined the run in flight for `key` (0 when none is); for tests.
  size_t joined(const Key& key) const {
    std::lock_guard lock(mutex_);
    auto it = flights_.find(key);
    return it == flights_.end() ? 0 : it->second->joined;
  }

 private:
  struct Flight {
    std::mutex mutex;
    std::condition_variable_any done;
    std::optional<Result<T>> result;  // set once, when the run ends
    size_t joined = 0;                // guarded by SingleFlight::mutex_
  };

  std::pair<std::shared_ptr<Flight>, FlightRole> Enter(const Key& key) {
    std::lock_guard lock(mutex_);
    std::shared_ptr<Flight>& slot = flights_[key];
    if (slot) {
      ++slot->joined;
      return {slot, FlightRole::kJoined};
    }
    slot = std::make_shared<Flight>();
    return {slot, FlightRole::kLed};
  }

  // Frees the key for the next run, then hands the result to the callers that joined this one.
  void Finish(const Key& key, Flight& flight, const Result<T>& result) {
    {
      std::lock_guard lock(mutex_);
      flights_.erase(key);
    }
    {
      std::lock_guard lock(flight.mutex);
      flight.result = result;
    }
    flight.done.notify_all();
  }

  mutable std::mutex mutex_;
  std::map<Key, std::shared_ptr<Flight>> flights_;
};

}  // namespace berth
