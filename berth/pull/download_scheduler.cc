#include "berth/pull/download_scheduler.h"

#include <chrono>
#include <tuple>
#include <utility>

#include "berth/base/check.h"

namespace berth::pull {

DownloadScheduler::Permit& DownloadScheduler::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    scheduler_ = std::exchange(other.scheduler_, nullptr);
    registry_ = std::move(other.registry_);
  }
  return *this;
}

void DownloadScheduler::Permit::Release() {
  if (scheduler_ == nullptr) return;
  std::exchange(scheduler_, nullptr)->Release(registry_);
}

DownloadScheduler::Member::~Member() {
  if (scheduler_ != nullptr) scheduler_->Leave(id_);
}

Result<DownloadScheduler::Permit> DownloadScheduler::Member::Acquire(std::string_view registry,
                                                                     size_t layer_index,
                                                                     const CancelToken& cancel) {
  return scheduler_->Acquire(id_, registry, layer_index, cancel);
}

DownloadScheduler::DownloadScheduler(DownloadLimits limits) : limits_(limits) {}

DownloadScheduler::~DownloadScheduler() {
  std::lock_guard lock(mutex_);
  BERTH_CHECK(running_ == 0 && waiters_.empty())
      << "DownloadScheduler destroyed with " << running_ << " permits held";
}

DownloadScheduler::Member DownloadScheduler::Join() {
  std::lock_guard lock(mutex_);
  uint64_t id = next_member_++;
  last_served_[id] = 0;
  return Member(this, id);
}

void DownloadScheduler::Leave(uint64_t member) {
  std::lock_guard lock(mutex_);
  last_served_.erase(member);
}

DownloadSchedulerStats DownloadScheduler::stats() const {
  std::lock_guard lock(mutex_);
  DownloadSchedulerStats stats{
      .running = running_, .max_running = max_running_, .granted = granted_};
  for (const Waiter& waiter : waiters_) {
    if (!waiter.granted) ++stats.waiting;
  }
  return stats;
}

bool DownloadScheduler::AllowedLocked(const std::string& registry) const {
  if (limits_.max_total > 0 && running_ >= limits_.max_total) return false;
  if (limits_.max_per_registry > 0) {
    auto it = running_per_registry_.find(registry);
    if (it != running_per_registry_.end() && it->second >= limits_.max_per_registry) return false;
  }
  return true;
}

void DownloadScheduler::DispatchLocked() {
  bool any = false;
  while (true) {
    // The best waiter the limits allow: its pull served least recently, then (a tie only between
    // pulls never served) the pull that joined first, then the lowest layer, then arrival.
    Waiter* best = nullptr;
    std::tuple<uint64_t, uint64_t, size_t, uint64_t> best_key;
    for (Waiter& waiter : waiters_) {
      if (waiter.granted || !AllowedLocked(waiter.registry)) continue;
      auto served = last_served_.find(waiter.member);
      std::tuple key{served == last_served_.end() ? 0 : served->second, waiter.member,
                     waiter.layer_index, waiter.arrival};
      if (best == nullptr || key < best_key) {
        best = &waiter;
        best_key = key;
      }
    }
    if (best == nullptr) break;
    best->granted = true;
    ++running_;
    ++running_per_registry_[best->registry];
    if (running_ > max_running_) max_running_ = running_;
    ++granted_;
    last_served_[best->member] = next_service_++;
    any = true;
  }
  if (any) granted_signal_.notify_all();
}

Result<DownloadScheduler::Permit> DownloadScheduler::Acquire(uint64_t member,
                                                             std::string_view registry,
                                                             size_t layer_index,
                                                             const CancelToken& cancel) {
  BERTH_RETURN_IF_ERROR(cancel.Check());
  std::unique_lock lock(mutex_);
  auto waiter = waiters_.insert(waiters_.end(), Waiter{.member = member,
                                                       .registry = std::string(registry),
                                                       .layer_index = layer_index,
                                                       .arrival = next_arrival_++});
  DispatchLocked();
  Result<void> granted = cancel.Wait(granted_signal_, lock, [&] { return waiter->granted; });
  waiters_.erase(waiter);
  BERTH_RETURN_IF_ERROR(granted);
  return Permit(this, std::string(registry));
}

void DownloadScheduler::Release(const std::string& registry) {
  std::lock_guard lock(mutex_);
  --running_;
  auto it = running_per_registry_.find(registry);
  if (it != running_per_registry_.end() && --it->second == 0) running_per_registry_.erase(it);
  DispatchLocked();
}

}  // namespace berth::pull
