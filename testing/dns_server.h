// File: testing/dns_server.h
//
// DnsServer runs dnsmasq (Debian's dnsmasq-base, /usr/sbin/dnsmasq) inside a test network
// namespace (net_namespace.h) as the cluster's DNS: it answers A queries for the names the test
// gives it — several addresses per name, like a Kubernetes headless Service — from a hosts file
// of its own, and nothing else (no upstream, no /etc/hosts; AAAA is NODATA for a name it knows).
// SetRecords() rewrites the file and sends SIGHUP, on which dnsmasq reads it again: a membership
// change.
//
//   ASSERT_OK_AND_ASSIGN(auto dns, DnsServer::Start({.ns = dns_ns, .address = "10.213.0.3",
//                                                    .domain = "cluster.test",
//                                                    .records = {{"berth-peers.cluster.test",
//                                                                 {"10.213.0.11", …}}}}));
//   node_ns->SetNameserver(dns->address());
//
// Records are served with TTL 0 (dnsmasq's local-ttl), so a resolver asking again sees a change
// at once. Every query is logged (log_file()).
//
// Thread safety: members from one thread (the one that outlives the server, see ChildProcess).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "testing/child_process.h"
#include "testing/net_namespace.h"
#include "testing/temp_dir.h"

namespace berth::testing {

// Name → its IPv4 addresses.
using DnsRecords = std::map<std::string, std::vector<std::string>>;

struct DnsServerOptions {
  // The namespace dnsmasq runs in. Required; must outlive the server.
  const NetNamespace* ns = nullptr;
  // The address it listens on (port 53, UDP and TCP): an address of `ns`.
  std::string address;
  // The zone answered only from `records` (dnsmasq --local): other names in it are NXDOMAIN.
  std::string domain = "cluster.test";
  DnsRecords records;
};

class DnsServer {
 public:
  // Writes the hosts file, starts dnsmasq and returns once it has read the file. kNotFound
  // without dnsmasq (scripts/setup.sh installs dnsmasq-base); kUnavailable if it exits (the
  // message has its log); kDeadlineExceeded if it says nothing within 10 s.
  static Result<std::unique_ptr<DnsServer>> Start(DnsServerOptions options);
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;
  ~DnsServer();  // stops dnsmasq

  // Replaces every record and makes dnsmasq read them (SIGHUP); returns once it has.
  Result<void> SetRecords(const DnsRecords& records);

  const std::string& address() const { return options_.address; }
  std::filesystem::path log_file() const { return dir_.Join("dnsmasq.log"); }
  std::string ReadLog() const;

 private:
  DnsServer(DnsServerOptions options, TempDir dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}
  std::filesystem::path hosts_file() const { return dir_.Join("hosts"); }
  Result<void> WriteHosts(const DnsRecords& records) const;
  // Waits until the log says the hosts file was read for the `count`th time.
  Result<void> WaitForReads(size_t count);

  DnsServerOptions options_;
  TempDir dir_;
  size_t reads_ = 0;  // times dnsmasq read the hosts file so far
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace berth::testing
