// File: testing/tcp_server.h
//
// TcpServer is the accept loop under the test servers (HttpServer, FaultProxy): it listens on
// 127.0.0.1 or another address (port 0 = the kernel picks a free one, so there is no port race),
// accepts connections on its own thread and runs the handler for each connection on a new thread.
//
// Lifetime: Stop() (or the destructor) closes the listener, shuts down every open client socket
// (so a handler blocked reading it wakes up with end-of-stream) and joins all threads. The
// handler must return soon after its socket is shut down; sockets a handler opened itself
// (upstream connections) are its own business to unblock.
//
// Thread safety: the handler runs concurrently on connection threads. Public methods may be
// called from any thread, but not from inside the handler.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"

namespace berth::testing {

// Called once per accepted connection with the socket (owned by the server: do not close it)
// and the peer's "ip:port".
using ConnectionHandler = std::function<void(int fd, const std::string& peer)>;

class TcpServer {
 public:
  // Listens on `address`:`port` (an IPv4 address of the calling thread's network namespace)
  // and starts accepting. Errno errors from bind/listen.
  static Result<std::unique_ptr<TcpServer>> Start(ConnectionHandler handler, uint16_t port = 0,
                                                  const std::string& address = "127.0.0.1");

  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;
  ~TcpServer();  // Stop()s.

  // Idempotent; a concurrent second caller blocks until the first has finished.
  void Stop();
  bool stopping() const { return stopping_.load(); }
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  // Connections accepted so far.
  uint64_t connections_accepted() const { return accepted_.load(); }

 private:
  struct Connection {
    UniqueFd fd;
    std::string peer;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  TcpServer(ConnectionHandler handler, UniqueFd listener, uint16_t port, std::string address);
  void AcceptLoop();
  // Joins and frees finished connections. REQUIRES: mutex_ held.
  void ReapFinishedLocked();

  const ConnectionHandler handler_;
  UniqueFd listener_;
  UniqueFd wake_fd_;  // eventfd that interrupts the accept loop's poll()
  const uint16_t port_;
  const std::string address_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> accepted_{0};
  std::once_flag stop_once_;
  std::thread accept_thread_;
  std::mutex mutex_;
  std::list<std::unique_ptr<Connection>> connections_;  // guarded by mutex_
};

}  // namespace berth::testing
