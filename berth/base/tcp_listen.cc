#include "berth/base/tcp_listen.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <memory>

namespace berth {

Result<std::pair<std::string, uint16_t>> ParseHostPort(std::string_view address) {
  auto invalid = [&](std::string_view why) {
    return Fail(
        ErrorCode::kInvalidArgument,
        fmt::format("address \"{}\" {}; write host:port, e.g. 127.0.0.1:1338", address, why));
  };
  std::string_view host;
  std::string_view port;
  if (address.starts_with('[')) {
    const size_t close = address.find(']');
    if (close == std::string_view::npos || address.substr(close + 1, 1) != ":") {
      return invalid("has an unclosed [ or no :port after ]");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return invalid("has no :port");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return invalid("needs [ ] around an IPv6 host");
  }
  unsigned value = 0;
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || value > 65535) {
    return invalid("has a port that is not a number from 0 to 65535");
  }
  return std::pair<std::string, uint16_t>(std::string(host), static_cast<uint16_t>(value));
}

Result<UniqueFd> ListenTcp(std::string_view address, std::string_view key, int backlog) {
  BERTH_ASSIGN_OR_RETURN(auto host_port, WithContext(ParseHostPort(address), std::string(key)));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(host_port.second);
  const int resolved = ::getaddrinfo(host_port.first.empty() ? nullptr : host_port.first.c_str(),
                                     port.c_str(), &hints, &found);
  if (resolved != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{} {}: cannot resolve {}: {}", key, address, host_port.first,
                            gai_strerror(resolved)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  int last_errno = EADDRNOTAVAIL;
  for (addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
    UniqueFd fd(::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC, 0));
    if (!fd) {
      last_errno = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), candidate->ai_addr, candidate->ai_addrlen) == 0 &&
        ::listen(fd.get(), backlog) == 0) {
      return fd;
    }
    last_errno = errno;
  }
  return Fail(ErrnoError(last_errno, fmt::format("{} {}: listen (give an address of this node "
                                                 "and a port nothing else listens on)",
                                                 key, address)));
}

uint16_t LocalPort(int fd) {
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) return 0;
  if (local.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
}

}  // namespace berth
