#include "berth/base/accept_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace berth {

Result<std::unique_ptr<AcceptLoop>> AcceptLoop::Start(UniqueFd listener, int max_connections,
                                                      AcceptHandlers handlers) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Fail(ErrnoError(errno, "eventfd"));
  std::unique_ptr<AcceptLoop> loop(
      new AcceptLoop(std::move(listener), std::move(wake), max_connections, std::move(handlers)));
  loop->acceptor_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

AcceptLoop::AcceptLoop(UniqueFd listener, UniqueFd wake, int max_connections,
                       AcceptHandlers handlers)
    : listener_(std::move(listener)),
      wake_(std::move(wake)),
      max_connections_(max_connections),
      handlers_(std::move(handlers)) {}

AcceptLoop::~AcceptLoop() { Stop(); }

void AcceptLoop::Stop() {
  if (!stopping_.exchange(true)) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(wake_.get(), &one, sizeof(one));
  }
  if (acceptor_.joinable()) acceptor_.join();
  listener_.reset();
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return serving_ == 0; });
}

void AcceptLoop::Run() {
  while (true) {
    pollfd fds[2] = {{.fd = listener_.get(), .events = POLLIN, .revents = 0},
                     {.fd = wake_.get(), .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection) {
      // Out of descriptors (EMFILE) leaves the connection queued and the listener readable:
      // wait a little rather than spin.
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      if (serving_ >= max_connections_) {
        if (handlers_.refuse) handlers_.refuse(connection.get());
        continue;
      }
      ++serving_;
    }
    std::thread([this, fd = std::move(connection)]() mutable {
      handlers_.serve(std::move(fd), wake_.get());
      // The last thing this thread does: Stop() may destroy the loop once serving_ is 0.
      std::lock_guard lock(mutex_);
      --serving_;
      idle_.notify_all();
    }).detach();
  }
}

}  // namespace berth
