#include "testing/berthd_process.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "berth/base/unique_fd.h"

#ifndef BERTHD_PATH
#error "BERTHD_PATH must name the built berthd (testing/CMakeLists.txt sets it)"
#endif

namespace berth::testing {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> BerthdArgv(const BerthdOptions& options) {
  std::vector<std::string> argv = options.command_prefix;
  argv.emplace_back(BERTHD_PATH);
  auto add_path_flag = [&](std::string_view flag, const fs::path& value) {
    if (!value.empty()) argv.insert(argv.end(), {std::string(flag), value.string()});
  };
  add_path_flag("--config", options.config_file);
  add_path_flag("--root", options.root);
  add_path_flag("--state", options.state);
  argv.insert(argv.end(), {"--address", "unix://" + options.socket.string()});
  if (options.snapshotter_socket) {
    const fs::path& socket = *options.snapshotter_socket;
    argv.insert(argv.end(),
                {"--snapshotter-address", socket.empty() ? "" : "unix://" + socket.string()});
  }
  if (!options.log_level.empty()) argv.insert(argv.end(), {"--log-level", options.log_level});
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  return argv;
}

// The CRI socket, then the Snapshots API's unless berthd serves none.
std::vector<fs::path> BerthdSockets(const BerthdOptions& options) {
  std::vector<fs::path> sockets = {options.socket};
  if (!options.snapshotter_socket) {
    sockets.push_back(options.socket.parent_path() / "snapshotter.sock");
  } else if (!options.snapshotter_socket->empty()) {
    sockets.push_back(*options.snapshotter_socket);
  }
  return sockets;
}

// Whether something accepts connections on the unix socket `path` (a stale socket file left by
// a killed berthd does not).
bool Answers(const fs::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
}

Result<void> WaitUntilServing(ChildProcess& berthd, const std::vector<fs::path>& sockets,
                              std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const fs::path& socket : sockets) {
    while (!Answers(socket)) {
      if (!berthd.Running()) {
        return Fail(ErrorCode::kUnavailable,
                    fmt::format("berthd exited before {} answered; its log:\n{}", socket.string(),
                                berthd.ReadLog()));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Fail(ErrorCode::kDeadlineExceeded,
                    fmt::format("berthd's {} did not answer within {} ms; its log:\n{}",
                                socket.string(), timeout.count(), berthd.ReadLog()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return Ok();
}

}  // namespace

Result<std::unique_ptr<ChildProcess>> StartBerthd(const BerthdOptions& options) {
  if (options.socket.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "StartBerthd needs BerthdOptions::socket");
  }
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<ChildProcess> berthd,
      ChildProcess::Start({.argv = BerthdArgv(options), .log_file = options.log_file}));
  if (options.wait == BerthdStartWait::kSocketsAnswer) {
    BERTH_RETURN_IF_ERROR(WaitUntilServing(*berthd, BerthdSockets(options), options.start_timeout));
  }
  return berthd;
}

}  // namespace berth::testing
