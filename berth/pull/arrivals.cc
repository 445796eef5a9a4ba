#include "berth/pull/arrivals.h"

namespace berth::pull {

Arrival::Progress Arrival::WaitBeyond(int64_t offset, Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] {
    return progress_.available > offset || progress_.ended || progress_.failed;
  });
  return progress_;
}

int Arrival::file() const {
  std::lock_guard lock(mutex_);
  return reader_.get();
}

Arrival::Progress Arrival::progress() const {
  std::lock_guard lock(mutex_);
  return progress_;
}

void Arrival::Update(const std::function<void(Progress&)>& change) {
  {
    std::lock_guard lock(mutex_);
    change(progress_);
  }
  changed_.notify_all();
}

void Arrival::Open(UniqueFd reader, int64_t offset) {
  {
    std::lock_guard lock(mutex_);
    reader_ = std::move(reader);
  }
  Advance(offset);
}

void Arrival::Advance(int64_t available) {
  Update([&](Progress& progress) { progress.available = available; });
}

void Arrival::Restart() {
  Update([](Progress& progress) { progress.available = 0; });
}

void Arrival::AskingPeers(bool asking) {
  std::lock_guard lock(mutex_);
  asking_peers_ = asking;
}

bool Arrival::asking_peers() const {
  std::lock_guard lock(mutex_);
  return asking_peers_;
}

void Arrival::End() {
  Update([](Progress& progress) { progress.ended = !progress.failed; });
}

void Arrival::Fail() {
  Update([](Progress& progress) { progress.failed = !progress.ended; });
}

std::shared_ptr<Arrival> Arrivals::Join(const Digest& digest, bool* created) {
  std::lock_guard lock(mutex_);
  std::shared_ptr<Arrival>& arrival = running_[digest];
  if (created != nullptr) *created = arrival == nullptr;
  if (arrival == nullptr) arrival = std::make_shared<Arrival>();
  return arrival;
}

std::shared_ptr<Arrival> Arrivals::Find(const Digest& digest) const {
  std::lock_guard lock(mutex_);
  auto it = running_.find(digest);
  return it == running_.end() ? nullptr : it->second;
}

void Arrivals::Leave(const Digest& digest, const std::shared_ptr<Arrival>& arrival) {
  arrival->Fail();  // a no-op when it ended
  std::lock_guard lock(mutex_);
  auto it = running_.find(digest);
  if (it != running_.end() && it->second == arrival) running_.erase(it);
}

}  // namespace berth::pull
