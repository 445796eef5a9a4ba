// berthd: the image service daemon. It loads the config, takes the root's lock
// (berth/stack/root_lock.h), builds the image service with everything under it
// (berth/stack/image_stack.h: the one composition the daemon and the CLI's embedded mode share),
// serves the CRI ImageService (runtime.v1 and v1alpha2) and berth.v1.Admin (pull progress, gc,
// check; berth/cri/admin_server.h) on a unix socket, containerd's Snapshots API over the same
// stack's snapshotter on another (config snapshotter_address; berth/containerd), with remote
// snapshots (berth/containerd/remote_layers.h: berth fetches the layers containerd's CRI asks
// for), and on
// SIGTERM/SIGINT stops accepting, lets in-flight requests finish within the grace period, and
// exits 0.
//
// With `metrics_address` set (or --metrics-address), it also serves Prometheus metrics over HTTP
// at http://<metrics_address>/v1/metrics (berth/metrics; docs/metrics.md): the registry of
// metrics is made here and handed to what reports into it — the image stack's observers, a
// gRPC interceptor on both servers, scrape-time gauges over the stack's state, process_*.
//
// With `peers.listen` set, it also serves its verified content to the other berth nodes of the
// cluster as a read-only OCI distribution endpoint (berth/peers/blob_server.h: blobs and
// manifests by digest, bounded uploads and bandwidth, TLS and mutual TLS when configured).
//
// With `upstream_image_endpoint` set (front mode), the CRI ImageService is a front for that
// upstream's (berth/cri/image_service_front.h): the image calls go to containerd, and each pull's
// credentials are held in the process's one registry::PullCredentials while it runs. The image
// stack is built all the same: berth.v1.Admin (gc, check) keeps serving berth's own root, and
// the Snapshots API serves its snapshotter.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "berth/base/log.h"
#include "berth/base/unique_fd.h"
#include "berth/config/config.h"
#include "berth/containerd/remote_layers.h"
#include "berth/containerd/snapshots_service.h"
#include "berth/cri/admin_server.h"
#include "berth/cri/image_service_client.h"
#include "berth/cri/image_service_front.h"
#include "berth/cri/image_service_server.h"
#include "berth/metrics/daemon_metrics.h"
#include "berth/metrics/grpc_metrics.h"
#include "berth/metrics/http_server.h"
#include "berth/metrics/metrics.h"
#include "berth/metrics/process_metrics.h"
#include "berth/peers/blob_server.h"
#include "berth/registry/pull_credentials.h"
#include "berth/stack/image_stack.h"
#include "berth/stack/root_lock.h"
#include "cmd/berthd/flags.h"

namespace berth::daemon {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDefaultConfig = "/etc/berth/config.toml";

Result<config::Config> LoadConfig(const Flags& flags) {
  config::Config config = config::DefaultConfig();
  if (!flags.config_file.empty()) {
    BERTH_ASSIGN_OR_RETURN(config, config::LoadConfigFile(flags.config_file));
  } else if (::access(std::string(kDefaultConfig).c_str(), R_OK) == 0) {
    BERTH_ASSIGN_OR_RETURN(config, config::LoadConfigFile(kDefaultConfig));
  }
  if (!flags.root.empty()) config.root = fs::absolute(flags.root);
  if (!flags.state.empty()) config.state = fs::absolute(flags.state);
  if (!flags.address.empty()) config.address = flags.address;
  if (flags.snapshotter_address) config.snapshotter_address = flags.snapshotter_address;
  if (flags.metrics_address) config.metrics_address = *flags.metrics_address;
  if (!flags.log_level.empty()) {
    BERTH_ASSIGN_OR_RETURN(config.log_level, log::ParseLevel(flags.log_level));
  }
  return config;
}

Result<void> MakeDirectories(const fs::path& directory, fs::perms perms) {
  std::error_code error;
  bool created = fs::create_directories(directory, error);
  if (error) return Fail(ErrnoError(error.value(), fmt::format("create {}", directory.string())));
  if (created) fs::permissions(directory, perms, error);
  return Ok();
}

// Makes `path` free for a new socket: creates its directory, and removes a stale socket left by
// a berthd that died — but only if nothing accepts connections on it.
Result<void> PrepareSocketPath(const fs::path& path) {
  BERTH_RETURN_IF_ERROR(MakeDirectories(
      path.parent_path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Fail(ErrnoError(errno, fmt::format("stat {}", path.string())));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(ErrorCode::kAlreadyExists,
                fmt::format("{} exists and is not a socket; not replacing it", path.string()));
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return Fail(ErrnoError(errno, "socket"));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    return Fail(
        ErrorCode::kUnavailable,
        fmt::format("something is already listening on {}; not replacing it", path.string()));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Fail(ErrnoError(errno, fmt::format("remove stale socket {}", path.string())));
  }
  log::Info("berthd.stale_socket_removed", {{"path", path.string()}});
  return Ok();
}

// The CRI ImageService, both versions: berth's own image service (standalone), or a front for
// config.upstream_image_endpoint holding pull credentials in `pull_credentials` (front mode).
struct CriServices {
  std::unique_ptr<grpc::Service> v1;
  std::unique_ptr<grpc::Service> v1alpha2;
};

Result<std::unique_ptr<CriServices>> MakeCriServices(const config::Config& config,
                                                     stack::ImageStack& stack,
                                                     registry::PullCredentials& pull_credentials) {
  auto services = std::make_unique<CriServices>();
  if (config.upstream_image_endpoint.empty()) {
    const cri::ServerOptions options{.data_directories = {config.root, stack.snapshot_root()}};
    services->v1 = std::make_unique<cri::ImageServiceV1>(stack.images(), options);
    services->v1alpha2 = std::make_unique<cri::ImageServiceV1alpha2>(stack.images(), options);
    return services;
  }
  BERTH_ASSIGN_OR_RETURN(cri::Upstream upstream,
                         cri::ConnectUpstream(config.upstream_image_endpoint));
  services->v1 = std::make_unique<cri::ImageServiceFrontV1>(upstream, pull_credentials);
  services->v1alpha2 = std::make_unique<cri::ImageServiceFrontV1alpha2>(upstream, pull_credentials);
  return services;
}

// Serves `services` on the unix socket `socket_path` (a stale socket replaced, as
// PrepareSocketPath says), mode 0660, every call counted by `grpc_metrics`.
Result<std::unique_ptr<grpc::Server>> Serve(const fs::path& socket_path,
                                            std::initializer_list<grpc::Service*> services,
                                            metrics::GrpcMetrics& grpc_metrics) {
  BERTH_RETURN_IF_ERROR(PrepareSocketPath(socket_path));
  grpc::ServerBuilder builder;
  builder.experimental().SetInterceptorCreators(grpc_metrics.InterceptorCreators());
  builder.AddListeningPort("unix:" + socket_path.string(), grpc::InsecureServerCredentials());
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    return Fail(ErrorCode::kUnavailable, fmt::format("cannot listen on {}", socket_path.string()));
  }
  if (::chmod(socket_path.c_str(), 0660) != 0) {
    return Fail(ErrnoError(errno, fmt::format("chmod {}", socket_path.string())));
  }
  return server;
}

// The socket of config::SnapshotterAddress(config), or nullopt when that is empty (serve none).
Result<std::optional<fs::path>> SnapshotterSocket(const config::Config& config,
                                                  const fs::path& cri_socket) {
  const std::string address = config::SnapshotterAddress(config);
  if (address.empty()) return std::optional<fs::path>();
  BERTH_ASSIGN_OR_RETURN(fs::path path, cri::UnixSocketPath(address));
  if (path == cri_socket) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("snapshotter_address and address are both {}; containerd's Snapshots "
                            "API needs a socket of its own (or set snapshotter_address = \"\")",
                            path.string()));
  }
  return std::optional<fs::path>(std::move(path));
}

// berthd's HTTP endpoints, each only when its address is set: Prometheus metrics
// (metrics_address) and the peer endpoint (peers.listen).
struct HttpEndpoints {
  std::unique_ptr<metrics::MetricsServer> metrics;
  std::unique_ptr<peers::BlobServer> peers;

  void Stop() {
    if (metrics) metrics->Stop();
    if (peers) peers->Stop();
  }
};

// Starts the HTTP endpoints: each listens (and the peer endpoint has loaded its TLS files)
// before this returns, so that an address that cannot be bound or a bad certificate stops
// berthd, naming the key, before the gRPC servers serve anything. `metric_registry`, `stack` and
// `daemon_metrics` must outlive the endpoints.
Result<HttpEndpoints> StartHttpEndpoints(const config::Config& config,
                                         const metrics::Registry& metric_registry,
                                         stack::ImageStack& stack,
                                         metrics::DaemonMetrics& daemon_metrics) {
  HttpEndpoints endpoints;
  if (!config.metrics_address.empty()) {
    BERTH_ASSIGN_OR_RETURN(
        endpoints.metrics,
        metrics::MetricsServer::Start(metric_registry, {.address = config.metrics_address}));
  }
  if (!config.peers.listen.empty()) {
    const config::PeersConfig& peers = config.peers;
    BERTH_ASSIGN_OR_RETURN(
        endpoints.peers,
        peers::BlobServer::Start(
            stack.store(), {.address = peers.listen,
                            .max_concurrent_uploads = peers.max_concurrent_uploads,
                            .max_upload_rate = peers.max_upload_rate,
                            .tls = {.cert = peers.tls_cert,
                                    .key = peers.tls_key,
                                    .client_ca = peers.tls_client_ca},
                            .observer = &daemon_metrics,
                            .arriving = peers.fetch_missing ? &stack.arriving_blobs() : nullptr}));
  }
  return endpoints;
}

Result<int> Run(const Flags& flags, const sigset_t& stop_signals) {
  BERTH_ASSIGN_OR_RETURN(config::Config config, LoadConfig(flags));
  BERTH_RETURN_IF_ERROR(log::Init({.level = config.log_level}));
  BERTH_ASSIGN_OR_RETURN(fs::path socket_path, cri::UnixSocketPath(config.address));
  BERTH_ASSIGN_OR_RETURN(std::optional<fs::path> snapshotter_socket,
                         SnapshotterSocket(config, socket_path));

  BERTH_RETURN_IF_ERROR(MakeDirectories(config.root, fs::perms::owner_all));
  BERTH_RETURN_IF_ERROR(MakeDirectories(config.state, fs::perms::owner_all));
  BERTH_ASSIGN_OR_RETURN(stack::RootLock root_lock,
                         stack::RootLock::Acquire(config.root, "berthd"));
  // The metrics: made before what reports into them, destroyed after it.
  metrics::Registry metric_registry;
  metrics::DaemonMetrics daemon_metrics(
      metric_registry, std::string(config::SnapshotterName(config.pull.snapshotter)));
  metrics::GrpcMetrics grpc_metrics(metric_registry);
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<stack::ImageStack> stack,
                         stack::ImageStack::Open(config, {.registry_observer = &daemon_metrics,
                                                          .service_observer = &daemon_metrics}));
  metrics::AddStateMetrics(metric_registry, {.images = &stack->images(),
                                             .db = &stack->metadata(),
                                             .content_root = stack->store().root(),
                                             .snapshot_root = stack->snapshot_root()});
  metrics::AddProcessMetrics(metric_registry);
  BERTH_ASSIGN_OR_RETURN(HttpEndpoints http_endpoints,
                         StartHttpEndpoints(config, metric_registry, *stack, daemon_metrics));
  service::ImageService& images = stack->images();
  registry::PullCredentials pull_credentials;
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<CriServices> cri_services,
                         MakeCriServices(config, *stack, pull_credentials));
  cri::AdminService admin(images);
  // Remote snapshots: layers containerd asks for are fetched by berth, with the credentials of
  // the CRI pulls in flight through the front.
  containerd::RemoteLayers remote_layers(images, stack->snapshotter(), &pull_credentials);
  containerd::SnapshotsService snapshots(stack->snapshotter(), stack->snapshot_cleaner(),
                                         &remote_layers);

  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<grpc::Server> server,
      Serve(socket_path, {cri_services->v1.get(), cri_services->v1alpha2.get(), &admin},
            grpc_metrics));
  std::unique_ptr<grpc::Server> snapshot_server;
  if (snapshotter_socket) {
    BERTH_ASSIGN_OR_RETURN(snapshot_server, Serve(*snapshotter_socket, {&snapshots}, grpc_metrics));
  }
  log::Info("berthd.ready",
            {{"address", config.address},
             {"snapshotter_address", config::SnapshotterAddress(config)},
             {"metrics_address", config.metrics_address},
             {"peers_listen", config.peers.listen},
             {"root", config.root.string()},
             {"snapshotter", config::SnapshotterName(config.pull.snapshotter)},
             {"images", config.upstream_image_endpoint.empty() ? std::string("standalone")
                                                               : config.upstream_image_endpoint},
             {"pid", ::getpid()}});

  int received = 0;
  sigwait(&stop_signals, &received);
  auto grace = std::chrono::seconds(flags.grace_seconds);
  log::Info("berthd.stopping", {{"signal", strsignal(received)}, {"grace_s", grace.count()}});
  // Stops accepting at once; in-flight calls have until the deadline, then are cancelled (their
  // CancelTokens fire, so pulls stop).
  const auto deadline = std::chrono::system_clock::now() + grace;
  http_endpoints.Stop();
  if (snapshot_server) snapshot_server->Shutdown(deadline);
  server->Shutdown(deadline);
  server->Wait();
  ::unlink(socket_path.c_str());
  if (snapshot_server) {
    snapshot_server->Wait();
    ::unlink(snapshotter_socket->c_str());
  }
  log::Info("berthd.stopped");
  return 0;
}

}  // namespace
}  // namespace berth::daemon

int main(int argc, char** argv) {
  berth::daemon::Flags flags;
  CLI::App app;
  berth::daemon::BuildApp(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Block the stop signals before any thread starts, so only sigwait() sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  berth::Result<int> status = berth::daemon::Run(flags, signals);
  if (!status) {
    std::fprintf(stderr, "berthd: error: %s\n", status.error().ToString().c_str());
    return 1;
  }
  return *status;
}
