// berth-docgen DIR: writes berth.1, berthd.8, berth-config.5 and the bash completion
// berth.bash into DIR (docs.h). The build runs it; the package installs what it writes.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "cmd/berth/app.h"
#include "cmd/berthd/flags.h"
#include "cmd/docgen/docs.h"

namespace {

constexpr std::string_view kBerthDescription =
    "berth pulls OCI and Docker images from registries into a verified content store, unpacks "
    "their layers into snapshots while they download, and keeps an image store keyed by image "
    "ID with repo tags and digests: the image side of a container runtime, as containerd's CRI "
    "image service has it.\n\n"
    "The berth command works through a running berthd(8) when one answers at the address, and "
    "otherwise opens the root directly (embedded mode; one process at a time holds a root). "
    "Image references are normalized as Docker and containerd do: busybox means "
    "docker.io/library/busybox:latest.\n\n"
    "Errors go to stderr as \"error: <message>\", naming what was wrong and what to do; the "
    "exit status is then 1.";

constexpr std::string_view kBerthFiles =
    "/etc/berth/config.toml: the configuration, berth-config(5).\n\n"
    "/var/lib/berth: the root: content store, snapshots and metadata.\n\n"
    "/run/berth/berth.sock: berthd's CRI socket.";

constexpr std::string_view kBerthdDescription =
    "berthd serves the Kubernetes CRI ImageService (runtime.v1 and v1alpha2) and berth's Admin "
    "service on a unix socket, for kubelet's --image-service-endpoint, and containerd's Snapshots "
    "API on a second socket, so that containerd can use berth as its snapshotter and have berth "
    "fetch and unpack the layers of the images it pulls.\n\n"
    "Flags override the configuration file's keys of the same name (berth-config(5)). On SIGTERM "
    "or SIGINT berthd stops accepting calls, lets those in flight finish within the grace "
    "period, cancels the rest and exits 0. At start it takes the root's lock (a second berthd on "
    "the same root refuses to start), finishes or undoes what a killed predecessor left, and "
    "collects garbage.\n\n"
    "Logs go to stderr, one line per event with key=value fields; credentials never appear in "
    "them.";

bool Write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) std::fprintf(stderr, "berth-docgen: error: cannot write %s\n", path.c_str());
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: berth-docgen DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::error_code error;
  std::filesystem::create_directories(dir, error);

  CLI::App berth;
  int status = 0;
  berth::cli::BuildApp(berth, &status);
  CLI::App berthd;
  berth::daemon::Flags flags;
  berth::daemon::BuildApp(berthd, flags);

  bool ok = Write(dir / "berth.1", berth::docgen::ManPage(berth, {.section = "1",
                                                                  .manual = "User Commands",
                                                                  .description = kBerthDescription,
                                                                  .files = kBerthFiles,
                                                                  .see_also = "berthd(8), "
                                                                              "berth-config(5)"}));
  ok &= Write(dir / "berthd.8",
              berth::docgen::ManPage(berthd, {.section = "8",
                                              .manual = "System Administration",
                                              .description = kBerthdDescription,
                                              .files = kBerthFiles,
                                              .see_also = "berth(1), berth-config(5)"}));
  ok &= Write(dir / "berth-config.5", berth::docgen::ConfigManPage());
  ok &=
      Write(dir / "berth.bash", berth::docgen::BashCompletion(berth, {"inspect", "rmi", "mount"}));
  return ok ? 0 : 1;
}
