// File: berth/peers/membership.h
//
// Who the peers are. Membership comes from the cluster, not from a protocol of berth's: a static
// list of addresses (fleets without Kubernetes), and/or a DNS name whose A and AAAA records are
// the peers (a Kubernetes headless Service: one record per ready pod), re-resolved periodically.
// Each address found in DNS gets the configured port. The node's own address is left out, so
// the members are the other nodes: `self` when it is given, else a member at one of this host's
// own interface addresses (getifaddrs) with the port this node serves peers on (`own_port`),
// which Self() then names.
//
//   Membership members({.static_peers = {"10.0.0.2:5050"}, .dns_name = "berth-peers.kube-system",
//                       .port = 5050, .self = "10.0.0.7:5050"});
//   BERTH_RETURN_IF_ERROR(members.Refresh());  // once at start; later by Run()'s thread
//   std::vector<std::string> now = members.Current();
//
// Addresses are spelled as rendezvous.h needs them to be the same on every node: "a.b.c.d:port"
// and "[v6]:port" (RFC 5952 text, as inet_ntop writes it); static entries are normalized the
// same way when they are numeric. Current() is sorted and holds each address once.
//
// A failed resolution keeps the members found last (a DNS hiccup must not empty the cluster)
// and is reported by Refresh(); a name that resolves to nothing is no error and leaves only the
// static peers.
//
// Thread safety: every member may be called from any thread. Refresh() blocks on DNS.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "berth/base/result.h"

namespace berth::peers {

struct MembershipOptions {
  // "host:port" or "[v6]:port"; numeric hosts are normalized, names are kept as written.
  std::vector<std::string> static_peers;
  // Resolved with getaddrinfo (A and AAAA); "" for none.
  std::string dns_name;
  // The port of the peers found in DNS.
  uint16_t port = 0;
  // This node's own address as the others see it, left out of the members; "" to find it among
  // the members by own_port.
  std::string self;
  // The port this node serves peers on (peers.listen's); 0 when it serves none.
  uint16_t own_port = 0;
  // This host's addresses with a port, spelled as members are; empty: its interfaces'
  // (getifaddrs). Tests give their own.
  std::function<std::vector<std::string>(uint16_t port)> own_addresses;
  // How often Run()'s thread resolves dns_name again.
  std::chrono::milliseconds refresh_interval = std::chrono::seconds(30);
};

class Membership {
 public:
  // kInvalidArgument for a static peer that is not host:port, or a DNS name without a port.
  static Result<std::unique_ptr<Membership>> Create(MembershipOptions options);
  ~Membership();  // stops Run()'s thread
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Resolves dns_name now. kUnavailable (naming the name and resolver's reason) when the
  // resolution fails; the members stay as they were.
  Result<void> Refresh();
  // Starts a thread that calls Refresh() every refresh_interval until destruction (failures are
  // logged as peers.dns.failed).
  void Run();

  std::vector<std::string> Current() const;
  // This node's own address: `self`, or the member found at one of this host's addresses with
  // own_port; "" when neither.
  std::string Self() const;

 private:
  explicit Membership(MembershipOptions options, std::vector<std::string> static_peers);
  void Publish(std::vector<std::string> found);

  const MembershipOptions options_;
  const std::vector<std::string> static_peers_;  // normalized
  mutable std::mutex mutex_;
  std::condition_variable stop_changed_;
  bool stopping_ = false;
  std::vector<std::string> current_;
  std::string found_self_;
  std::thread refresher_;
};

// "10.0.0.2:5050" → itself; "[FD00:0::7]:5050" → "[fd00::7]:5050"; "node-1:5050" → itself.
// kInvalidArgument when there is no port or the port is not 1..65535.
Result<std::string> NormalizeAddress(std::string_view address);

}  // namespace berth::peers
