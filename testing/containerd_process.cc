#include "testing/containerd_process.h"

#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "berth/base/file_util.h"
#include "berth/digest/digest.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

// containerd 1.6 puts every shim's socket here whatever its state dir (defaults.DefaultStateDir),
// named by the sha256 of "<containerd address>/<namespace>/<id>".
constexpr std::string_view kShimSocketDir = "/run/containerd/s";
constexpr std::string_view kCgroupRoot = "/sys/fs/cgroup";

// A TOML basic string. The paths and names written here are ours (temp dirs, test names).
std::string Quote(std::string_view text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

std::string QuotePath(const fs::path& path) { return Quote(std::string_view(path.native())); }

std::string CriSection(const ContainerdOptions& options, const fs::path& directory) {
  const std::string cri = R"([plugins."io.containerd.grpc.v1.cri")";
  std::string text = cri + "]\n";
  text += "  sandbox_image = " + Quote(options.sandbox_image) + "\n";
  // runc cannot set the sandbox's oom_score_adj of -998 without CAP_SYS_RESOURCE, which root's
  // bounding set lacks here: it dies in nsexec ("can't get final child's PID from pipe").
  text += "  restrict_oom_score_adj = true\n";
  // Pod network namespaces under our state dir instead of /var/run/netns.
  text += "  netns_mounts_under_state_dir = true\n";
  text += "  stream_server_address = \"127.0.0.1\"\n";
  text += "  stream_server_port = \"0\"\n";
  text += cri + ".cni]\n";
  text += "  bin_dir = \"/usr/lib/cni\"\n";
  text += "  conf_dir = " + QuotePath(directory / "cni") + "\n";
  text += cri + ".containerd]\n";
  text += "  snapshotter = " + Quote(options.cri_snapshotter) + "\n";
  text += "  default_runtime_name = \"runc\"\n";
  text += fmt::format("  disable_snapshot_annotations = {}\n",
                      options.snapshot_annotations == SnapshotAnnotations::kDisabled);
  text += cri + ".containerd.runtimes.runc]\n";
  text += "  runtime_type = \"io.containerd.runc.v2\"\n";
  text += cri + ".containerd.runtimes.runc.options]\n";
  // PID 1 is not systemd: with true, runc wants a slice:prefix:name cgroups path and fails.
  text += "  SystemdCgroup = false\n";
  text += "  Root = " + QuotePath(directory / "runc") + "\n";
  text += cri + ".registry]\n";
  text += "  config_path = " + QuotePath(directory / "certs.d") + "\n";
  return text;
}

// The [host] table is what containerd 1.6 needs (see RegistryHost); `server` is its fallback, so
// that a host that answers 404 is not followed by https://<name>.
std::string HostsToml(const RegistryHost& host) {
  return fmt::format(
      "server = {0}\n\n"
      "[host.{0}]\n"
      "  capabilities = [\"pull\", \"resolve\"]\n",
      Quote(host.endpoint));
}

// The /proc/<pid>/cmdline of a process as its arguments; empty if it is gone.
std::vector<std::string> CommandLine(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::vector<std::string> args;
  std::string arg;
  while (std::getline(in, arg, '\0')) args.push_back(arg);
  return args;
}

// Parent pid and state letter from /proc/<pid>/stat; state 0 if it is gone.
std::pair<pid_t, char> ParentAndState(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  std::getline(in, stat);
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return {0, 0};
  std::istringstream fields(stat.substr(paren + 1));
  char state = 0;
  pid_t parent = 0;
  fields >> state >> parent;
  return {parent, state};
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
      pids.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return pids;
}

bool Alive(pid_t pid) {
  char state = ParentAndState(pid).second;
  return state != 0 && state != 'Z' && state != 'X';
}

// The value after `flag` in `args`, or empty.
std::string FlagValue(const std::vector<std::string>& args, std::string_view flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) return args[i + 1];
  }
  return {};
}

struct Shim {
  pid_t pid = 0;
  std::string namespace_name;
  std::string id;
};

std::vector<Shim> FindShims(const fs::path& address) {
  std::vector<Shim> shims;
  for (pid_t pid : AllPids()) {
    std::vector<std::string> args = CommandLine(pid);
    if (args.empty() || !fs::path(args[0]).filename().string().starts_with("containerd-shim")) {
      continue;
    }
    if (FlagValue(args, "-address") != address.native() || !Alive(pid)) continue;
    shims.push_back({pid, FlagValue(args, "-namespace"), FlagValue(args, "-id")});
  }
  return shims;
}

// Every live descendant of `root`, children before their parents' later siblings.
std::vector<pid_t> Descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  for (pid_t pid : AllPids()) {
    auto [parent, state] = ParentAndState(pid);
    if (state != 0 && state != 'Z') children.emplace(parent, pid);
  }
  std::vector<pid_t> found;
  std::vector<pid_t> pending = {root};
  while (!pending.empty()) {
    pid_t pid = pending.back();
    pending.pop_back();
    auto [begin, end] = children.equal_range(pid);
    for (auto it = begin; it != end; ++it) {
      found.push_back(it->second);
      pending.push_back(it->second);
    }
  }
  return found;
}

void WaitGone(const std::vector<pid_t>& pids, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (pid_t pid : pids) {
    while (Alive(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountPath(std::string_view text) {
  std::string path;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size()) {
      path += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 3)), nullptr, 8));
      i += 3;
    } else {
      path += text[i];
    }
  }
  return path;
}

// Removes the cgroup directory `path` and every cgroup below it, deepest first (rmdir(2) removes
// a cgroup directory although it lists control files). Notes in `removed` the cgroups below the
// top one (a container's, left behind) and every rmdir that failed.
void RemoveCgroupTree(const fs::path& path, int depth, std::vector<std::string>& removed) {
  std::error_code ec;
  std::vector<fs::path> children;
  for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) children.push_back(entry.path());
  }
  for (const fs::path& child : children) RemoveCgroupTree(child, depth + 1, removed);
  if (::rmdir(path.c_str()) != 0) {
    removed.push_back(fmt::format("cgroup {} (rmdir failed: {})", path.string(), strerror(errno)));
  } else if (depth > 0) {
    removed.push_back("cgroup " + path.string());
  }
}

}  // namespace

ContainerdOptions& ContainerdOptions::UseProxySnapshotter(std::string name, fs::path socket) {
  cri_snapshotter = name;
  snapshot_annotations = SnapshotAnnotations::kEnabled;
  proxy_snapshotters.push_back({std::move(name), std::move(socket)});
  return *this;
}

std::string ContainerdConfigToml(const ContainerdOptions& options, const fs::path& directory) {
  std::string text = "version = 2\n";
  text += "root = " + QuotePath(directory / "root") + "\n";
  text += "state = " + QuotePath(directory / "state") + "\n";
  text += "temp = " + QuotePath(directory / "tmp") + "\n";
  // Snapshotters that cannot work on a temp dir here; they only add errors to the log.
  text +=
      "disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", "
      "\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", "
      "\"io.containerd.snapshotter.v1.zfs\"]\n\n";
  text += "[grpc]\n  address = " + QuotePath(directory / "containerd.sock") + "\n";
  text += "[ttrpc]\n  address = " + QuotePath(directory / "containerd.sock.ttrpc") + "\n";
  text += "[debug]\n  level = " + Quote(options.log_level) + "\n\n";
  for (const ProxySnapshotter& proxy : options.proxy_snapshotters) {
    text += "[proxy_plugins." + Quote(proxy.name) + "]\n";
    text += "  type = \"snapshot\"\n";
    text += "  address = " + QuotePath(proxy.socket) + "\n";
  }
  // The opt plugin's default, /opt/containerd, would be shared by every instance.
  text += "\n[plugins.\"io.containerd.internal.v1.opt\"]\n";
  text += "  path = " + QuotePath(directory / "opt") + "\n";
  // Collect garbage at once after every removal (the default waits for 100 mutations), so the
  // directory of a removed snapshot goes right away and a test can check that it did.
  text += "[plugins.\"io.containerd.gc.v1.scheduler\"]\n";
  text += "  deletion_threshold = 1\n";
  text += "  schedule_delay = \"0s\"\n";
  text += CriSection(options, directory);
  return text;
}

Result<void> ContainerdProcess::CheckInstalled(const ContainerdOptions& options) {
  const std::vector<std::pair<fs::path, std::string_view>> programs = {
      {options.containerd_binary, "containerd"},
      {options.ctr_binary, "containerd"},
      {"/usr/bin/containerd-shim-runc-v2", "containerd"},
      {"/usr/sbin/runc", "runc"},
  };
  for (const auto& [program, package] : programs) {
    if (::access(program.c_str(), X_OK) != 0) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("{} is not installed (Debian package {}; scripts/setup.sh installs "
                              "it)",
                              program.string(), package));
    }
  }
  return {};
}

ContainerdProcess::ContainerdProcess(ContainerdOptions options, TempDir dir)
    : options_(std::move(options)), dir_(std::move(dir)) {
  cgroup_parent_ = "/" + dir_.path().filename().string();
}

ContainerdProcess::~ContainerdProcess() { Stop(); }

Result<std::unique_ptr<ContainerdProcess>> ContainerdProcess::Start(ContainerdOptions options) {
  BERTH_RETURN_IF_ERROR(CheckInstalled(options));
  BERTH_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("containerd"));
  auto containerd =
      std::unique_ptr<ContainerdProcess>(new ContainerdProcess(std::move(options), std::move(dir)));
  BERTH_RETURN_IF_ERROR(containerd->WriteFiles());
  BERTH_RETURN_IF_ERROR(containerd->Launch());
  return containerd;
}

Result<void> ContainerdProcess::Launch() {
  BERTH_ASSIGN_OR_RETURN(
      process_, ChildProcess::Start({.argv = {options_.containerd_binary.string(), "--config",
                                              config_file().string()},
                                     .log_file = log_file()}));
  return WaitUntilServing();
}

Result<void> ContainerdProcess::WaitForSnapshotter(std::string_view namespace_name,
                                                   std::string_view snapshotter,
                                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (int probe = 1;; ++probe) {
    const std::string key = fmt::format("berth-harness-probe-{}", probe);
    const std::string name(snapshotter);
    BERTH_ASSIGN_OR_RETURN(
        CommandResult prepared,
        Ctr(namespace_name, {"snapshots", "--snapshotter", name, "prepare", key, ""}));
    if (prepared.exit_code == 0) {
      BERTH_ASSIGN_OR_RETURN(CommandResult removed,
                             Ctr(namespace_name, {"snapshots", "--snapshotter", name, "rm", key}));
      if (removed.exit_code == 0) return {};
      last = removed.err;
    } else {
      last = prepared.err;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ErrorCode::kDeadlineExceeded,
                  fmt::format("containerd did not reach snapshotter {} within {} ms: {}", name,
                              timeout.count(), last));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<void> ContainerdProcess::Restart() {
  if (stopped_) {
    return Fail(ErrorCode::kFailedPrecondition, "ContainerdProcess::Restart after Stop");
  }
  process_->Stop(options_.stop_grace);
  return Launch();
}

Result<void> ContainerdProcess::WriteFiles() const {
  for (const fs::path& path : {root(), state(), hosts_dir(), runc_root(), fifo_dir(),
                               directory() / "cni", directory() / "opt", directory() / "tmp"}) {
    BERTH_RETURN_IF_ERROR(MakeDirectories(path));
  }
  BERTH_RETURN_IF_ERROR(
      WriteFileAtomically(config_file(), ContainerdConfigToml(options_, directory())));
  return WriteHostsDir(hosts_dir(), options_.registry_hosts);
}

Result<void> WriteHostsDir(const fs::path& directory, const std::vector<RegistryHost>& hosts) {
  for (const RegistryHost& host : hosts) {
    BERTH_RETURN_IF_ERROR(MakeDirectories(directory / host.host));
    BERTH_RETURN_IF_ERROR(
        WriteFileAtomically(directory / host.host / "hosts.toml", HostsToml(host)));
  }
  return {};
}

Result<void> ContainerdProcess::WaitUntilServing() {
  auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!process_->Running()) {
      return Fail(ErrorCode::kUnavailable,
                  "containerd exited while starting; its log ends:\n" + LogTail());
    }
    if (fs::exists(address())) {
      BERTH_ASSIGN_OR_RETURN(CommandResult version, Ctr("default", {"version"}));
      if (version.exit_code == 0) return {};
      last = version.err;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Fail(ErrorCode::kDeadlineExceeded,
              fmt::format("containerd did not answer `ctr version` within {} ms (last: {}); its "
                          "log ends:\n{}",
                          options_.start_timeout.count(), last, LogTail()));
}

Result<CommandResult> ContainerdProcess::Ctr(std::string_view namespace_name,
                                             const std::vector<std::string>& args) const {
  std::string scratch = (directory() / "ctr.XXXXXX").string();
  if (::mkdtemp(scratch.data()) == nullptr) {
    return Fail(ErrnoError(errno, "mkdtemp " + scratch));
  }
  std::vector<std::string> argv = {options_.ctr_binary.string(), "--address", address().string(),
                                   "--connect-timeout",          "5s",        "--namespace",
                                   std::string(namespace_name)};
  argv.insert(argv.end(), args.begin(), args.end());
  Result<CommandResult> result = RunCommand(argv, scratch);
  std::error_code ec;
  fs::remove_all(scratch, ec);
  return result;
}

std::vector<std::string> ContainerdProcess::Shims() const {
  std::vector<std::string> shims;
  for (const Shim& shim : FindShims(address())) {
    shims.push_back(fmt::format("pid {} ({}/{})", shim.pid, shim.namespace_name, shim.id));
  }
  return shims;
}

std::vector<fs::path> ContainerdProcess::Mounts() const {
  std::ifstream in("/proc/self/mountinfo");
  const std::string prefix = directory().string() + "/";
  std::vector<fs::path> mounts;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point;
    fields >> id >> parent >> device >> root >> mount_point;
    std::string path = UnescapeMountPath(mount_point);
    if (path.starts_with(prefix)) mounts.emplace_back(path);
  }
  std::sort(mounts.begin(), mounts.end(), [](const fs::path& a, const fs::path& b) {
    return a.native().size() > b.native().size();
  });
  return mounts;
}

std::string ContainerdProcess::LogTail(size_t lines) const {
  std::string log = process_ != nullptr ? process_->ReadLog() : ReadFile(log_file()).value_or("");
  // Walk back over `lines` line starts, not counting the newline that ends the log.
  size_t start = log.size();
  for (size_t seen = 0; start > 0; --start) {
    if (log[start - 1] == '\n' && start != log.size() && ++seen == lines) break;
  }
  return "--- containerd log (" + log_file().string() + ") ---\n" + log.substr(start);
}

void ContainerdProcess::DeleteAllTasks() {
  Result<CommandResult> namespaces = Ctr("default", {"--timeout", "10s", "namespaces", "ls", "-q"});
  if (!namespaces || namespaces->exit_code != 0) return;
  std::istringstream names(namespaces->out);
  for (std::string name; std::getline(names, name);) {
    if (name.empty()) continue;
    Result<CommandResult> tasks = Ctr(name, {"--timeout", "10s", "tasks", "ls", "-q"});
    if (!tasks || tasks->exit_code != 0) continue;
    std::istringstream ids(tasks->out);
    for (std::string id; std::getline(ids, id);) {
      if (!id.empty()) (void)Ctr(name, {"--timeout", "10s", "tasks", "delete", "--force", id});
    }
  }
}

std::vector<std::string> ContainerdProcess::Stop() {
  if (stopped_) return {};
  stopped_ = true;
  if (process_ != nullptr && process_->Running()) DeleteAllTasks();
  if (process_ != nullptr) process_->Stop(options_.stop_grace);
  return Sweep();
}

std::vector<std::string> ContainerdProcess::Sweep() {
  std::vector<std::string> removed;
  std::vector<Shim> shims = FindShims(address());
  std::vector<pid_t> killed;
  for (const Shim& shim : shims) {
    for (pid_t pid : Descendants(shim.pid)) {
      ::kill(pid, SIGKILL);
      killed.push_back(pid);
      removed.push_back(fmt::format("pid {} under shim {}", pid, shim.pid));
    }
    ::kill(shim.pid, SIGKILL);
    killed.push_back(shim.pid);
    removed.push_back(fmt::format("shim pid {} ({}/{})", shim.pid, shim.namespace_name, shim.id));
  }
  WaitGone(killed, std::chrono::seconds(5));
  for (const Shim& shim : shims) {
    // As containerd names it: sha256 of filepath.Join(address, namespace, id).
    std::string key = (address() / shim.namespace_name / shim.id).string();
    fs::path socket = fs::path(kShimSocketDir) / Digest::Sha256Of(key).encoded();
    std::error_code ec;
    if (fs::remove(socket, ec)) removed.push_back("shim socket " + socket.string());
  }
  for (const fs::path& mount : Mounts()) {
    if (::umount2(mount.c_str(), MNT_DETACH) == 0) removed.push_back("mount " + mount.string());
  }
  // The cgroup v1 hierarchies (hybrid machines) and the unified one; symlinks such as
  // cpu -> cpu,cpuacct name a hierarchy already visited.
  std::error_code ec;
  const std::string own = cgroup_parent_.substr(1);
  std::vector<fs::path> cgroups = {fs::path(kCgroupRoot) / own};
  for (const fs::directory_entry& hierarchy : fs::directory_iterator(kCgroupRoot, ec)) {
    if (!hierarchy.is_symlink(ec)) cgroups.push_back(hierarchy.path() / own);
  }
  for (const fs::path& cgroup : cgroups) {
    if (fs::is_directory(cgroup, ec)) RemoveCgroupTree(cgroup, 0, removed);
  }
  return removed;
}

}  // namespace berth::testing
