// File: berth/cri/call_cancellation.h
//
// CallCancellation gives a synchronous gRPC handler a CancelToken that fires when the client
// cancels the call (or goes away) or the call's deadline passes, so work the handler starts
// (a pull, a wait for a layer) stops with the call. The synchronous API has no callback for
// cancellation: a watcher thread polls ServerContext::IsCancelled() every 100 ms while the
// object lives.
//
// Thread safety: token() may be used from any thread while the object lives. The ServerContext
// must outlive the object (construct it on the handler's stack).
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "berth/base/cancel.h"

namespace berth::cri {

class CallCancellation {
 public:
  explicit CallCancellation(grpc::ServerContext& context);
  ~CallCancellation();
  CallCancellation(const CallCancellation&) = delete;
  CallCancellation& operator=(const CallCancellation&) = delete;

  const CancelToken& token() const { return token_; }

 private:
  void Watch(grpc::ServerContext& context);

  CancelToken token_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  std::thread watcher_;  // last: it starts in the constructor and uses the members above
};

}  // namespace berth::cri
