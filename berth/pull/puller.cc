#include "berth/pull/puller.h"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <span>
#include <thread>

#include "berth/base/base64.h"
#include "berth/base/log.h"
#include "berth/image/media_types.h"
#include "berth/pull/peer_endpoints.h"
#include "berth/pull/schema1_converter.h"
#include "berth/registry/hosts.h"

namespace berth::pull {
namespace {

// Adapts a content::Writer to the registry client's BlobSink, counting and reporting bytes,
// passing them on to the layer's observer (the unpacker), if any, and telling the download's
// Arrival (the peer endpoint's readers) how far the ingest has come.
class WriterSink final : public registry::BlobSink {
 public:
  WriterSink(content::Writer& writer, LayerObserver* observer, Arrival& arrival,
             std::function<void(int64_t)> on_bytes)
      : writer_(writer), observer_(observer), arrival_(arrival), on_bytes_(std::move(on_bytes)) {}
  int64_t offset() const override { return writer_.offset(); }
  Result<void> Write(std::string_view chunk) override {
    BERTH_RETURN_IF_ERROR(writer_.Write(chunk));
    arrival_.Advance(writer_.offset());
    if (observer_ != nullptr) BERTH_RETURN_IF_ERROR(observer_->Write(chunk));
    on_bytes_(static_cast<int64_t>(chunk.size()));
    return Ok();
  }
  Result<void> Truncate() override {
    arrival_.Restart();
    BERTH_RETURN_IF_ERROR(writer_.Truncate());
    if (observer_ != nullptr) BERTH_RETURN_IF_ERROR(observer_->Reset());
    return Ok();
  }
  Digest digest() const override { return writer_.digest(); }
  void FromPeer(bool peer) override { arrival_.AskingPeers(peer); }

 private:
  content::Writer& writer_;
  LayerObserver* observer_;
  Arrival& arrival_;
  std::function<void(int64_t)> on_bytes_;
};

bool HasAny(const registry::CriAuthConfig& auth) {
  return !auth.username.empty() || !auth.password.empty() || !auth.auth.empty() ||
         !auth.identity_token.empty() || !auth.registry_token.empty();
}

// The reference as Pull() reads it; the parse error names the text (nothing else could).
Result<Reference> ParseReference(std::string_view text) {
  Result<Reference> reference = Reference::Parse(text);
  if (!reference) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{} in \"{}\"", reference.error().message(), text));
  }
  return reference;
}

// What can be refused before anything is fetched: malformed credentials, no registry host.
Result<void> CheckRequest(const Reference& reference, const registry::CriAuthConfig& auth) {
  if (HasAny(auth)) BERTH_RETURN_IF_ERROR(registry::CredentialsForHost(auth, ""));
  if (reference.domain().empty()) {
    return Fail(ErrorCode::kInvalidArgument, "the reference names no registry host");
  }
  return Ok();
}

// Milliseconds since `start`, for the debug log's timings.
int64_t MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

// Why `endpoint` is on the list ResolveEndpoints made, for the debug log: its role, its scheme,
// what it may be used for.
std::string WhyEndpoint(const registry::RegistryEndpoint& endpoint, bool last,
                        config::Fallback fallback) {
  std::string why;
  if (endpoint.is_mirror) {
    why = "a mirror, tried before the registry";
  } else if (last && fallback == config::Fallback::kAlways) {
    why = "the registry itself (fallback = always)";
  } else {
    why = "the registry itself, listed with the mirrors";
  }
  if (endpoint.scheme == "http") {
    why += registry::DefaultSchemeFor(endpoint.host) == "http" ? "; plain http: a loopback host"
                                                               : "; plain http: configured so";
  }
  if (endpoint.plain_http_fallback != registry::PlainHttpFallback::kNever) {
    why += "; https, or plain http if the server does not speak TLS: a loopback host";
  }
  if (!endpoint.Can(registry::kCapabilityResolve)) why += "; pull only: resolves no tags";
  return why;
}

// Debug log: where this pull will go, in order, and what chose those endpoints.
void LogEndpoints(const Reference& reference, const config::RegistryConfig& registry,
                  const std::vector<registry::RegistryEndpoint>& endpoints) {
  const std::string& domain = reference.domain();
  std::string mirrors = "none";
  if (registry.mirrors.contains(domain)) {
    mirrors = domain;
  } else if (registry.mirrors.contains("*")) {
    mirrors = "*";
  }
  config::Fallback fallback = config::Fallback::kAlways;
  if (auto it = registry.configs.find(domain); it != registry.configs.end()) {
    fallback = it->second.fallback;
  }
  const std::string ref = reference.ToString();
  log::Debug("pull.endpoints",
             {{"ref", ref},
              {"count", endpoints.size()},
              {"mirrors_key", mirrors},
              {"config_path", registry.config_path.empty() ? "none" : registry.config_path},
              {"fallback", config::FallbackName(fallback)}});
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const registry::RegistryEndpoint& endpoint = endpoints[i];
    log::Debug("pull.endpoint",
               {{"ref", ref},
                {"order", i + 1},
                {"url", endpoint.BaseUrl()},
                {"role", endpoint.is_mirror ? "mirror" : "registry"},
                {"why", WhyEndpoint(endpoint, i + 1 == endpoints.size(), fallback)}});
  }
}

// A blob already in the store was verified against its digest when it was written; a manifest
// that gives it another size is wrong, as a registry sending that many bytes would be. A
// negative size is unknown (schema1 layers) and not checked.
Result<void> CheckStoredSize(const image::Descriptor& descriptor, int64_t stored_size) {
  if (descriptor.size < 0 || descriptor.size == stored_size) return Ok();
  return Fail(ErrorCode::kDataLoss,
              fmt::format("the manifest gives {} a size of {} bytes, but that blob is {} bytes; "
                          "the manifest is wrong (ask the image's publisher to push it again)",
                          descriptor.digest.ToString(), descriptor.size, stored_size));
}

}  // namespace

struct Puller::PullContext {
  PullContext(DownloadScheduler::Member member, const Reference& pulled,
              const PullOptions& pull_options, ProgressFn on_progress,
              const CancelToken& pull_cancel)
      : reference(pulled),
        options(pull_options),
        cancel(pull_cancel),
        scheduling(std::move(member)),
        registry(pulled.domain()),
        progress(std::move(on_progress)) {}

  const Reference& reference;
  const PullOptions& options;
  const CancelToken& cancel;
  registry::Session session;
  std::unique_ptr<registry::Authorizer> authorizer;  // session.authorizer points at it
  DownloadScheduler::Member scheduling;
  std::string registry;   // the scheduler's per-registry key: the reference's domain
  bool ask_peers = true;  // false for a fetch a peer asked for: it is a peer already
  std::atomic<size_t> schema1_layers{0};
  ProgressFn progress;
  std::mutex progress_mutex;
  std::atomic<int64_t> bytes_fetched{0};

  void Report(const BlobProgress& blob) {
    if (!progress) return;
    std::lock_guard lock(progress_mutex);
    progress(blob);
  }

  // Tells the pull's lease (if any) about `digests` before they are checked for or fetched.
  Result<void> Hold(std::span<const Digest> digests) const {
    if (options.lease == nullptr) return Ok();
    return options.lease->HoldBlobs(digests);
  }
};

// What the reference resolved to: an index or a manifest, stored and held.
struct Puller::Target {
  registry::FetchedManifest fetched;
  image::ManifestKind kind = image::ManifestKind::kDockerManifest;
  // A schema1 manifest was converted: `fetched` is the generated schema2 manifest.
  bool converted_schema1 = false;
};

namespace {

std::unique_ptr<DownloadScheduler> SchedulerUnlessGiven(DownloadScheduler* given,
                                                        const config::PullConfig& pull) {
  if (given != nullptr) return nullptr;
  return std::make_unique<DownloadScheduler>(
      DownloadLimits{.max_total = pull.max_concurrent_downloads_total,
                     .max_per_registry = pull.max_concurrent_downloads_per_registry});
}

registry::RetryPolicy RetryPolicyFor(const config::PullConfig& pull) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  // A zero timeout stays zero: the watchdog is off. A positive one below a millisecond still
  // counts as on.
  milliseconds progress_timeout = duration_cast<milliseconds>(pull.image_pull_progress_timeout);
  if (progress_timeout.count() == 0 && pull.image_pull_progress_timeout.count() > 0) {
    progress_timeout = milliseconds(1);
  }
  return registry::RetryPolicy{
      .progress_timeout = progress_timeout,
      .min_bytes_per_second = pull.min_download_speed,
      .min_speed_window = duration_cast<milliseconds>(pull.min_download_speed_window)};
}

}  // namespace

Puller::Puller(content::Store& store, registry::HttpTransport& transport, config::Config config,
               DownloadScheduler* scheduler, registry::RegistryObserver* registry_observer,
               const peers::Membership* membership)
    : store_(store),
      config_(std::move(config)),
      own_scheduler_(SchedulerUnlessGiven(scheduler, config_.pull)),
      scheduler_(scheduler != nullptr ? *scheduler : *own_scheduler_),
      transport_(transport),
      client_(transport, RetryPolicyFor(config_.pull), registry_observer),
      membership_(membership) {}

registry::Credentials Puller::CredentialsFor(const PullOptions& options,
                                             std::string_view host) const {
  if (HasAny(options.auth)) {
    Result<registry::Credentials> credentials = registry::CredentialsForHost(options.auth, host);
    return credentials ? *credentials : registry::Credentials{};  // validated in Pull()
  }
  auto it = config_.registry.configs.find(std::string(host));
  if (it == config_.registry.configs.end()) return {};
  const config::AuthConfig& auth = it->second.auth;
  registry::Credentials credentials{
      .username = auth.username, .password = auth.password, .identity_token = auth.identity_token};
  if (credentials.username.empty() && !auth.auth.empty()) {
    registry::CriAuthConfig decoded{.auth = auth.auth};
    if (Result<registry::Credentials> from_auth = registry::CredentialsForHost(decoded, host)) {
      credentials = *from_auth;
      credentials.identity_token = auth.identity_token;
    }
  }
  return credentials;
}

Result<void> Puller::StoreSmallBlob(const image::Descriptor& descriptor, std::string_view bytes) {
  return WithContext(store_.WriteBlob(descriptor.digest, bytes),
                     fmt::format("store {}", descriptor.digest));
}

Result<PulledImage> Puller::Pull(std::string_view reference_text, const PullOptions& options,
                                 const ProgressFn& progress, const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(Reference reference, ParseReference(reference_text));
  // Every step's error names the pull once, here.
  return WithContext(PullReference(reference, options, progress, cancel),
                     fmt::format("pull {}", reference.ToString()));
}

Result<PulledImage> Puller::PullReference(const Reference& reference, const PullOptions& options,
                                          const ProgressFn& progress, const CancelToken& cancel) {
  BERTH_RETURN_IF_ERROR(CheckRequest(reference, options.auth));
  PullContext context(scheduler_.Join(), reference, options, progress, cancel);
  BERTH_RETURN_IF_ERROR(OpenSession(context));
  BERTH_ASSIGN_OR_RETURN(Target target, ResolveTarget(context));
  BERTH_ASSIGN_OR_RETURN(registry::FetchedManifest manifest, SelectManifest(context, target));
  BERTH_ASSIGN_OR_RETURN(image::Manifest parsed_manifest, image::ParseManifest(manifest.bytes));
  BERTH_ASSIGN_OR_RETURN(image::ImageConfig image_config,
                         FetchConfig(context, parsed_manifest, target.kind));
  if (options.admit) BERTH_RETURN_IF_ERROR(options.admit(parsed_manifest, image_config));
  BERTH_RETURN_IF_ERROR(FetchLayers(context, parsed_manifest, image_config));

  const Digest image_id = parsed_manifest.config.digest;
  PulledImage pulled{.reference = reference,
                     .target = target.fetched.descriptor,
                     .manifest = manifest.descriptor,
                     .parsed_manifest = std::move(parsed_manifest),
                     .config = std::move(image_config),
                     .image_id = image_id,
                     .converted_schema1 = target.converted_schema1};
  pulled.content_size = pulled.manifest.size + pulled.parsed_manifest.config.size;
  for (const image::Descriptor& layer : pulled.parsed_manifest.layers) {
    pulled.content_size += layer.size;
  }
  pulled.bytes_fetched = context.bytes_fetched.load();
  return pulled;
}

Result<void> Puller::OpenSession(PullContext& context) {
  const std::string& domain = context.reference.domain();
  BERTH_ASSIGN_OR_RETURN(context.session.endpoints,
                         registry::ResolveEndpoints(config_.registry, domain));
  LogEndpoints(context.reference, config_.registry, context.session.endpoints);
  context.session.repository = context.reference.path();
  // Credentials configured for the registry's domain also serve its default host
  // (docker.io → registry-1.docker.io).
  auto credentials_fn = [this, &options = context.options,
                         default_host = registry::DefaultHostFor(domain),
                         domain](std::string_view host) {
    registry::Credentials credentials = CredentialsFor(options, host);
    if (credentials.anonymous() && host == default_host)
      credentials = CredentialsFor(options, domain);
    return credentials;
  };
  auto tls_fn = [this](std::string_view host) {
    return registry::TlsForHost(config_.registry, host);
  };
  context.authorizer = std::make_unique<registry::Authorizer>(transport_, credentials_fn, tls_fn);
  context.session.authorizer = context.authorizer.get();
  context.session.tls_for_host = tls_fn;
  if (membership_ != nullptr && config_.peers.home_peers > 0 && context.ask_peers) {
    // The members as they are when each blob is fetched (DNS may have moved on meanwhile).
    context.session.blob_peers = [this, domain](const Digest& digest) {
      return HomePeerEndpoints(digest, membership_->Current(), membership_->Self(), config_.peers,
                               domain);
    };
  }
  return Ok();
}

Result<Puller::Target> Puller::ResolveTarget(PullContext& context) {
  const Reference& reference = context.reference;
  const std::string pin = reference.digest() ? reference.digest()->ToString() : reference.tag();
  Target target;
  BERTH_ASSIGN_OR_RETURN(target.fetched, client_.Resolve(context.session, pin, context.cancel));
  log::Debug("pull.resolved", {{"ref", reference.ToString()},
                               {"endpoint", target.fetched.endpoint},
                               {"digest", target.fetched.descriptor.digest},
                               {"media_type", target.fetched.descriptor.media_type}});
  BERTH_RETURN_IF_ERROR(context.Hold(std::array{target.fetched.descriptor.digest}));
  BERTH_ASSIGN_OR_RETURN(target.kind, image::KindOfMediaType(target.fetched.descriptor.media_type));
  if (target.kind == image::ManifestKind::kDockerSchema1) {
    return ConvertSchema1Target(context, std::move(target.fetched));
  }
  BERTH_RETURN_IF_ERROR(StoreSmallBlob(target.fetched.descriptor, target.fetched.bytes));
  return target;
}

Result<Puller::Target> Puller::ConvertSchema1Target(PullContext& context,
                                                    registry::FetchedManifest schema1) {
  // As containerd 1.x: fetch the layers, generate a schema2 manifest and config in the store,
  // and go on with the generated manifest as the target (its layers are all in the store now).
  auto fetch = [&](const image::Descriptor& layer,
                   const CancelToken& layer_cancel) -> Result<void> {
    BERTH_RETURN_IF_ERROR(context.Hold(std::array{layer.digest}));
    return FetchBlob(context, layer, context.schema1_layers++, nullptr, layer_cancel);
  };
  BERTH_ASSIGN_OR_RETURN(ConvertedSchema1 converted,
                         ConvertSchema1(store_, schema1.bytes, fetch,
                                        config_.pull.max_concurrent_downloads, context.cancel));
  // Held only once written: a collection in that instant would make this pull fail (the blob is
  // missing below), never corrupt anything.
  BERTH_RETURN_IF_ERROR(
      context.Hold(std::array{converted.manifest.digest, converted.config.digest}));
  Target target{.kind = image::ManifestKind::kDockerManifest, .converted_schema1 = true};
  target.fetched = std::move(schema1);
  target.fetched.descriptor = converted.manifest;
  target.fetched.bytes = std::move(converted.manifest_bytes);
  return target;
}

Result<registry::FetchedManifest> Puller::SelectManifest(PullContext& context,
                                                         const Target& target) {
  // From an index, the manifest for the platform (indexes may nest, a little).
  registry::FetchedManifest manifest = target.fetched;
  image::ManifestKind kind = target.kind;
  for (int depth = 0; image::IsIndex(kind); ++depth) {
    if (depth >= 4) return Fail(ErrorCode::kInvalidArgument, "indexes nested too deeply");
    BERTH_ASSIGN_OR_RETURN(image::Index index, image::ParseIndex(manifest.bytes));
    BERTH_ASSIGN_OR_RETURN(image::Descriptor chosen,
                           image::SelectManifest(index, context.options.platform));
    BERTH_RETURN_IF_ERROR(context.Hold(std::array{chosen.digest}));
    BERTH_ASSIGN_OR_RETURN(manifest,
                           client_.FetchManifest(context.session, chosen, context.cancel));
    BERTH_ASSIGN_OR_RETURN(kind, image::KindOfMediaType(manifest.descriptor.media_type));
    BERTH_RETURN_IF_ERROR(StoreSmallBlob(manifest.descriptor, manifest.bytes));
  }
  return manifest;
}

Result<image::ImageConfig> Puller::FetchConfig(PullContext& context,
                                               const image::Manifest& manifest,
                                               image::ManifestKind target_kind) {
  // The config gives the image ID and the diffIDs the unpacker checks layers against.
  std::vector<Digest> needed = {manifest.config.digest};
  for (const image::Descriptor& layer : manifest.layers) needed.push_back(layer.digest);
  BERTH_RETURN_IF_ERROR(context.Hold(needed));
  BERTH_ASSIGN_OR_RETURN(std::string config_bytes, ReadOrFetchConfig(context, manifest.config));
  BERTH_ASSIGN_OR_RETURN(image::ImageConfig config, image::ParseImageConfig(config_bytes));
  // A single-platform image must still suit the platform asked for (as containerd checks).
  const image::Platform& platform = context.options.platform;
  if (!image::IsIndex(target_kind) && !config.os.empty() && !config.architecture.empty() &&
      !image::MatchRank(
          platform,
          {.os = config.os, .architecture = config.architecture, .variant = config.variant})) {
    return Fail(ErrorCode::kNotFound, fmt::format("the image is for {}/{}, not for {}", config.os,
                                                  config.architecture, platform.ToString()));
  }
  if (config.diff_ids.size() != manifest.layers.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("the image config lists {} diff_ids but the manifest has {} layers",
                            config.diff_ids.size(), manifest.layers.size()));
  }
  return config;
}

Result<std::string> Puller::ReadOrFetchConfig(PullContext& context,
                                              const image::Descriptor& descriptor) {
  if (Result<std::string> cached = store_.ReadBlob(descriptor.digest, image::kMaxManifestBytes)) {
    BERTH_RETURN_IF_ERROR(CheckStoredSize(descriptor, static_cast<int64_t>(cached->size())));
    return cached;
  }
  if (descriptor.size > static_cast<int64_t>(image::kMaxManifestBytes)) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("config {} is {} bytes, over the {} byte limit", descriptor.digest,
                            descriptor.size, image::kMaxManifestBytes));
  }
  // The config is a blob download like a layer's (shared with other pulls, and with the peers
  // asking for it while it arrives), and comes before every layer.
  BERTH_RETURN_IF_ERROR(FetchBlob(context, descriptor, /*order=*/0, nullptr, context.cancel));
  return store_.ReadBlob(descriptor.digest, image::kMaxManifestBytes);
}

Result<void> Puller::FetchLayers(PullContext& context, const image::Manifest& manifest,
                                 const image::ImageConfig& config) {
  // The layers, a bounded number at a time, lowest first (they are committed first).
  LayerHandler* handler = context.options.layer_handler;
  const CancelToken& cancel = context.cancel;
  if (handler != nullptr) BERTH_RETURN_IF_ERROR(handler->Begin(manifest, config));
  const std::vector<image::Descriptor>& layers = manifest.layers;
  CancelToken pull_cancel(&cancel);
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  auto fetch_one = [&](size_t index) -> Result<void> {
    LayerPlan plan;
    if (handler != nullptr) {
      BERTH_ASSIGN_OR_RETURN(plan, handler->PlanLayer(index));
    }
    if (plan.skip) return Ok();
    BERTH_RETURN_IF_ERROR(
        FetchBlob(context, layers[index], index, plan.observer.get(), pull_cancel));
    if (plan.observer) BERTH_RETURN_IF_ERROR(plan.observer->Finish());
    return Ok();
  };
  // Workers take the next layer in order, so lower layers start (and can commit) first.
  auto worker = [&] {
    while (true) {
      size_t index = next.fetch_add(1);
      if (index >= layers.size() || pull_cancel.cancelled()) return;
      Result<void> fetched = fetch_one(index);
      if (!fetched) {
        std::lock_guard lock(error_mutex);
        if (!first_error) first_error = std::move(fetched).error();
        pull_cancel.Cancel();  // stop the other downloads: the pull has failed
        return;
      }
    }
  };
  size_t workers =
      std::min<size_t>(layers.size(), static_cast<size_t>(config_.pull.max_concurrent_downloads));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < workers; ++i) threads.emplace_back(worker);
  if (workers > 0) worker();
  for (std::thread& thread : threads) thread.join();
  if (!first_error) {
    if (auto checked = cancel.Check(); !checked) first_error = checked.error();
  }
  if (handler != nullptr) {
    Result<void> ended = handler->End(!first_error.has_value());
    if (!ended && !first_error) first_error = ended.error();
  }
  if (first_error) return Fail(std::move(*first_error));
  return Ok();
}

Result<void> Puller::ObserveStoredBlob(const image::Descriptor& descriptor, LayerObserver& observer,
                                       const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, store_.OpenBlob(descriptor.digest));
  std::string buffer(1 << 20, '\0');
  while (true) {
    BERTH_RETURN_IF_ERROR(cancel.Check());
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, fmt::format("read blob {}", descriptor.digest)));
    }
    if (n == 0) return Ok();
    BERTH_RETURN_IF_ERROR(observer.Write(std::string_view(buffer.data(), static_cast<size_t>(n))));
  }
}

Result<void> Puller::FetchBlob(PullContext& context, const image::Descriptor& blob, size_t order,
                               LayerObserver* observer, const CancelToken& cancel) {
  const auto started = std::chrono::steady_clock::now();
  for (int round = 0;; ++round) {
    if (Result<content::BlobInfo> stored = store_.Info(blob.digest)) {
      BERTH_RETURN_IF_ERROR(CheckStoredSize(blob, stored->size));
      if (observer != nullptr) BERTH_RETURN_IF_ERROR(ObserveStoredBlob(blob, *observer, cancel));
      // Already stored, or fetched meanwhile by another pull this one waited for.
      log::Debug("pull.blob.fetched", {{"ref", context.reference.ToString()},
                                       {"order", order},
                                       {"digest", blob.digest},
                                       {"from", "store"},
                                       {"bytes", stored->size},
                                       {"ms", MillisecondsSince(started)}});
      context.Report({.digest = blob.digest,
                      .media_type = blob.media_type,
                      .done = stored->size,
                      .total = stored->size,
                      .cached = true,
                      .complete = true});
      return Ok();
    }
    // When another pull is fetching this blob, wait for it rather than fetching it twice.
    auto download = [&]() -> Result<int64_t> {
      // Only a real download takes a connection, so only it waits for the scheduler.
      BERTH_ASSIGN_OR_RETURN(DownloadScheduler::Permit permit,
                             context.scheduling.Acquire(context.registry, order, cancel));
      return DownloadBlob(context, blob, observer, cancel);
    };
    BERTH_ASSIGN_OR_RETURN(auto flight, downloads_.Do(blob.digest, download, cancel));
    if (flight.role == FlightRole::kLed) {
      if (!flight.result) return Fail(std::move(flight.result).error());
      return Ok();
    }
    // The other pull's blob is in the store now (the next round reads it). If that pull failed
    // (perhaps cancelled by its caller), try once more ourselves.
    if (!flight.result && round > 0) return Fail(std::move(flight.result).error());
  }
}

Result<int64_t> Puller::DownloadBlob(PullContext& context, const image::Descriptor& descriptor,
                                     LayerObserver* observer, const CancelToken& cancel) {
  // Peers asking for the blob meanwhile read this download's Arrival (or had it made already),
  // unless it asks peers itself (see Arrival::AskingPeers; the registry client says when it
  // moves on to the registry).
  std::shared_ptr<Arrival> arrival = arrivals_.Join(descriptor.digest);
  arrival->AskingPeers(context.session.blob_peers &&
                       !context.session.blob_peers(descriptor.digest).empty());
  Result<int64_t> fetched = DownloadBlobInto(context, descriptor, observer, *arrival, cancel);
  if (fetched) arrival->End();
  arrivals_.Leave(descriptor.digest, arrival);
  return fetched;
}

Result<int64_t> Puller::DownloadBlobInto(PullContext& context, const image::Descriptor& descriptor,
                                         LayerObserver* observer, Arrival& arrival,
                                         const CancelToken& cancel) {
  const std::string what =
      fmt::format("fetch {} {}", media_types::IsConfig(descriptor.media_type) ? "config" : "layer",
                  descriptor.digest);
  const std::string ingest_ref = "pull-" + descriptor.digest.ToString();
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<content::Writer> writer,
      WithContext(store_.OpenWriter(ingest_ref, descriptor.digest, descriptor.size), what));
  if (descriptor.size < 0 && writer->offset() > 0) {
    // The size is unknown (a schema1 layer): a leftover ingest may already hold every byte, and
    // a Range request past the end would fail, so start such a download afresh.
    BERTH_RETURN_IF_ERROR(WithContext(writer->Truncate(), what));
  }
  BERTH_ASSIGN_OR_RETURN(UniqueFd reader, WithContext(writer->OpenReader(), what));
  arrival.Open(std::move(reader), writer->offset());
  BlobProgress status{.digest = descriptor.digest,
                      .media_type = descriptor.media_type,
                      .done = writer->offset(),
                      .total = descriptor.size};
  int64_t fetched = 0;
  int64_t last_report = 0;
  if (observer != nullptr && writer->offset() > 0) {
    // A resumed download: the observer first sees what is already on disk.
    BERTH_RETURN_IF_ERROR(WithContext(
        writer->ReadExisting([&](std::string_view chunk) { return observer->Write(chunk); }),
        what));
  }
  WriterSink sink(*writer, observer, arrival, [&](int64_t bytes) {
    fetched += bytes;
    context.bytes_fetched += bytes;
    status.done = writer->offset();
    if (status.done - last_report >= (1 << 20)) {
      last_report = status.done;
      context.Report(status);
    }
  });
  context.Report(status);
  // Bytes that failed to verify must not be resumed from (every later pull would fail on them
  // again), and a full disk needs the space the partial blob holds: both discard the ingest.
  auto discard_if_useless = [&](Error error) {
    if (error.code() == ErrorCode::kDataLoss || error.code() == ErrorCode::kResourceExhausted) {
      writer.reset();  // releases the ingest's lock
      (void)store_.AbortIngest(ingest_ref);
    }
    return tl::unexpected(std::move(error));
  };
  const int64_t resumed_at = writer->offset();
  const auto started = std::chrono::steady_clock::now();
  Result<std::string> endpoint = client_.FetchBlob(context.session, descriptor, sink, cancel);
  if (!endpoint) return discard_if_useless(std::move(endpoint).error().WithContext(what));
  Result<content::BlobInfo> committed = writer->Commit();
  if (!committed) {
    return discard_if_useless(
        std::move(committed).error().WithContext(fmt::format("{} from {}", what, *endpoint)));
  }
  status.done = committed->size;
  status.total = committed->size;
  status.complete = true;
  context.Report(status);
  log::Debug("pull.blob.fetched", {{"ref", context.reference.ToString()},
                                   {"digest", descriptor.digest},
                                   {"from", *endpoint},
                                   {"bytes", fetched},
                                   {"resumed_at", resumed_at},
                                   {"ms", MillisecondsSince(started)}});
  return fetched;
}

// The pull-through side (peers::ArrivingBlobs).

namespace {

// The reference a fetch for a peer pulls from: <registry>/<repository>@<digest>, as the peer's
// request named them. kInvalidArgument when they make no reference, or one of another registry
// (a registry that is not a host name).
Result<Reference> PeerFetchReference(const peers::MissingBlob& blob) {
  Result<Reference> reference = Reference::Parse(
      fmt::format("{}/{}@{}", blob.registry, blob.repository, blob.digest.ToString()));
  if (!reference || reference->domain() != blob.registry) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("ns=\"{}\" and repository \"{}\" name no registry repository",
                            blob.registry, blob.repository));
  }
  return reference;
}

// The CRI credentials a requester's Authorization ("Bearer <token>", "Basic <base64>") for
// `registry` amounts to: for that registry's host only (server_address), never its mirrors.
// Empty (this node's own credentials apply) for none or another scheme.
registry::CriAuthConfig ForwardedAuth(const Secret& authorization, const std::string& registry) {
  const std::string_view value = authorization.reveal();
  registry::CriAuthConfig auth{.server_address = registry};
  if (value.starts_with("Bearer ")) {
    auth.registry_token = Secret(std::string(value.substr(7)));
  } else if (value.starts_with("Basic ")) {
    auth.auth = Secret(std::string(value.substr(6)));
  } else {
    return {};
  }
  return auth;
}

}  // namespace

Puller::~Puller() {
  stopping_.Cancel();
  std::unique_lock lock(peer_fetches_mutex_);
  peer_fetches_done_.wait(lock, [&] { return peer_fetches_ == 0; });
}

Result<std::shared_ptr<peers::ArrivingBlob>> Puller::Follow(const peers::MissingBlob& blob) {
  if (std::shared_ptr<Arrival> running = arrivals_.Find(blob.digest)) {
    return FollowRunning(running, blob.digest);
  }
  if (store_.Contains(blob.digest)) {
    return Fail(ErrorCode::kAlreadyExists, fmt::format("{} is stored", blob.digest.ToString()));
  }
  if (blob.registry.empty()) {
    return Fail(ErrorCode::kNotFound,
                fmt::format("this node has no {} and the request names no registry (ns=) to "
                            "fetch it from",
                            blob.digest.ToString()));
  }
  BERTH_RETURN_IF_ERROR(PeerFetchReference(blob));
  {
    std::lock_guard lock(peer_fetches_mutex_);
    if (peer_fetches_ >= config_.peers.max_concurrent_uploads) {
      return Fail(ErrorCode::kResourceExhausted,
                  fmt::format("this node is fetching {} blobs for peers already",
                              config_.peers.max_concurrent_uploads));
    }
    ++peer_fetches_;
  }
  bool created = false;
  std::shared_ptr<Arrival> arrival = arrivals_.Join(blob.digest, &created);
  if (!created) {  // a download began meanwhile
    EndPeerFetch();
    return FollowRunning(arrival, blob.digest);
  }
  arrival->AskingPeers(false);  // a fetch for a peer asks the registry only
  std::thread([this, blob, arrival] { RunFetchForPeer(blob, arrival); }).detach();
  return arrival;
}

Result<std::shared_ptr<peers::ArrivingBlob>> Puller::FollowRunning(
    const std::shared_ptr<Arrival>& running, const Digest& digest) {
  if (!running->asking_peers()) return running;
  return Fail(ErrorCode::kNotFound,
              fmt::format("this node is asking its own peers for {}", digest.ToString()));
}

void Puller::EndPeerFetch() {
  // Under the lock: the destructor may return (and destroy the condition) once it is released.
  std::lock_guard lock(peer_fetches_mutex_);
  --peer_fetches_;
  peer_fetches_done_.notify_all();
}

void Puller::RunFetchForPeer(const peers::MissingBlob& blob,
                             const std::shared_ptr<Arrival>& arrival) {
  const auto started = std::chrono::steady_clock::now();
  Result<void> fetched = FetchForPeer(blob, *arrival);
  arrivals_.Leave(blob.digest, arrival);
  if (fetched) {
    log::Info("peers.fetched_for_peer", {{"digest", blob.digest},
                                         {"registry", blob.registry},
                                         {"repository", blob.repository},
                                         {"ms", MillisecondsSince(started)}});
  } else {
    log::Warn("peers.fetch_for_peer_failed", {{"digest", blob.digest},
                                              {"registry", blob.registry},
                                              {"repository", blob.repository},
                                              {"error", fetched.error().ToString()}});
  }
  EndPeerFetch();
}

Result<void> Puller::FetchForPeer(const peers::MissingBlob& blob, Arrival& arrival) {
  BERTH_ASSIGN_OR_RETURN(Reference reference, PeerFetchReference(blob));
  // The requester's authorization for the registry, if it passed one on, else this node's own
  // credentials (the config's), as its pulls use them.
  const PullOptions options{.auth = ForwardedAuth(blob.registry_authorization, blob.registry)};
  PullContext context(scheduler_.Join(), reference, options, nullptr, stopping_);
  context.ask_peers = false;
  BERTH_RETURN_IF_ERROR(OpenSession(context));
  // The size is the registry's to say; the digest is checked at the commit as always.
  const image::Descriptor descriptor{
      .media_type = "application/octet-stream", .digest = blob.digest, .size = -1};
  BERTH_RETURN_IF_ERROR(FetchBlob(context, descriptor, /*order=*/0, nullptr, stopping_));
  if (arrival.progress().ended) return Ok();
  // Stored before this fetch began downloading (by a pull of this node's): the readers read it
  // from the store.
  BERTH_ASSIGN_OR_RETURN(content::BlobInfo stored, store_.Info(blob.digest));
  BERTH_ASSIGN_OR_RETURN(UniqueFd file, store_.OpenBlob(blob.digest));
  arrival.Open(std::move(file), stored.size);
  arrival.End();
  return Ok();
}

}  // namespace berth::pull
