// File: berth/pull/download_scheduler.h
//
// DownloadScheduler decides which blob download may open a connection next, across every pull
// of the node. It enforces two limits on downloads running at once, on top of each pull's own
// max_concurrent_downloads (the number of download threads a pull has):
//   - a global limit (config pull.max_concurrent_downloads_total), and
//   - a per-registry limit (pull.max_concurrent_downloads_per_registry), keyed by the registry
//     host named in the image reference ("docker.io", "r.local:5000"); a mirror serving that
//     registry counts against it.
// When a download finishes and several wait, the scheduler is fair between pulls: it serves
// pulls round-robin (the waiting pull served least recently goes first, a pull never served
// before first of all), not in order of arrival, so one pull of a fifty-layer image does not
// starve a pull of a small one. Within a pull, the lowest layer goes first, because layers are
// committed in order and a low layer that waits holds up every layer above it.
//
// Usage: each pull joins for its lifetime and asks for a permit around every blob download:
//
//   DownloadScheduler::Member member = scheduler.Join();
//   BERTH_ASSIGN_OR_RETURN(DownloadScheduler::Permit permit,
//                          member.Acquire("docker.io", layer_index, cancel));
//   ... download ...  // the permit is returned when it is destroyed
//
// Only network downloads take permits: a blob already in the store, or one another pull is
// already fetching, needs none.
//
// Thread safety: all methods may be called from any thread. A Member is used by its pull's
// threads (concurrently); it and every Permit it gave must be destroyed before the scheduler.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "berth/base/cancel.h"
#include "berth/base/result.h"

namespace berth::pull {

struct DownloadLimits {
  // Downloads running at once across all pulls; 0 = no limit.
  int max_total = 0;
  // Downloads running at once per registry host; 0 = no limit.
  int max_per_registry = 0;
};

// What the scheduler has seen, for tests and diagnostics.
struct DownloadSchedulerStats {
  int running = 0;       // permits held now
  int waiting = 0;       // Acquire() calls blocked now
  int max_running = 0;   // the most permits ever held at once
  uint64_t granted = 0;  // permits given out so far
};

class DownloadScheduler {
 public:
  class Member;

  // A running download's right to a connection; returns it when destroyed. Move-only.
  class Permit {
   public:
    Permit() = default;
    Permit(Permit&& other) noexcept { *this = std::move(other); }
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { Release(); }

    // Returns the permit now (idempotent).
    void Release();

   private:
    friend class DownloadScheduler;
    Permit(DownloadScheduler* scheduler, std::string registry)
        : scheduler_(scheduler), registry_(std::move(registry)) {}
    DownloadScheduler* scheduler_ = nullptr;
    std::string registry_;
  };

  // One pull's membership; leaves the scheduler when destroyed. Move-only.
  class Member {
   public:
    Member(Member&& other) noexcept : scheduler_(other.scheduler_), id_(other.id_) {
      other.scheduler_ = nullptr;
    }
    Member& operator=(Member&&) = delete;
    Member(const Member&) = delete;
    Member& operator=(const Member&) = delete;
    ~Member();

    // Blocks until a download of layer `layer_index` (the priority within this pull: lower
    // goes first) from `registry` may start, then returns its permit. Honours `cancel`
    // (kCancelled or the token's error; no permit is held then).
    Result<Permit> Acquire(std::string_view registry, size_t layer_index,
                           const CancelToken& cancel);

   private:
    friend class DownloadScheduler;
    Member(DownloadScheduler* scheduler, uint64_t id) : scheduler_(scheduler), id_(id) {}
    DownloadScheduler* scheduler_;
    uint64_t id_;
  };

  explicit DownloadScheduler(DownloadLimits limits);
  DownloadScheduler(const DownloadScheduler&) = delete;
  DownloadScheduler& operator=(const DownloadScheduler&) = delete;
  // REQUIRES: every Member and Permit is gone.
  ~DownloadScheduler();

  // Registers a pull. The returned Member must not outlive the scheduler.
  Member Join();

  const DownloadLimits& limits() const { return limits_; }
  DownloadSchedulerStats stats() const;

 private:
  struct Waiter {
    uint64_t member = 0;
    std::string registry;
    size_t layer_index = 0;
    uint64_t arrival = 0;
    bool granted = false;
  };

  Result<Permit> Acquire(uint64_t member, std::string_view registry, size_t layer_index,
                         const CancelToken& cancel);
  void Release(const std::string& registry);
  void Leave(uint64_t member);
  // Grants permits to waiters while the limits allow. REQUIRES: mutex_ held.
  void DispatchLocked();
  bool AllowedLocked(const std::string& registry) const;

  const DownloadLimits limits_;
  mutable std::mutex mutex_;
  std::condition_variable_any granted_signal_;  // CancelToken::Wait needs the _any kind
  uint64_t next_member_ = 1;                    // guarded by mutex_
  uint64_t next_arrival_ = 1;                   // guarded by mutex_
  uint64_t next_service_ = 1;                   // guarded by mutex_
  // Member → when it was last granted a permit (0 = never): the round-robin order.
  std::map<uint64_t, uint64_t> last_served_;         // guarded by mutex_
  std::list<Waiter> waiters_;                        // guarded by mutex_
  std::map<std::string, int> running_per_registry_;  // guarded by mutex_
  int running_ = 0;                                  // guarded by mutex_
  int max_running_ = 0;                              // guarded by mutex_
  uint64_t granted_ = 0;                             // guarded by mutex_
};

}  // namespace berth::pull
