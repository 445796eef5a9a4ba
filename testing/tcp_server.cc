#include "testing/tcp_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>

#include "testing/net_util.h"

namespace berth::testing {
namespace {

std::string PeerName(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

}  // namespace

Result<std::unique_ptr<TcpServer>> TcpServer::Start(ConnectionHandler handler, uint16_t port,
                                                    const std::string& address) {
  if (!handler) return Fail(ErrorCode::kInvalidArgument, "TcpServer needs a handler");
  BERTH_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnAddress(address, port));
  auto server = std::unique_ptr<TcpServer>(
      new TcpServer(std::move(handler), std::move(listener.fd), listener.port, address));
  if (!server->wake_fd_) return Fail(ErrnoError(errno, "eventfd"));
  server->accept_thread_ = std::thread([raw = server.get()] { raw->AcceptLoop(); });
  return server;
}

TcpServer::TcpServer(ConnectionHandler handler, UniqueFd listener, uint16_t port,
                     std::string address)
    : handler_(std::move(handler)),
      listener_(std::move(listener)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC)),
      port_(port),
      address_(std::move(address)) {}

TcpServer::~TcpServer() { Stop(); }

void TcpServer::Stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof(one));
    (void)ignored;
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.reset();
    std::list<std::unique_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The fds stay open until the threads are joined, so shutdown() cannot hit a reused fd.
      for (auto& connection : connections_) ::shutdown(connection->fd.get(), SHUT_RDWR);
      connections.swap(connections_);
    }
    for (auto& connection : connections) {
      if (connection->thread.joinable()) connection->thread.join();
    }
  });
}

void TcpServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{.fd = listener_.get(), .events = POLLIN, .revents = 0},
                     {.fd = wake_fd_.get(), .events = POLLIN, .revents = 0}};
    int ready = ::poll(fds, 2, 1000);
    if (ready < 0 && errno != EINTR) break;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ReapFinishedLocked();
    }
    if (stopping_.load() || (fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    sockaddr_in address = {};
    socklen_t length = sizeof(address);
    int fd =
        ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++accepted_;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_unique<Connection>();
    connection->fd.reset(fd);
    connection->peer = PeerName(address);
    Connection* raw = connection.get();
    std::lock_guard<std::mutex> lock(mutex_);
    connections_.push_back(std::move(connection));
    raw->thread = std::thread([this, raw] {
      handler_(raw->fd.get(), raw->peer);
      ::shutdown(raw->fd.get(), SHUT_RDWR);
      raw->done.store(true);
    });
  }
}

void TcpServer::ReapFinishedLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace berth::testing
