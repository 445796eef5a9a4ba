#include "testing/net_namespace.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <thread>

#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kIp[] = "/usr/sbin/ip";
const fs::path kNetnsRun = "/run/netns";
const fs::path kNetnsEtc = "/etc/netns";

Result<std::string> RunChecked(const std::vector<std::string>& argv, const fs::path& scratch) {
  BERTH_ASSIGN_OR_RETURN(CommandResult result, RunCommand(argv, scratch));
  if (result.exit_code != 0) {
    std::string command;
    for (const std::string& word : argv) command += (command.empty() ? "" : " ") + word;
    return Fail(ErrorCode::kInternal, fmt::format("`{}` exited with {}: {}{}", command,
                                                  result.exit_code, result.out, result.err));
  }
  return std::move(result.out);
}

// Kills (SIGKILL) the processes inside the namespace `name`: only a test's own programs run in
// its namespaces, and one that changed its credentials (dnsmasq drops capabilities) lost the
// parent-death signal that would have ended it with the test.
void KillProcessesInside(const std::string& name) {
  const std::string command = fmt::format("{} netns pids {} 2>/dev/null", kIp, name);
  FILE* pipe = ::popen(command.c_str(), "r");  // NOLINT(cert-env33-c): a fixed program
  if (pipe == nullptr) return;
  std::vector<pid_t> pids;
  std::array<char, 32> line{};
  while (std::fgets(line.data(), line.size(), pipe) != nullptr) {
    pid_t pid = 0;
    const std::string_view text(line.data());
    if (std::from_chars(text.data(), text.data() + text.size(), pid).ec == std::errc() && pid > 1 &&
        pid != ::getpid()) {
      pids.push_back(pid);
    }
  }
  ::pclose(pipe);
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
}

void DeleteNamespace(const std::string& name) {
  KillProcessesInside(name);
  // Not through RunCommand: this runs in destructors and must not need a scratch directory.
  const std::string command = fmt::format("{} netns delete {} 2>/dev/null", kIp, name);
  int ignored = std::system(command.c_str());  // NOLINT(cert-env33-c): a fixed program
  (void)ignored;
  std::error_code error;
  fs::remove_all(kNetnsEtc / name, error);
}

// Whether `name` is "<prefix>-<pid>-…" for a pid that is not running.
bool IsStale(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix) || name.substr(prefix.size(), 1) != "-") return false;
  const std::string_view rest = name.substr(prefix.size() + 1);
  const size_t dash = rest.find('-');
  if (dash == std::string_view::npos) return false;
  pid_t pid = 0;
  const auto [end, parsed] = std::from_chars(rest.data(), rest.data() + dash, pid);
  if (parsed != std::errc() || end != rest.data() + dash || pid <= 0) return false;
  return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

Result<std::unique_ptr<NetNamespace>> NetNamespace::Create(std::string name) {
  if (fs::exists(kNetnsRun / name)) {
    return Fail(ErrorCode::kAlreadyExists, "network namespace " + name + " exists");
  }
  BERTH_ASSIGN_OR_RETURN(TempDir scratch, TempDir::Create("netns"));
  Result<std::string> added = RunChecked({kIp, "netns", "add", name}, scratch.path());
  if (!added) {
    return Fail(ErrorCode::kFailedPrecondition,
                "cannot create a network namespace (needs root): " + added.error().ToString());
  }
  auto created = std::unique_ptr<NetNamespace>(new NetNamespace(std::move(name)));
  BERTH_RETURN_IF_ERROR(
      RunChecked({kIp, "-n", created->name_, "link", "set", "lo", "up"}, scratch.path()));
  return created;
}

NetNamespace::~NetNamespace() { Remove(); }

void NetNamespace::Remove() {
  if (removed_) return;
  removed_ = true;
  DeleteNamespace(name_);
}

std::vector<std::string> NetNamespace::Exec(const std::vector<std::string>& argv) const {
  std::vector<std::string> full = {kIp, "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

Result<CommandResult> NetNamespace::Run(const std::vector<std::string>& argv,
                                        const fs::path& scratch_dir) const {
  return RunCommand(Exec(argv), scratch_dir);
}

Result<std::string> NetNamespace::RunOk(const std::vector<std::string>& argv,
                                        const fs::path& scratch_dir) const {
  return RunChecked(Exec(argv), scratch_dir);
}

Result<void> NetNamespace::SetNameserver(std::string_view address) const {
  const fs::path dir = kNetnsEtc / name_;
  BERTH_RETURN_IF_ERROR(MakeDirectories(dir));
  return WriteFileAtomically(dir / "resolv.conf",
                             fmt::format("nameserver {}\noptions timeout:1 attempts:2\n", address));
}

Result<void> NetNamespace::RunInside(const std::function<void()>& fn) const {
  UniqueFd fd(::open((kNetnsRun / name_).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail(ErrnoError(errno, "open network namespace " + name_));
  int setns_errno = 0;
  std::thread inside([&] {
    if (::setns(fd.get(), CLONE_NEWNET) != 0) {
      setns_errno = errno;
      return;
    }
    fn();
  });
  inside.join();
  if (setns_errno != 0) return Fail(ErrnoError(setns_errno, "join network namespace " + name_));
  return Ok();
}

Result<HttpFetchResponse> NetNamespace::Fetch(const HttpFetchRequest& request) const {
  Result<HttpFetchResponse> response = Fail(ErrorCode::kInternal, "not fetched");
  BERTH_RETURN_IF_ERROR(RunInside([&] { response = HttpFetch(request); }));
  return response;
}

Result<std::unique_ptr<TestNetwork>> TestNetwork::Create(TestNetworkOptions options) {
  RemoveStale(options.prefix);
  auto network = std::unique_ptr<TestNetwork>(new TestNetwork(std::move(options)));
  BERTH_ASSIGN_OR_RETURN(network->scratch_, TempDir::Create("network"));
  BERTH_ASSIGN_OR_RETURN(network->switch_, NetNamespace::Create(network->NameFor("switch")));
  const std::string& name = network->switch_->name();
  const fs::path& scratch = network->scratch_.path();
  BERTH_RETURN_IF_ERROR(
      RunChecked({kIp, "-n", name, "link", "add", "br0", "type", "bridge"}, scratch));
  BERTH_RETURN_IF_ERROR(RunChecked({kIp, "-n", name, "link", "set", "br0", "up"}, scratch));
  return network;
}

TestNetwork::~TestNetwork() {
  hosts_.clear();
  switch_.reset();
}

std::string TestNetwork::NameFor(std::string_view role) const {
  return fmt::format("{}-{}-{}", options_.prefix, ::getpid(), role);
}

std::string TestNetwork::Address(int host) const {
  return fmt::format("{}.{}", options_.subnet, host);
}

Result<NetNamespace*> TestNetwork::AddHost(std::string_view role, int host) {
  if (host < 1 || host > 254) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("host number {} is not 1..254", host));
  }
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<NetNamespace> ns, NetNamespace::Create(NameFor(role)));
  const fs::path& scratch = scratch_.path();
  const std::string& sw = switch_->name();
  // The pair is made in the switch namespace, its peer end moved into the host's as eth0: no
  // interface ever appears in the root namespace.
  const std::string port = fmt::format("p{}", host);
  BERTH_RETURN_IF_ERROR(RunChecked({kIp, "-n", sw, "link", "add", port, "type", "veth", "peer",
                                    "name", "eth0", "netns", ns->name()},
                                   scratch));
  BERTH_RETURN_IF_ERROR(RunChecked({kIp, "-n", sw, "link", "set", port, "master", "br0"}, scratch));
  BERTH_RETURN_IF_ERROR(RunChecked({kIp, "-n", sw, "link", "set", port, "up"}, scratch));
  BERTH_RETURN_IF_ERROR(RunChecked(
      {kIp, "-n", ns->name(), "addr", "add", Address(host) + "/24", "dev", "eth0"}, scratch));
  BERTH_RETURN_IF_ERROR(RunChecked({kIp, "-n", ns->name(), "link", "set", "eth0", "up"}, scratch));
  hosts_.push_back(std::move(ns));
  return hosts_.back().get();
}

int TestNetwork::RemoveStale(std::string_view prefix) {
  int removed = 0;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(kNetnsRun, error)) {
    const std::string name = entry.path().filename().string();
    if (!IsStale(name, prefix)) continue;
    DeleteNamespace(name);
    ++removed;
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(kNetnsEtc, error)) {
    if (IsStale(entry.path().filename().string(), prefix)) fs::remove_all(entry.path(), error);
  }
  return removed;
}

}  // namespace berth::testing
