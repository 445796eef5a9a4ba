#include "testing/net_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

namespace berth::testing {
namespace {

Result<UniqueFd> ConnectOne(const addrinfo& address, std::chrono::milliseconds timeout) {
  UniqueFd fd(::socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                       address.ai_protocol));
  if (!fd) return Fail(ErrnoError(errno, "socket"));
  if (::connect(fd.get(), address.ai_addr, address.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return Fail(ErrnoError(errno, "connect"));
    pollfd pfd = {.fd = fd.get(), .events = POLLOUT, .revents = 0};
    int ready;
    do {
      ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) return Fail(ErrorCode::kDeadlineExceeded, "connect timed out");
    if (ready < 0) return Fail(ErrnoError(errno, "poll"));
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return Fail(ErrnoError(error, "connect"));
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

Result<uint16_t> FreeLoopbackPort() {
  BERTH_ASSIGN_OR_RETURN(LoopbackListener listener, ListenOnLoopback(0, 1));
  return listener.port;
}

Result<LoopbackListener> ListenOnLoopback(uint16_t port, int backlog) {
  return ListenOnAddress("127.0.0.1", port, backlog);
}

Result<LoopbackListener> ListenOnAddress(std::string_view address_text, uint16_t port,
                                         int backlog) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail(ErrnoError(errno, "socket"));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  const std::string text(address_text);
  if (::inet_pton(AF_INET, text.c_str(), &address.sin_addr) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "not an IPv4 address: \"" + text + "\"");
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return Fail(ErrnoError(errno, "bind " + text + ":" + std::to_string(port)));
  }
  if (::listen(fd.get(), backlog) != 0) return Fail(ErrnoError(errno, "listen"));
  socklen_t length = sizeof(address);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return Fail(ErrnoError(errno, "getsockname"));
  }
  return LoopbackListener{.fd = std::move(fd), .port = ntohs(address.sin_port)};
}

Result<std::pair<std::string, uint16_t>> SplitHostPort(std::string_view host_port) {
  size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == host_port.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                "expected host:port, got \"" + std::string(host_port) + "\"");
  }
  std::string_view host = host_port.substr(0, colon);
  std::string_view port_text = host_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return Fail(ErrorCode::kInvalidArgument,
                "bad port in \"" + std::string(host_port) + "\"; expected 1-65535");
  }
  return std::make_pair(std::string(host), static_cast<uint16_t>(port));
}

Result<UniqueFd> ConnectTcp(std::string_view host, uint16_t port,
                            std::chrono::milliseconds timeout) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string host_string(host);
  std::string port_string = std::to_string(port);
  int rc = ::getaddrinfo(host_string.c_str(), port_string.c_str(), &hints, &found);
  if (rc != 0) {
    return Fail(ErrorCode::kUnavailable, "resolve " + host_string + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  Error last(ErrorCode::kUnavailable, "no addresses for " + host_string);
  for (addrinfo* address = found; address != nullptr; address = address->ai_next) {
    Result<UniqueFd> fd = ConnectOne(*address, timeout);
    if (fd) return fd;
    last = fd.error();
  }
  ErrorCode code = last.code() == ErrorCode::kDeadlineExceeded ? ErrorCode::kDeadlineExceeded
                                                               : ErrorCode::kUnavailable;
  return Fail(code, "connect to " + host_string + ":" + port_string + ": " + last.message());
}

Result<void> WaitForTcp(std::string_view host, uint16_t port, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last_error = "never tried";
  while (true) {
    Result<UniqueFd> fd = ConnectTcp(host, port, std::chrono::milliseconds(500));
    if (fd) return Ok();
    last_error = fd.error().ToString();
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Fail(ErrorCode::kDeadlineExceeded,
              "nothing accepted connections on " + std::string(host) + ":" + std::to_string(port) +
                  " within " + std::to_string(timeout.count()) + " ms; last error: " + last_error);
}

Result<void> WaitForHttp(const HttpFetchRequest& probe, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  HttpFetchRequest attempt = probe;
  attempt.timeout = std::chrono::milliseconds(1000);
  std::string last_error = "never tried";
  while (true) {
    Result<HttpFetchResponse> response = HttpFetch(attempt);
    if (response) return Ok();
    last_error = response.error().ToString();
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Fail(ErrorCode::kDeadlineExceeded, probe.url + " did not answer within " +
                                                std::to_string(timeout.count()) +
                                                " ms; last error: " + last_error);
}

Result<void> WaitForHttp(std::string_view url, std::chrono::milliseconds timeout) {
  return WaitForHttp(HttpFetchRequest{.url = std::string(url)}, timeout);
}

}  // namespace berth::testing
