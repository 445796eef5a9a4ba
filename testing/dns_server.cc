#include "testing/dns_server.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "berth/base/file_util.h"

namespace berth::testing {
namespace {

constexpr char kDnsmasq[] = "/usr/sbin/dnsmasq";

size_t CountOccurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

}  // namespace

Result<std::unique_ptr<DnsServer>> DnsServer::Start(DnsServerOptions options) {
  if (options.ns == nullptr || options.address.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "DnsServer needs a namespace and an address");
  }
  if (::access(kDnsmasq, X_OK) != 0) {
    return Fail(ErrorCode::kNotFound, std::string(kDnsmasq) +
                                          " is not installed; install the Debian package "
                                          "dnsmasq-base (scripts/setup.sh)");
  }
  BERTH_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("dnsmasq"));
  auto server = std::unique_ptr<DnsServer>(new DnsServer(std::move(options), std::move(dir)));
  BERTH_RETURN_IF_ERROR(server->WriteHosts(server->options_.records));
  // Root: the hosts file is in a 0700 directory, and dnsmasq would drop to nobody.
  const std::vector<std::string> argv = {kDnsmasq,
                                         "--keep-in-foreground",
                                         "--conf-file=/dev/null",
                                         "--no-resolv",
                                         "--no-hosts",
                                         "--addn-hosts=" + server->hosts_file().string(),
                                         "--local=/" + server->options_.domain + "/",
                                         "--listen-address=" + server->options_.address,
                                         "--bind-interfaces",
                                         "--user=root",
                                         "--pid-file=",
                                         "--log-facility=-",
                                         "--log-queries"};
  BERTH_ASSIGN_OR_RETURN(server->process_,
                         ChildProcess::Start({.argv = server->options_.ns->Exec(argv),
                                              .log_file = server->log_file()}));
  BERTH_RETURN_IF_ERROR(server->WaitForReads(1));
  return server;
}

DnsServer::~DnsServer() {
  if (process_) process_->Stop();
}

Result<void> DnsServer::WriteHosts(const DnsRecords& records) const {
  std::string text;
  for (const auto& [name, addresses] : records) {
    for (const std::string& address : addresses) text += fmt::format("{} {}\n", address, name);
  }
  return WriteFileAtomically(hosts_file(), text);
}

Result<void> DnsServer::SetRecords(const DnsRecords& records) {
  BERTH_RETURN_IF_ERROR(WriteHosts(records));
  if (::kill(process_->pid(), SIGHUP) != 0) return Fail(ErrnoError(errno, "SIGHUP dnsmasq"));
  return WaitForReads(reads_ + 1);
}

Result<void> DnsServer::WaitForReads(size_t count) {
  const std::string needle = "read " + hosts_file().string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (CountOccurrences(ReadLog(), needle) < count) {
    if (!process_->Running()) {
      return Fail(ErrorCode::kUnavailable, "dnsmasq exited; its log:\n" + ReadLog());
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ErrorCode::kDeadlineExceeded,
                  "dnsmasq did not read its hosts file within 10 s; its log:\n" + ReadLog());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reads_ = count;
  return Ok();
}

std::string DnsServer::ReadLog() const {
  Result<std::string> log = ReadFile(log_file());
  return log ? *log : "<no dnsmasq log: " + log.error().ToString() + ">";
}

}  // namespace berth::testing
