// File: testing/net_namespace.h
//
// Network namespaces for cluster tests (needs root and iproute2's `ip`): a private IPv4 network
// of hosts, each a named network namespace with one interface, joined by a bridge that lives in
// a "switch" namespace of its own. The root namespace gets no interface, address or route: the
// test reaches the hosts only by running things inside their namespaces.
//
//   ASSERT_OK_AND_ASSIGN(auto network, TestNetwork::Create({.prefix = "berthc"}));
//   ASSERT_OK_AND_ASSIGN(NetNamespace * node, network->AddHost("node1", 11));  // 10.213.0.11/24
//   ChildProcess::Start({.argv = node->Exec({"/usr/bin/docker-registry", "serve", config}), …});
//   node->Fetch({.url = "http://10.213.0.12:5050/v2/"});   // curl from inside node1
//   ASSERT_OK(node->SetNameserver("10.213.0.3"));          // its /etc/resolv.conf
//
// Names: every namespace is "<prefix>-<pid>-<role>" (the test process's pid), so parallel test
// processes never collide, and Create() first removes the namespaces (and /etc/netns/<name>
// directories) of an earlier process with the same prefix that no longer runs — what a test
// killed by a timeout left behind — killing what still runs in them (dnsmasq drops capabilities,
// which clears the parent-death signal ChildProcess relies on). The destructor removes this
// process's namespaces and their /etc/netns directories the same way; stop the processes running
// inside first, so that they end as they should.
//
// Inside a host namespace: `lo` is up, and `eth0` holds <subnet>.<host>/24 (the other end of
// its veth pair is a port of the bridge `br0` in the switch namespace). Processes started with
// Exec() run under `ip netns exec`, which also bind-mounts /etc/netns/<name>/resolv.conf (written
// by SetNameserver) over /etc/resolv.conf for them, in a mount namespace of their own: mounts
// they make are not seen by the test.
//
// Thread safety: a NetNamespace's const members may be called from any thread; RunInside and
// Fetch run on a thread of their own that joins the namespace (a network namespace is per
// thread). TestNetwork's members from one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "testing/http_fetch.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"

namespace berth::testing {

class NetNamespace {
 public:
  // Creates the namespace `name` (ip netns add) and brings its loopback up. kAlreadyExists if
  // it exists; kFailedPrecondition naming the command's output when `ip` fails (not root).
  static Result<std::unique_ptr<NetNamespace>> Create(std::string name);
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;
  ~NetNamespace();  // Remove()

  const std::string& name() const { return name_; }

  // `argv` to be run inside: {"ip", "netns", "exec", name, argv...}. argv[0] must be a path or
  // a name `ip netns exec` finds in $PATH.
  std::vector<std::string> Exec(const std::vector<std::string>& argv) const;
  // Runs `argv` inside to completion (RunCommand; `scratch_dir` holds its captured output).
  Result<CommandResult> Run(const std::vector<std::string>& argv,
                            const std::filesystem::path& scratch_dir) const;
  // Run(), and an error (kInternal, with the output) when it exits with another code than 0.
  Result<std::string> RunOk(const std::vector<std::string>& argv,
                            const std::filesystem::path& scratch_dir) const;

  // Writes /etc/netns/<name>/resolv.conf: `nameserver <address>` with a 1 s timeout, so that
  // getaddrinfo in processes started with Exec() asks that server.
  Result<void> SetNameserver(std::string_view address) const;

  // Runs `fn` on a new thread that has joined this namespace (setns), and waits for it: sockets
  // `fn` opens (connecting, or listening) belong to the namespace, and stay in it after `fn`
  // returns. An errno error if the namespace cannot be joined (fn is then not run).
  Result<void> RunInside(const std::function<void()>& fn) const;
  // HttpFetch from inside the namespace.
  Result<HttpFetchResponse> Fetch(const HttpFetchRequest& request) const;

  // Deletes the namespace and /etc/netns/<name>. Idempotent; failures are ignored.
  void Remove();

 private:
  explicit NetNamespace(std::string name) : name_(std::move(name)) {}

  std::string name_;
  bool removed_ = false;
};

struct TestNetworkOptions {
  // The first part of every namespace's name; one per test program, e.g. "berthc".
  std::string prefix = "berth-net";
  // The /24 the hosts are numbered in, as its first three octets.
  std::string subnet = "10.213.0";
};

class TestNetwork {
 public:
  // Removes stale namespaces of `options.prefix` (see the file comment), then creates the
  // switch namespace with the bridge. Errors: NetNamespace::Create's and `ip`'s.
  static Result<std::unique_ptr<TestNetwork>> Create(TestNetworkOptions options);
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;
  ~TestNetwork();  // removes the hosts' namespaces, then the switch's

  // A new host namespace "<prefix>-<pid>-<role>" with Address(host) on its eth0 (1..254, once
  // each), plugged into the bridge. The network owns it; the pointer lives as long as the network.
  Result<NetNamespace*> AddHost(std::string_view role, int host);
  // "<subnet>.<host>".
  std::string Address(int host) const;
  const NetNamespace& switch_namespace() const { return *switch_; }

  // The namespaces named "<prefix>-<pid>-…" whose pid is not a running process: removed, with
  // their /etc/netns directories. Returns how many.
  static int RemoveStale(std::string_view prefix);

 private:
  explicit TestNetwork(TestNetworkOptions options) : options_(std::move(options)) {}
  std::string NameFor(std::string_view role) const;

  TestNetworkOptions options_;
  TempDir scratch_;  // the output of the `ip` commands
  std::unique_ptr<NetNamespace> switch_;
  std::vector<std::unique_ptr<NetNamespace>> hosts_;
};

}  // namespace berth::testing
