// File: testing/containerd_process.h
//
// ContainerdProcess runs a real containerd (Debian's 1.6.20, /usr/bin/containerd) for an
// end-to-end test, with everything it owns inside a private TempDir: root, state, the gRPC and
// ttrpc sockets, the opt plugin's path, runc's state root, ctr's FIFOs, a CNI config directory
// and a registry hosts directory. Nothing it starts listens outside loopback: the CRI's stream
// server binds 127.0.0.1, and every registry host the options name resolves only to the
// endpoints given (loopback TestRegistries).
//
// The generated config.toml (version 2 schema, containerd 1.6 spelling) sets what running
// containers needs on these machines (../shared/CONTAINERD-HERE.md): restrict_oom_score_adj
// (root lacks CAP_SYS_RESOURCE), SystemdCgroup = false (PID 1 is not systemd), a sandbox_image,
// netns mounts under the state dir, and the optional proxy snapshotters. With berthd as
// containerd's snapshotter, one line of the options does it all:
//
//   ContainerdOptions options{.sandbox_image = "registry.berth.test/pause:latest",
//                             .registry_hosts = {{"registry.berth.test", registry->url()}}};
//   options.UseProxySnapshotter("berth", berthd_snapshotter_socket);
//   ASSERT_OK_AND_ASSIGN(auto containerd, ContainerdProcess::Start(options));
//   ASSERT_OK_AND_ASSIGN(CommandResult pulled, containerd->Ctr("test", {"images", "pull",
//       "--hosts-dir", containerd->hosts_dir().string(), "registry.berth.test/busybox:latest"}));
//   EXPECT_EQ(pulled.exit_code, 0) << pulled.err << containerd->LogTail();
//
// Start() returns once containerd answers `ctr version`. Stop() (and the destructor) leaves
// nothing behind: it deletes the tasks containerd still runs, stops containerd (SIGTERM, then
// SIGKILL after a grace period), kills the shims it started and the containers under them,
// unmounts whatever is still mounted under the TempDir, removes the shims' sockets and the
// cgroups under cgroup_parent(). containerd's log (log_file(), LogTail()) is kept until the
// object goes, so a failing test can print it.
//
// containerd dies with the test process (ChildProcess's PR_SET_PDEATHSIG), but its shims do not:
// containerd starts them in process groups of their own and they outlive it by design. A test
// process that is killed (SIGKILL; a ctest timeout) leaves them, their containers, their mounts
// and the temp dir behind; a test that fails still goes through Stop().
//
// Thread safety: accessors, Ctr(), Shims() and Mounts() may be called from any thread (each Ctr()
// has a scratch directory of its own); Start and Stop from the thread that outlives containerd
// (see ChildProcess).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "berth/base/result.h"
#include "testing/child_process.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"

namespace berth::testing {

// A `[proxy_plugins.<name>]` snapshot plugin: a snapshotter served over gRPC on `socket`.
struct ProxySnapshotter {
  std::string name;
  std::filesystem::path socket;
};

// A registry host name (as images are named, e.g. "registry.berth.test" or "docker.io") and the
// one endpoint containerd must use for it instead, e.g. TestRegistry::url()
// ("http://127.0.0.1:PORT"). Written as <hosts_dir>/<host>/hosts.toml with the endpoint as both
// an explicit [host."<endpoint>"] (capabilities pull, resolve) and `server`, its fallback, so
// every address containerd tries is the endpoint. The [host] table is required: containerd
// 1.6.20 rejects a hosts.toml without one ("failed to decode hosts.toml: invalid `host` tree")
// and then goes to https://<host> (registry-1.docker.io for docker.io) as if there were none.
struct RegistryHost {
  std::string host;
  std::string endpoint;
};

// Writes <directory>/<host>/hosts.toml for each of `hosts` (the files ContainerdProcess writes
// into its hosts_dir()); berthd reads the same format (config registry.config_path).
Result<void> WriteHostsDir(const std::filesystem::path& directory,
                           const std::vector<RegistryHost>& hosts);

// Whether the CRI passes the containerd.io/snapshot/cri.* labels (image ref, layer digests) to
// the snapshotter on Prepare. containerd 1.6's default is kDisabled; a remote snapshotter needs
// kEnabled.
enum class SnapshotAnnotations { kDisabled, kEnabled };

struct ContainerdOptions {
  // Proxy snapshot plugins to declare. Declaring one does not make the CRI use it.
  std::vector<ProxySnapshotter> proxy_snapshotters;
  // The CRI's snapshotter (plugins."io.containerd.grpc.v1.cri".containerd.snapshotter).
  std::string cri_snapshotter = "overlayfs";
  SnapshotAnnotations snapshot_annotations = SnapshotAnnotations::kDisabled;
  // The CRI's pause image, pulled by containerd itself for RunPodSandbox.
  std::string sandbox_image = "registry.berth.test/pause:latest";
  std::vector<RegistryHost> registry_hosts;
  // containerd's [debug] level: "debug", "info", "warn" or "error".
  std::string log_level = "info";
  // How long Start() waits for containerd to answer, and Stop() for it to exit after SIGTERM.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(20);
  std::chrono::milliseconds stop_grace = std::chrono::seconds(10);
  std::filesystem::path containerd_binary = "/usr/bin/containerd";
  std::filesystem::path ctr_binary = "/usr/bin/ctr";

  // The one line that puts a proxy snapshotter in front of the CRI: declares it, makes it the
  // CRI's snapshotter and enables the snapshot annotations.
  ContainerdOptions& UseProxySnapshotter(std::string name, std::filesystem::path socket);
};

// The config.toml that ContainerdProcess writes for `options` with everything under
// `directory` (exposed for tests of the harness and for reports).
std::string ContainerdConfigToml(const ContainerdOptions& options,
                                 const std::filesystem::path& directory);

class ContainerdProcess {
 public:
  // The programs a containerd test needs (containerd, ctr, containerd-shim-runc-v2, runc), or
  // kNotFound naming the first one missing and the Debian packages that provide it. Tests
  // GTEST_SKIP() with this message, and only for it.
  static Result<void> CheckInstalled(const ContainerdOptions& options = {});

  // Writes the config and hosts.toml files, starts containerd and waits until `ctr version`
  // answers. Errors: kNotFound if a program is missing, kUnavailable if containerd exited (the
  // message carries the end of its log), kDeadlineExceeded if it never answered.
  static Result<std::unique_ptr<ContainerdProcess>> Start(ContainerdOptions options = {});

  ContainerdProcess(const ContainerdProcess&) = delete;
  ContainerdProcess& operator=(const ContainerdProcess&) = delete;
  ~ContainerdProcess();  // Stop()s.

  // Deletes every task (all namespaces) while containerd runs, stops containerd, then sweeps what
  // is left: shims of this containerd and their containers (SIGKILL), mounts under directory(),
  // shim sockets, cgroups under cgroup_parent(). Idempotent. Returns what the sweep had to remove
  // ("shim pid 123 (ns/id)", "mount /tmp/…/rootfs"), so a test can assert that a clean run left
  // nothing; empty when everything had been cleaned up by containerd itself.
  std::vector<std::string> Stop();

  // Stops containerd alone (SIGTERM, SIGKILL after stop_grace) and starts it again with the same
  // config and directories, as a node's containerd restarts: tasks keep running under their
  // shims, which the new containerd reconnects to. Waits like Start(); same errors.
  // REQUIRES: Stop() has not been called.
  Result<void> Restart();

  // Waits until a call through containerd reaches the proxy snapshotter `snapshotter` (a
  // Prepare and a Remove of a throwaway key in namespace `namespace_name`), up to `timeout`.
  // containerd dials a proxy plugin once it is needed; one that was not listening yet (started
  // after containerd) or went away fails every call until gRPC's reconnect backoff (up to 3 s
  // in containerd) lets it dial again. kDeadlineExceeded with ctr's last error otherwise.
  Result<void> WaitForSnapshotter(std::string_view namespace_name, std::string_view snapshotter,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Runs `ctr -a <address> -n <namespace> <args...>` to completion. Errors only when ctr cannot
  // be started; its exit code and output are in the CommandResult.
  Result<CommandResult> Ctr(std::string_view namespace_name,
                            const std::vector<std::string>& args) const;

  // Live processes of containerd-shim-* started by this containerd, as "pid <n> (<ns>/<id>)".
  std::vector<std::string> Shims() const;
  // Mount points under directory() (from /proc/self/mountinfo), deepest first.
  std::vector<std::filesystem::path> Mounts() const;

  // containerd's process id (for tests that crash it on purpose).
  pid_t pid() const { return process_->pid(); }
  const ContainerdOptions& options() const { return options_; }
  const std::filesystem::path& directory() const { return dir_.path(); }
  std::filesystem::path address() const { return dir_.Join("containerd.sock"); }
  std::filesystem::path ttrpc_address() const { return dir_.Join("containerd.sock.ttrpc"); }
  std::filesystem::path root() const { return dir_.Join("root"); }
  std::filesystem::path state() const { return dir_.Join("state"); }
  std::filesystem::path config_file() const { return dir_.Join("config.toml"); }
  // The hosts directory (config_path) holding <host>/hosts.toml; pass it to `ctr images pull
  // --hosts-dir`.
  std::filesystem::path hosts_dir() const { return dir_.Join("certs.d"); }
  // runc's state root for the CRI's containers; pass it to `ctr run --runc-root`.
  std::filesystem::path runc_root() const { return dir_.Join("runc"); }
  // Where ctr makes a container's stdio FIFOs; pass it to `ctr run --fifo-dir`.
  std::filesystem::path fifo_dir() const { return dir_.Join("fifo"); }
  // A cgroup path of this instance alone ("/berth-containerd-XXXXXX"): give containers a cgroup
  // under it (`ctr run --cgroup <parent>/<id>`, a pod's cgroup_parent) so Stop() can remove it.
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  std::filesystem::path log_file() const { return dir_.Join("containerd.log"); }
  // The last `lines` lines of containerd's log, for failure messages.
  std::string LogTail(size_t lines = 40) const;

 private:
  ContainerdProcess(ContainerdOptions options, TempDir dir);
  Result<void> WriteFiles() const;
  Result<void> Launch();
  Result<void> WaitUntilServing();
  void DeleteAllTasks();
  std::vector<std::string> Sweep();

  ContainerdOptions options_;
  TempDir dir_;
  std::string cgroup_parent_;
  std::unique_ptr<ChildProcess> process_;
  bool stopped_ = false;
};

}  // namespace berth::testing
