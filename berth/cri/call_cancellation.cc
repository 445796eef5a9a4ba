#include "berth/cri/call_cancellation.h"

#include <chrono>

namespace berth::cri {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point DeadlineOf(const grpc::ServerContext& context) {
  auto deadline = context.deadline();
  auto now = std::chrono::system_clock::now();
  // gRPC reports "no deadline" as a time far in the future.
  if (deadline - now > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(deadline - now);
}

}  // namespace

CallCancellation::CallCancellation(grpc::ServerContext& context)
    : token_(DeadlineOf(context)), watcher_([this, &context] { Watch(context); }) {}

CallCancellation::~CallCancellation() {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  wake_.notify_all();
  watcher_.join();
}

void CallCancellation::Watch(grpc::ServerContext& context) {
  std::unique_lock lock(mutex_);
  while (!done_) {
    if (context.IsCancelled()) {
      token_.Cancel();
      return;
    }
    wake_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

}  // namespace berth::cri
