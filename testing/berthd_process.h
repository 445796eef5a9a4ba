// File: testing/berthd_process.h
//
// StartBerthd runs the built berthd for an end-to-end test and returns once it serves: every
// unix socket it was told to listen on accepts a connection. The result is the plain
// ChildProcess (child_process.h), so a test stops it (Stop()), kills it (kill(pid(), SIGKILL),
// WaitForExit()) and reads its log (ReadLog()) as it would any child, and it cannot outlive the
// test.
//
//   ASSERT_OK_AND_ASSIGN(daemon_, StartBerthd({.config_file = dir.Join("config.toml"),
//                                              .root = dir.Join("root"),
//                                              .state = dir.Join("state"),
//                                              .socket = dir.Join("run/berth.sock"),
//                                              .log_file = dir.Join("berthd.log")}));
//
// The program is BERTHD_PATH, a compile definition of this library (testing/CMakeLists.txt:
// the berthd target's file), not an option: every caller runs the same berthd, and linking
// berth::berthd_process makes the build produce berthd first.
//
// Thread safety: as ChildProcess::Start (start berthd from a thread that outlives it).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "berth/base/result.h"
#include "testing/child_process.h"

namespace berth::testing {

// What StartBerthd waits for before it returns.
enum class BerthdStartWait {
  // Every socket of BerthdOptions (the CRI socket, and the Snapshots API's unless there is
  // none) accepts a connection: berthd serves.
  kSocketsAnswer,
  // Nothing: returns once berthd is exec'd (for a test that expects it to refuse to start).
  kNone,
};

struct BerthdOptions {
  // berthd's flags. An empty path is not passed: berthd then takes the config file's value,
  // or its default (without --config, /etc/berth/config.toml when it exists).
  std::filesystem::path config_file;  // --config
  std::filesystem::path root;         // --root
  std::filesystem::path state;        // --state
  // The CRI socket (--address unix://<socket>). Required. Its directory need not exist.
  std::filesystem::path socket;
  // The Snapshots API's socket (--snapshotter-address):
  //   nullopt: no flag; berthd's default, snapshotter.sock beside `socket`, waited for there
  //            (REQUIRES: the config file does not set snapshotter_address; say it here);
  //   an empty path: --snapshotter-address "": berthd serves no Snapshots API;
  //   a path: --snapshotter-address unix://<path>.
  std::optional<std::filesystem::path> snapshotter_socket;
  // --log-level; empty passes none (the config file's level).
  std::string log_level = "info";
  // Appended after the flags above, e.g. {"--grace-period", "1"}.
  std::vector<std::string> extra_args;
  // Put before berthd's argv, e.g. NetNamespace::Exec({}) = {"ip", "netns", "exec", "<ns>"} to
  // run berthd in a network namespace (net_namespace.h; `ip netns exec` execs berthd in its own
  // place, so pid() is still berthd's). The sockets are paths, reached from any namespace.
  std::vector<std::string> command_prefix;
  // Where berthd's stdout and stderr go (appended). Required.
  std::filesystem::path log_file;
  BerthdStartWait wait = BerthdStartWait::kSocketsAnswer;
  // How long to wait for the sockets.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(20);
};

// Starts berthd with `options` and waits as options.wait says. Errors: ChildProcess::Start's
// (kInvalidArgument without a log file, kNotFound if berthd is missing); kInvalidArgument without
// a socket; kUnavailable if berthd exits before its sockets answer, kDeadlineExceeded if they do
// not answer within start_timeout (berthd is then stopped). Both messages carry berthd's log.
// Blocks for at most start_timeout plus ChildProcess::Stop's grace.
Result<std::unique_ptr<ChildProcess>> StartBerthd(const BerthdOptions& options);

}  // namespace berth::testing
