#include "cmd/berthd/flags.h"

#include "berth/stack/about.h"

namespace berth::daemon {

void BuildApp(CLI::App& app, Flags& flags) {
  app.name("berthd");
  app.description("berthd: the berth image service daemon (CRI ImageService over a unix socket)");
  app.add_option("--config", flags.config_file,
                 "Config file (default /etc/berth/config.toml when it exists)")
      ->type_name("FILE");
  app.add_option("--root", flags.root, "Where content, snapshots and metadata live")
      ->type_name("DIR");
  app.add_option("--state", flags.state, "Volatile state directory")->type_name("DIR");
  app.add_option("--address", flags.address, "CRI endpoint, unix:///ABSOLUTE/PATH")
      ->type_name("ADDRESS");
  app.add_option("--snapshotter-address", flags.snapshotter_address,
                 "containerd Snapshots API endpoint, unix:///ABSOLUTE/PATH, or \"\" for none "
                 "(default: snapshotter.sock beside the CRI socket)")
      ->type_name("ADDRESS");
  app.add_option("--metrics-address", flags.metrics_address,
                 "Prometheus metrics endpoint, host:port (served at /v1/metrics), or \"\" for "
                 "none (default: the config's metrics_address, off)")
      ->type_name("HOST:PORT");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL");
  app.add_option("--grace-period", flags.grace_seconds,
                 "Seconds in-flight requests may take after SIGTERM/SIGINT")
      ->type_name("SECONDS")
      ->check(CLI::NonNegativeNumber);
  std::string about = stack::About("berthd");
  about.pop_back();  // CLI11 prints the version text with a newline of its own
  app.set_version_flag("--version", about,
                       "Print the version, the source revision and the snapshotters");
}

}  // namespace berth::daemon
