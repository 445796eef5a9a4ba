// berthd: the image service daemon. This file is the composition root: it is the only place that
// knows every concrete type. At this stage it loads options, starts logging and waits for a
// signal; the CRI server arrives with the image-service issue.
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "berth/base/log.h"

int main(int argc, char** argv) {
  CLI::App app{"berthd: the berth image service daemon"};
  std::string level_name = "info";
  std::string address = "unix:///run/berth/berth.sock";
  app.add_option("--log-level", level_name, "trace, debug, info, warn, error or off");
  app.add_option("--address", address, "CRI endpoint to listen on");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto level = berth::log::ParseLevel(level_name);
  if (!level) {
    std::fprintf(stderr, "error: %s\n", level.error().ToString().c_str());
    return 2;
  }
  if (auto init = berth::log::Init({.level = *level}); !init) {
    std::fprintf(stderr, "error: %s\n", init.error().ToString().c_str());
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  berth::log::Info("berthd.start", {{"address", address}});
  int received = 0;
  sigwait(&signals, &received);
  berth::log::Info("berthd.stop", {{"signal", received}});
  return 0;
}
