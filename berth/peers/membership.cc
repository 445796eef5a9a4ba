#include "berth/peers/membership.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <set>

#include "berth/base/log.h"

namespace berth::peers {
namespace {

// "a.b.c.d:port" or "[v6]:port" for a numeric host, from its binary form.
std::string Spell(const sockaddr* address, uint16_t port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
              sizeof(text));
    return fmt::format("[{}]:{}", text, port);
  }
  inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text, sizeof(text));
  return fmt::format("{}:{}", text, port);
}

// This host's interface addresses with `port`, spelled as members are.
std::vector<std::string> InterfaceAddresses(uint16_t port) {
  std::vector<std::string> own;
  ifaddrs* interfaces = nullptr;
  if (getifaddrs(&interfaces) != 0) return own;
  std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> owned(interfaces, &freeifaddrs);
  for (const ifaddrs* entry = interfaces; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr) continue;
    const int family = entry->ifa_addr->sa_family;
    if (family == AF_INET || family == AF_INET6) own.push_back(Spell(entry->ifa_addr, port));
  }
  return own;
}

Error BadAddress(std::string_view address, std::string_view why) {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("peer address \"{}\" {}; write host:port or [v6]:port", address, why));
}

}  // namespace

Result<std::string> NormalizeAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return Fail(BadAddress(address, "has no port"));
  std::string_view host = address.substr(0, colon);
  const std::string_view port_text = address.substr(colon + 1);
  unsigned port = 0;
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return Fail(BadAddress(address, "has no port from 1 to 65535"));
  }
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  const std::string host_text(host);
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET6, host_text.c_str(), &v6.sin6_addr) == 1) {
    if (!bracketed) return Fail(BadAddress(address, "is an IPv6 address without brackets"));
    v6.sin6_family = AF_INET6;
    return Spell(reinterpret_cast<const sockaddr*>(&v6), static_cast<uint16_t>(port));
  }
  if (bracketed) return Fail(BadAddress(address, "has brackets around no IPv6 address"));
  sockaddr_in v4{};
  if (inet_pton(AF_INET, host_text.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    return Spell(reinterpret_cast<const sockaddr*>(&v4), static_cast<uint16_t>(port));
  }
  return std::string(address);  // a name, kept as written
}

Result<std::unique_ptr<Membership>> Membership::Create(MembershipOptions options) {
  std::vector<std::string> static_peers;
  for (const std::string& peer : options.static_peers) {
    BERTH_ASSIGN_OR_RETURN(std::string normalized, NormalizeAddress(peer));
    static_peers.push_back(std::move(normalized));
  }
  if (!options.dns_name.empty() && options.port == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("peers found through DNS name \"{}\" need a port", options.dns_name));
  }
  if (!options.self.empty()) {
    BERTH_ASSIGN_OR_RETURN(options.self, NormalizeAddress(options.self));
  }
  auto membership =
      std::unique_ptr<Membership>(new Membership(std::move(options), std::move(static_peers)));
  membership->Publish({});
  return membership;
}

Membership::Membership(MembershipOptions options, std::vector<std::string> static_peers)
    : options_(std::move(options)), static_peers_(std::move(static_peers)) {}

Membership::~Membership() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_changed_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

Result<void> Membership::Refresh() {
  if (options_.dns_name.empty()) return Ok();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int status = getaddrinfo(options_.dns_name.c_str(), nullptr, &hints, &found);
  if (status == EAI_NONAME || status == EAI_NODATA) {
    Publish({});  // the Service has no ready pod: only the static peers
    return Ok();
  }
  if (status != 0) {
    return Fail(ErrorCode::kUnavailable,
                fmt::format("resolve peers \"{}\": {}; keeping the {} peers found before",
                            options_.dns_name, gai_strerror(status), Current().size()));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found, &freeaddrinfo);
  std::vector<std::string> addresses;
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_family == AF_INET || entry->ai_family == AF_INET6) {
      addresses.push_back(Spell(entry->ai_addr, options_.port));
    }
  }
  Publish(std::move(addresses));
  return Ok();
}

void Membership::Run() {
  std::lock_guard lock(mutex_);
  if (refresher_.joinable() || options_.dns_name.empty()) return;
  refresher_ = std::thread([this] {
    std::unique_lock wait(mutex_);
    while (!stop_changed_.wait_for(wait, options_.refresh_interval, [&] { return stopping_; })) {
      wait.unlock();
      Result<void> refreshed = Refresh();
      if (!refreshed) log::Warn("peers.dns.failed", {{"error", refreshed.error().ToString()}});
      wait.lock();
    }
  });
}

std::vector<std::string> Membership::Current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::string Membership::Self() const {
  if (!options_.self.empty()) return options_.self;
  std::lock_guard lock(mutex_);
  return found_self_;
}

void Membership::Publish(std::vector<std::string> found) {
  std::set<std::string> members(static_peers_.begin(), static_peers_.end());
  members.insert(found.begin(), found.end());
  members.erase(options_.self);
  std::string found_self;
  if (options_.self.empty() && options_.own_port != 0) {
    const std::vector<std::string> own_addresses = options_.own_addresses
                                                       ? options_.own_addresses(options_.own_port)
                                                       : InterfaceAddresses(options_.own_port);
    for (const std::string& own : own_addresses) {
      if (members.erase(own) > 0) found_self = own;
    }
  }
  std::lock_guard lock(mutex_);
  current_.assign(members.begin(), members.end());
  found_self_ = std::move(found_self);
}

}  // namespace berth::peers
