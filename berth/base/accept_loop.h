// File: berth/base/accept_loop.h
//
// AcceptLoop serves a listening TCP socket with a thread per connection, the way berthd's small
// HTTP servers work (the metrics endpoint, berth/metrics/http_server.h; the peer endpoint,
// berth/peers/blob_server.h): one thread accepts, and each connection is handed to `serve` on a
// thread of its own, at most `max_connections` at once. A connection past the limit is handed
// to `refuse` on the accepting thread (to say "busy" without waiting for the client) and closed.
//
// Stopping: wake_fd() is an eventfd that becomes readable when Stop() is called. Servers wait on
// it beside their sockets (poll), so every connection ends promptly. Stop() (or the destructor)
// stops accepting, closes the listening socket and waits until every `serve` has returned; after
// it, neither handler is called again.
//
// Thread safety: Stop() may be called from any thread but a handler's, once or more. The
// handlers are called concurrently and must be thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth {

struct AcceptHandlers {
  // Serves one accepted connection (close-on-exec, blocking) until it ends; `wake_fd` is the
  // loop's wake_fd() (given here since the handler may run before Start() has returned).
  std::function<void(UniqueFd connection, int wake_fd)> serve;
  // Answers a connection past max_connections (it is closed afterwards); may be empty.
  std::function<void(int connection)> refuse;
};

class AcceptLoop {
 public:
  // Starts accepting on `listener` (a listening socket). Errors: eventfd's ErrnoError.
  static Result<std::unique_ptr<AcceptLoop>> Start(UniqueFd listener, int max_connections,
                                                   AcceptHandlers handlers);

  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;
  ~AcceptLoop();

  // Readable once Stop() was called.
  int wake_fd() const { return wake_.get(); }

  void Stop();

 private:
  AcceptLoop(UniqueFd listener, UniqueFd wake, int max_connections, AcceptHandlers handlers);
  void Run();

  UniqueFd listener_;
  UniqueFd wake_;
  const int max_connections_;
  const AcceptHandlers handlers_;
  std::mutex mutex_;
  std::condition_variable idle_;
  int serving_ = 0;  // connections being served, under mutex_
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
};

}  // namespace berth
