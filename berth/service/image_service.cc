#include "berth/service/image_service.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <unordered_set>

#include "berth/base/log.h"
#include "berth/image/manifest.h"
#include "berth/reference/reference.h"
#include "berth/snapshot/tree_util.h"

namespace berth::service {
namespace {

namespace fs = std::filesystem;

bool IsHex(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool HasGlob(std::string_view pattern) {
  return pattern.find_first_of("*?[") != std::string_view::npos;
}

std::vector<std::string> ChainStrings(const std::vector<Digest>& diff_ids) {
  std::vector<std::string> chain;
  for (const Digest& digest : image::ChainIds(diff_ids)) chain.push_back(digest.ToString());
  return chain;
}

// The mountpoint of the filesystem holding `path`: the highest ancestor on the same device.
Result<std::string> MountpointOf(const fs::path& path) {
  std::error_code error;
  fs::path current = fs::canonical(path, error);
  if (error) return Fail(ErrnoError(error.value(), fmt::format("resolve {}", path.string())));
  struct stat here {};
  if (::stat(current.c_str(), &here) != 0) {
    return Fail(ErrnoError(errno, fmt::format("stat {}", current.string())));
  }
  while (current.has_parent_path() && current != current.root_path()) {
    struct stat up {};
    if (::stat(current.parent_path().c_str(), &up) != 0 || up.st_dev != here.st_dev) break;
    current = current.parent_path();
  }
  return current.string();
}

// The digest of the blob's bytes as they are on disk, with the blob's own algorithm.
Result<Digest> HashBlob(const content::Store& store, const Digest& digest) {
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, store.OpenBlob(digest));
  Hasher hasher(digest.algorithm());
  std::vector<char> buffer(1 << 20);
  for (;;) {
    ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, fmt::format("read blob {}", digest.ToString())));
    }
    if (got == 0) break;
    hasher.Update(std::string_view(buffer.data(), static_cast<size_t>(got)));
  }
  return hasher.Finish();
}

// Debug log of each layer's unpack and commit times in one pull. Unpacking runs from when the
// pull takes the layer up (PlanLayer, just before its bytes are fetched: the unpacker applies
// them as they arrive) to the unpacker's kApplied; committing from kApplied to kCommitted.
// Thread-safe: layers are planned and unpacked on several threads.
class LayerTimings {
 public:
  // `observer` (may be null) hears each layer unpacked.
  LayerTimings(std::string reference, ImageServiceObserver* observer)
      : reference_(std::move(reference)), observer_(observer) {}

  // Wraps `inner` so that Begin names each layer's digest and PlanLayer starts its clock.
  std::unique_ptr<pull::LayerHandler> Observe(std::unique_ptr<pull::LayerHandler> inner);

  // The unpacker's event for one layer: logs how long it took since the previous one.
  void Record(const unpack::LayerProgress& layer) {
    std::lock_guard lock(mutex_);
    const Clock::time_point now = Clock::now();
    const std::string digest = layer.index < digests_.size() ? digests_[layer.index] : "";
    switch (layer.event) {
      case unpack::LayerEvent::kAlreadyPresent:
        log::Debug("pull.layer.present",
                   {{"ref", reference_}, {"layer", layer.index}, {"digest", digest}});
        return;
      case unpack::LayerEvent::kApplied:
        applied_[layer.index] = now;
        if (observer_ != nullptr) {
          auto started = started_.find(layer.index);
          observer_->LayerUnpacked(layer.uncompressed_bytes, started == started_.end()
                                                                 ? Clock::duration::zero()
                                                                 : now - started->second);
        }
        log::Debug("pull.layer.unpacked", {{"ref", reference_},
                                           {"layer", layer.index},
                                           {"digest", digest},
                                           {"bytes", layer.uncompressed_bytes},
                                           {"ms", Since(started_, layer.index, now)}});
        return;
      case unpack::LayerEvent::kCommitted:
        log::Debug("pull.layer.committed", {{"ref", reference_},
                                            {"layer", layer.index},
                                            {"digest", digest},
                                            {"ms", Since(applied_, layer.index, now)}});
        return;
    }
  }

 private:
  using Clock = std::chrono::steady_clock;
  friend class TimedLayerHandler;

  void Begin(const image::Manifest& manifest) {
    std::lock_guard lock(mutex_);
    digests_.clear();
    for (const image::Descriptor& layer : manifest.layers) {
      digests_.push_back(layer.digest.ToString());
    }
  }
  void Start(size_t index) {
    std::lock_guard lock(mutex_);
    started_[index] = Clock::now();
  }
  // Milliseconds from the time recorded for `index` in `from` (none: 0) to `now`.
  static int64_t Since(const std::map<size_t, Clock::time_point>& from, size_t index,
                       Clock::time_point now) {
    auto it = from.find(index);
    if (it == from.end()) return 0;
    return std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second).count();
  }

  const std::string reference_;
  ImageServiceObserver* const observer_;
  std::mutex mutex_;
  std::vector<std::string> digests_;             // by layer index
  std::map<size_t, Clock::time_point> started_;  // PlanLayer
  std::map<size_t, Clock::time_point> applied_;  // kApplied
};

class TimedLayerHandler final : public pull::LayerHandler {
 public:
  TimedLayerHandler(LayerTimings& timings, std::unique_ptr<pull::LayerHandler> inner)
      : timings_(timings), inner_(std::move(inner)) {}
  Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig& config) override {
    timings_.Begin(manifest);
    return inner_->Begin(manifest, config);
  }
  Result<pull::LayerPlan> PlanLayer(size_t index) override {
    timings_.Start(index);
    return inner_->PlanLayer(index);
  }
  Result<void> End(bool success) override { return inner_->End(success); }

 private:
  LayerTimings& timings_;
  std::unique_ptr<pull::LayerHandler> inner_;
};

// The description of a staged image's lease starts with this (Stage).
constexpr std::string_view kStageLeasePrefix = "stage ";

// The description of a pull's lease: "pull " and the normalized reference. Leases recorded
// before the image was named carry it too, so a later pull of the same reference finds them.
std::string PullLeaseDescription(const Reference& reference) {
  return "pull " + reference.ToString();
}

// Whether every blob and committed snapshot `lease` holds is one of `entry`'s, and it holds no
// active snapshot (a lease with nothing at all qualifies).
bool HoldsOnlyPiecesOf(const metadata::LeaseRecord& lease, const ImageEntry& entry) {
  std::set<metadata::LeaseResource> pieces;
  for (const Digest& blob : entry.blobs) {
    pieces.insert({metadata::LeaseResourceKind::kBlob, blob.ToString()});
  }
  for (const std::string& chain_id : entry.chain) {
    pieces.insert({metadata::LeaseResourceKind::kSnapshot, chain_id});
  }
  return std::all_of(lease.resources.begin(), lease.resources.end(),
                     [&](const metadata::LeaseResource& held) { return pieces.contains(held); });
}

// Debug: what a collection removed (or, in a dry run, would remove) and why.
void LogCollected(const gc::CollectReport& report, bool dry_run) {
  if (report.expired_leases > 0) {
    log::Debug("gc.leases",
               {{"expired", report.expired_leases}, {"reason", "their resume window passed"}});
  }
  for (const std::string& what : report.removed) {
    log::Debug(dry_run ? "gc.removable" : "gc.removed",
               {{"what", what}, {"reason", "no image, unexpired lease or mount holds it"}});
  }
}

std::unique_ptr<pull::LayerHandler> LayerTimings::Observe(
    std::unique_ptr<pull::LayerHandler> inner) {
  return std::make_unique<TimedLayerHandler>(*this, std::move(inner));
}

}  // namespace

std::string VerboseInfo(const Image& image) {
  nlohmann::json info = nlohmann::json::object();
  info["chainID"] = image.chain_id;
  nlohmann::json spec =
      nlohmann::json::parse(image.config_json, nullptr, /*allow_exceptions=*/false);
  info["imageSpec"] = spec.is_discarded() ? nlohmann::json::object() : spec;
  info["snapshotter"] = image.snapshotter;
  return info.dump();
}

Result<std::unique_ptr<ImageService>> ImageService::Create(
    pull::Puller& puller, content::Store& store, snapshot::Snapshotter& snapshotter,
    snapshot::Cleaner& snapshot_cleaner, metadata::MetadataDb& db, ImageServiceOptions options) {
  if (!options.unpacker) {
    return Fail(ErrorCode::kInvalidArgument, "image service needs an unpacker");
  }
  std::unique_ptr<ImageService> service(
      new ImageService(puller, store, snapshotter, snapshot_cleaner, db, std::move(options)));
  BERTH_RETURN_IF_ERROR(service->Rebuild());
  return service;
}

Result<ImageEntry> ImageService::LoadEntry(const metadata::ImageRecord& record) {
  ImageEntry entry;
  entry.id = record.image_id;
  entry.snapshotter = record.snapshotter;
  BERTH_ASSIGN_OR_RETURN(std::string target,
                         store_.ReadBlob(record.target.digest, image::kMaxManifestBytes));
  BERTH_ASSIGN_OR_RETURN(image::ManifestKind kind,
                         image::DetectKind(record.target.media_type, target));
  std::optional<image::Manifest> manifest;
  int64_t manifest_size = 0;
  Digest manifest_digest = record.target.digest;
  if (image::IsIndex(kind)) {
    entry.blobs.push_back(record.target.digest);
    BERTH_ASSIGN_OR_RETURN(image::Index index, image::ParseIndex(target));
    for (const image::Descriptor& candidate : index.manifests) {
      Result<std::string> bytes = store_.ReadBlob(candidate.digest, image::kMaxManifestBytes);
      if (!bytes) continue;
      Result<image::Manifest> parsed = image::ParseManifest(*bytes);
      if (parsed && parsed->config.digest == record.image_id) {
        manifest = std::move(*parsed);
        manifest_size = static_cast<int64_t>(bytes->size());
        manifest_digest = candidate.digest;
        break;
      }
    }
    if (!manifest) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("no manifest for image {} in index {}", record.image_id.ToString(),
                              record.target.digest.ToString()));
    }
  } else {
    BERTH_ASSIGN_OR_RETURN(manifest, image::ParseManifest(target));
    manifest_size = static_cast<int64_t>(target.size());
  }
  BERTH_ASSIGN_OR_RETURN(entry.config_json,
                         store_.ReadBlob(record.image_id, image::kMaxManifestBytes));
  BERTH_ASSIGN_OR_RETURN(image::ImageConfig config, image::ParseImageConfig(entry.config_json));
  entry.user = config.user;
  entry.chain = ChainStrings(config.diff_ids);
  entry.size = manifest_size + manifest->config.size;
  entry.blobs.push_back(manifest_digest);
  entry.blobs.push_back(record.image_id);
  for (const image::Descriptor& layer : manifest->layers) {
    entry.size += layer.size;
    entry.blobs.push_back(layer.digest);
  }
  return entry;
}

Result<void> ImageService::Rebuild() {
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::ImageRecord> records, db_.ListImages());
  // The ID record comes first for each image, so its entry is loaded once.
  std::map<Digest, std::vector<const metadata::ImageRecord*>> by_image;
  for (const metadata::ImageRecord& record : records) by_image[record.image_id].push_back(&record);
  for (const auto& [id, image_records] : by_image) {
    Result<ImageEntry> entry = LoadEntry(*image_records.front());
    for (size_t i = 1; !entry && i < image_records.size(); ++i)
      entry = LoadEntry(*image_records[i]);
    if (!entry) {
      log::Warn("image.skip", {{"image", id.ToString()}, {"error", entry.error().ToString()}});
      continue;
    }
    std::vector<std::string> names;
    for (const metadata::ImageRecord* record : image_records) {
      if (record->name != id.ToString()) names.push_back(record->name);
    }
    index_.Put(*entry, names);
  }
  return Ok();
}

Result<PullResult> ImageService::Pull(const PullRequest& request, const CancelToken& cancel) {
  ImageServiceObserver* observer = options_.observer;
  if (observer == nullptr) return PullShared(request, cancel);
  const auto started = std::chrono::steady_clock::now();
  observer->PullStarted();
  Result<PullResult> result = PullShared(request, cancel);
  observer->PullDone(result ? "OK" : ErrorCodeName(result.error().code()),
                     std::chrono::steady_clock::now() - started);
  return result;
}

Result<PullResult> ImageService::PullShared(const PullRequest& request, const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(
      Reference reference,
      WithContext(Reference::Parse(request.image), fmt::format("pull \"{}\"", request.image)));
  // Requests share a pull only when they would pull the same thing with the same rights.
  const registry::CriAuthConfig& auth = request.auth;
  std::string key = fmt::format(
      "{}|{}|{}", reference.ToString(), request.platform.value_or(options_.platform).ToString(),
      Digest::Sha256Of(fmt::format("{}\n{}\n{}\n{}\n{}\n{}", auth.username, auth.password.reveal(),
                                   auth.auth.reveal(), auth.server_address,
                                   auth.identity_token.reveal(), auth.registry_token.reveal()))
          .encoded());
  auto pull = [&] { return PullOnce(request, reference, cancel); };
  while (true) {
    BERTH_ASSIGN_OR_RETURN(auto flight, pulls_.Do(key, pull, cancel));
    const Result<PullResult>& result = flight.result;
    // The leader's own caller may have gone away; that is no answer for this one: pull again.
    if (flight.role == FlightRole::kJoined && !result &&
        (result.error().code() == ErrorCode::kCancelled ||
         result.error().code() == ErrorCode::kDeadlineExceeded)) {
      continue;
    }
    return std::move(flight.result);
  }
}

// Holds what one pull needs, in the metadata database, for the collector.
class ImageService::PullLease final : public pull::PullLease {
 public:
  explicit PullLease(ImageService& service) : service_(service) {
    std::random_device random;
    id_ = fmt::format("pull-{:08x}{:08x}", random(), random());
  }
  const std::string& id() const { return id_; }

  Result<void> HoldBlobs(std::span<const Digest> digests) override {
    std::vector<metadata::LeaseResource> resources;
    for (const Digest& digest : digests) {
      resources.push_back({metadata::LeaseResourceKind::kBlob, digest.ToString()});
    }
    return service_.Hold(id_, std::move(resources));
  }
  Result<void> HoldSnapshots(std::span<const std::string> names) override {
    std::vector<metadata::LeaseResource> resources;
    for (const std::string& name : names) {
      resources.push_back({metadata::LeaseResourceKind::kSnapshot, name});
    }
    return service_.Hold(id_, std::move(resources));
  }
  Result<void> HoldActiveSnapshot(std::string_view key) override {
    return service_.Hold(id_, {{metadata::LeaseResourceKind::kActiveSnapshot, std::string(key)}});
  }

 private:
  ImageService& service_;
  std::string id_;
};

Result<PullResult> ImageService::PullOnce(const PullRequest& request, const Reference& reference,
                                          const CancelToken& cancel) {
  PullLease lease(*this);
  BERTH_RETURN_IF_ERROR(WithContext(db_.CreateLease(lease.id(), PullLeaseDescription(reference)),
                                    fmt::format("pull {}", reference.ToString())));
  const uint64_t progress_id = pull_progress_.Start(reference.ToString());
  Result<PullResult> result = PullUnderLease(request, reference, lease, progress_id, cancel);
  pull_progress_.Finish(progress_id, result ? nullptr : &result.error());
  // Pulled and named: the names hold everything now. Failed: keep what was fetched a while.
  Result<void> ended =
      result || options_.resume_window.count() == 0
          ? db_.DeleteLease(lease.id())
          : db_.ReleaseLeases(lease.id(), std::chrono::system_clock::now() + options_.resume_window)
                .map([](int64_t) {});
  if (!ended) {
    log::Warn("pull.lease", {{"lease", lease.id()}, {"error", ended.error().ToString()}});
  }
  return result;
}

void ImageService::DropDeadLeasesOf(const ImageEntry& entry, std::string_view pull_description,
                                    std::string_view reason) {
  Result<std::vector<metadata::LeaseRecord>> leases = db_.ListLeases();
  if (!leases) {
    log::Warn("lease.drop", {{"image", entry.id.ToString()}, {"error", leases.error().ToString()}});
    return;
  }
  for (const metadata::LeaseRecord& lease : *leases) {
    if (!lease.expires) continue;  // held: its pull is running
    const bool same_pull = !pull_description.empty() && lease.description == pull_description;
    if (!same_pull && !HoldsOnlyPiecesOf(lease, entry)) continue;
    if (Result<void> deleted = db_.DeleteLease(lease.id); !deleted) {
      log::Warn("lease.drop", {{"lease", lease.id}, {"error", deleted.error().ToString()}});
      continue;
    }
    log::Debug("lease.dropped",
               {{"lease", lease.id},
                {"description", lease.description},
                {"image", entry.id.ToString()},
                {"reason", reason},
                {"match", same_pull ? "same reference" : "holds only the image's pieces"}});
  }
}

Result<void> ImageService::Hold(const std::string& id,
                                std::vector<metadata::LeaseResource> resources) {
  std::shared_lock no_collection(gc_mutex_);
  return db_.AddLeaseResources(id, resources);
}

Result<PullResult> ImageService::PullUnderLease(const PullRequest& request,
                                                const Reference& reference, PullLease& lease,
                                                uint64_t progress_id, const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(pull::PulledImage pulled,
                         FetchUnderLease(request, reference, lease, progress_id, {}, cancel));
  return RecordPulledImage(reference, pulled);
}

Result<std::unique_ptr<StagedImage>> ImageService::Stage(const StageRequest& request,
                                                         const CancelToken& cancel) {
  BERTH_ASSIGN_OR_RETURN(
      Reference reference,
      WithContext(Reference::Parse(request.image), fmt::format("stage \"{}\"", request.image)));
  const std::string what = fmt::format("{}{}", kStageLeasePrefix, reference.ToString());
  PullLease lease(*this);
  BERTH_RETURN_IF_ERROR(WithContext(db_.CreateLease(lease.id(), what), what));
  const uint64_t progress_id = pull_progress_.Start(reference.ToString());
  Result<pull::PulledImage> fetched =
      FetchUnderLease({.image = request.image, .auth = request.auth}, reference, lease, progress_id,
                      request.destination, cancel);
  pull_progress_.Finish(progress_id, fetched ? nullptr : &fetched.error());
  Result<void> outcome = fetched ? Ok() : Fail(std::move(fetched).error().WithContext(what));
  return std::make_unique<StagedImage>(*this, lease.id(), std::move(outcome));
}

StagedImage::~StagedImage() { service_.DeleteLease(lease_id_); }

void ImageService::DeleteLease(const std::string& id) {
  if (Result<void> deleted = db_.DeleteLease(id); !deleted) {
    log::Warn("lease.delete", {{"lease", id}, {"error", deleted.error().ToString()}});
  }
}

Result<pull::PulledImage> ImageService::FetchUnderLease(
    const PullRequest& request, const Reference& reference, PullLease& lease, uint64_t progress_id,
    const unpack::UnpackDestination& destination, const CancelToken& cancel) {
  LayerTimings timings(reference.ToString(), options_.observer);
  std::unique_ptr<pull::LayerHandler> unpacker = timings.Observe(pull_progress_.Observe(
      progress_id, options_.unpacker(
                       lease,
                       [this, progress_id, &timings](const unpack::LayerProgress& layer) {
                         pull_progress_.Unpacked(progress_id, layer);
                         timings.Record(layer);
                       },
                       destination)));
  pull::ProgressFn progress = [this, progress_id, &request](const pull::BlobProgress& blob) {
    pull_progress_.Fetched(progress_id, blob);
    if (request.progress) request.progress(blob);
  };
  pull::PullOptions pull_options{.platform = request.platform.value_or(options_.platform),
                                 .auth = request.auth,
                                 .layer_handler = unpacker.get(),
                                 .lease = &lease};
  DiskAdmission::Admitted admitted;
  pull_options.admit = [&](const image::Manifest& manifest, const image::ImageConfig& config) {
    Result<void> admit = admission_.Admit(manifest, config, admitted);
    if (!admit && admit.error().code() == ErrorCode::kResourceExhausted &&
        options_.observer != nullptr) {
      options_.observer->AdmissionRefused();
    }
    return admit;
  };
  Result<pull::PulledImage> pulled =
      puller_.Pull(reference.ToString(), pull_options, progress, cancel);
  if (!pulled) return Fail(std::move(pulled).error());
  admission_.Learn(admitted);
  return pulled;
}

Result<PullResult> ImageService::RecordPulledImage(const Reference& reference,
                                                   const pull::PulledImage& pulled) {
  ImageEntry entry;
  entry.id = pulled.image_id;
  entry.snapshotter = options_.snapshotter_name;
  entry.user = pulled.config.user;
  entry.chain = ChainStrings(pulled.config.diff_ids);
  entry.size = pulled.content_size;
  if (pulled.target.digest != pulled.manifest.digest) entry.blobs.push_back(pulled.target.digest);
  entry.blobs.push_back(pulled.manifest.digest);
  entry.blobs.push_back(pulled.image_id);
  for (const image::Descriptor& layer : pulled.parsed_manifest.layers) {
    entry.blobs.push_back(layer.digest);
  }
  BERTH_ASSIGN_OR_RETURN(entry.config_json,
                         store_.ReadBlob(pulled.image_id, image::kMaxManifestBytes));
  if (!entry.chain.empty()) {
    BERTH_RETURN_IF_ERROR(
        WithContext(snapshotter_.Stat(entry.chain.back()),
                    fmt::format("pull {}: layers were not unpacked", reference.ToString())));
  }

  // Names, last and in one transaction: the ID, the tag (if any), the repo digest.
  metadata::ImageRecord base{
      .target = {.media_type = pulled.target.media_type,
                 .digest = pulled.target.digest,
                 .size = pulled.target.size},
      .image_id = pulled.image_id,
      .chain_id = entry.top_chain_id(),
      .snapshotter = options_.snapshotter_name,
      .labels = {{std::string(metadata::kManagedLabel), std::string(metadata::kManagedValue)}}};
  std::vector<std::string> names;
  if (reference.has_tag()) names.push_back(reference.ToString());
  // A converted schema1 image has no repo digest: its manifest is berth's, not the registry's.
  std::string repo_digest;
  if (!pulled.converted_schema1) {
    repo_digest = reference.NameOnly().WithDigest(pulled.target.digest).ToString();
    names.push_back(repo_digest);
  }
  std::vector<metadata::ImageRecord> records;
  records.push_back(base);
  records.back().name = pulled.image_id.ToString();
  for (const std::string& name : names) {
    records.push_back(base);
    records.back().name = name;
  }
  {
    std::lock_guard lock(names_mutex_);
    BERTH_RETURN_IF_ERROR(
        WithContext(db_.PutImages(records), fmt::format("record image {}", reference.ToString())));
    index_.Put(entry, names);
  }
  // The image's names hold its pieces now; what earlier dead pulls of it held beyond them is
  // garbage, and no pull will resume it.
  DropDeadLeasesOf(entry, PullLeaseDescription(reference), "the image was pulled");
  return PullResult{
      .image_id = pulled.image_id, .reference = reference.ToString(), .repo_digest = repo_digest};
}

std::optional<ImageEntry> ImageService::Resolve(std::string_view ref_or_id) const {
  if (ref_or_id.empty()) return std::nullopt;
  if (auto entry = index_.FindByName(ref_or_id)) return entry;
  if (Result<AnyReference> any = ParseAnyReference(ref_or_id)) {
    if (const Digest* id = std::get_if<Digest>(&*any)) {
      if (auto entry = index_.FindById(*id)) return entry;
    } else if (Result<Reference> normalized = Reference::Parse(ref_or_id)) {
      if (auto entry = index_.FindByName(normalized->ToString())) return entry;
    }
  }
  std::string_view prefix = ref_or_id;
  if (prefix.starts_with("sha256:")) prefix.remove_prefix(7);
  if (IsHex(prefix)) return index_.FindByIdPrefix(prefix);
  return std::nullopt;
}

std::vector<ImageEntry> ImageService::Match(std::string_view filter) const {
  // A repository without tag or digest: Resolve would read it as ":latest".
  Result<Reference> named = Reference::ParseNormalizedNamed(filter);
  if (named && !named->has_tag() && !named->digest()) {
    std::vector<ImageEntry> in_repository = index_.FindByRepository(named->Name());
    if (!in_repository.empty()) return in_repository;
  }
  std::vector<ImageEntry> entries;
  if (std::optional<ImageEntry> entry = Resolve(filter)) entries.push_back(std::move(*entry));
  return entries;
}

bool ImageService::IsReported(const ImageEntry& entry) {
  if (entry.chain.empty()) return true;
  Result<snapshot::Info> info = snapshotter_.Stat(entry.chain.back());
  return info && info->kind == snapshot::Kind::kCommitted;
}

bool ImageService::IsPinned(const ImageEntry& entry) const {
  for (const std::string& pin : options_.pinned_images) {
    for (const auto* names : {&entry.repo_tags, &entry.repo_digests}) {
      for (const std::string& name : *names) {
        if (HasGlob(pin)) {
          if (::fnmatch(pin.c_str(), name.c_str(), 0) == 0) return true;
        } else if (Result<Reference> normalized = Reference::Parse(pin)) {
          if (normalized->ToString() == name) return true;
        } else if (pin == name) {
          return true;
        }
      }
    }
    if (pin == entry.id.ToString()) return true;
  }
  return false;
}

Image ImageService::ToImage(const ImageEntry& entry) const {
  return Image{.id = entry.id,
               .repo_tags = entry.repo_tags,
               .repo_digests = entry.repo_digests,
               .size = entry.size,
               .user = ParseImageUser(entry.user),
               .pinned = IsPinned(entry),
               .chain_id = entry.top_chain_id(),
               .snapshotter = entry.snapshotter,
               .config_json = entry.config_json};
}

Result<std::vector<Image>> ImageService::List(std::string_view filter) {
  std::vector<ImageEntry> entries = filter.empty() ? index_.List() : Match(filter);
  std::vector<Image> images;
  for (const ImageEntry& entry : entries) {
    if (IsReported(entry)) images.push_back(ToImage(entry));
  }
  return images;
}

Result<std::optional<Image>> ImageService::Status(std::string_view ref_or_id) {
  std::optional<ImageEntry> entry = Resolve(ref_or_id);
  if (!entry || !IsReported(*entry)) return std::optional<Image>();
  return std::optional<Image>(ToImage(*entry));
}

std::optional<Image> ImageService::Find(std::string_view ref_or_id) const {
  std::optional<ImageEntry> entry = Resolve(ref_or_id);
  if (!entry) return std::nullopt;
  return ToImage(*entry);
}

Result<void> ImageService::Remove(std::string_view ref_or_id, RemovePinned pinned) {
  std::optional<ImageEntry> entry;
  {
    std::lock_guard lock(names_mutex_);
    // Resolved under the names lock, so a concurrent pull cannot add a name we then miss.
    entry = Resolve(ref_or_id);
    if (!entry) return Ok();
    if (pinned == RemovePinned::kRefuse && IsPinned(*entry)) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("image {} is pinned (config pull.pinned_images); not removed",
                              std::string(ref_or_id)));
    }
    std::vector<std::string> names = entry->repo_tags;
    names.insert(names.end(), entry->repo_digests.begin(), entry->repo_digests.end());
    names.push_back(entry->id.ToString());
    BERTH_RETURN_IF_ERROR(
        WithContext(db_.DeleteImages(names), fmt::format("remove image {}", entry->id.ToString())));
    index_.Remove(entry->id);
  }
  DropDeadLeasesOf(*entry, /*pull_description=*/{}, "the image was removed");
  if (Result<gc::CollectReport> collected = CollectGarbage(); !collected) {
    log::Warn("image.remove",
              {{"image", std::string(ref_or_id)}, {"gc_error", collected.error().ToString()}});
  }
  return Ok();
}

Result<gc::CollectReport> ImageService::CollectGarbage(bool dry_run) {
  std::unique_lock collection(gc_mutex_);
  return CollectLocked(dry_run);
}

Result<gc::CollectReport> ImageService::CollectLocked(bool dry_run, bool exclusive) {
  BERTH_ASSIGN_OR_RETURN(gc::CollectReport report,
                         gc::Collect(store_, snapshotter_, snapshot_cleaner_, db_,
                                     {.dry_run = dry_run,
                                      .discard_unpacked_layers = options_.discard_unpacked_layers,
                                      .exclusive = exclusive}));
  LogCollected(report, dry_run);
  if (!dry_run && options_.observer != nullptr) options_.observer->Collected(report);
  return report;
}

Result<void> ImageService::DropSnapshotsAndChildren(const std::vector<std::string>& missing) {
  if (missing.empty()) return Ok();
  std::map<std::string, std::vector<std::string>> children;
  BERTH_RETURN_IF_ERROR(snapshotter_.Walk([&](const snapshot::Info& info) -> Result<void> {
    if (!info.parent.empty()) children[info.parent].push_back(info.name);
    return Ok();
  }));
  // Depth first, children before their parent.
  std::set<std::string> removed;
  std::function<Result<void>(const std::string&)> drop =
      [&](const std::string& key) -> Result<void> {
    if (!removed.insert(key).second) return Ok();
    for (const std::string& child : children[key]) BERTH_RETURN_IF_ERROR(drop(child));
    Result<void> gone = snapshotter_.Remove(key);
    if (!gone && gone.error().code() != ErrorCode::kNotFound) return gone;
    log::Warn("snapshot.stale",
              {{"snapshot", key}, {"reason", "its layer is gone or damaged on disk"}});
    return Ok();
  };
  for (const std::string& key : missing) BERTH_RETURN_IF_ERROR(drop(key));
  return Ok();
}

Result<gc::CollectReport> ImageService::Recover() {
  std::unique_lock collection(gc_mutex_);
  BERTH_ASSIGN_OR_RETURN(int64_t released, db_.ReleaseLeases("", std::chrono::system_clock::now() +
                                                                     options_.resume_window));
  if (released > 0) {
    log::Info("recover.leases", {{"released", std::to_string(released)}});
  }
  // A staged image (Stage) is only of use to the process that staged it.
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::LeaseRecord> leases, db_.ListLeases());
  for (const metadata::LeaseRecord& lease : leases) {
    if (lease.description.starts_with(kStageLeasePrefix))
      BERTH_RETURN_IF_ERROR(db_.DeleteLease(lease.id));
  }
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> missing, snapshot_cleaner_.FindMissing());
  BERTH_RETURN_IF_ERROR(DropSnapshotsAndChildren(missing));
  return CollectLocked(/*dry_run=*/false, /*exclusive=*/true);
}

Result<CheckReport> ImageService::Check(const CheckOptions& options) {
  std::unique_lock collection(gc_mutex_);
  CheckReport report;
  // Images: each name's target, manifest and config in the store, its top snapshot committed.
  BERTH_ASSIGN_OR_RETURN(std::vector<metadata::ImageRecord> records, db_.ListImages());
  std::set<Digest> seen;
  for (const metadata::ImageRecord& record : records) {
    if (!seen.insert(record.image_id).second) continue;
    Result<ImageEntry> entry = LoadEntry(record);
    if (!entry) {
      report.problems.push_back(
          fmt::format("image {} ({}): {}; it is not reported until pulled "
                      "again",
                      record.image_id.ToString(), record.name, entry.error().message()));
      continue;
    }
    if (!entry->chain.empty()) {
      Result<snapshot::Info> top = snapshotter_.Stat(entry->chain.back());
      if (!top || top->kind != snapshot::Kind::kCommitted) {
        report.problems.push_back(fmt::format(
            "image {} ({}): its top snapshot {} is missing; it is not reported until pulled again",
            record.image_id.ToString(), record.name, entry->chain.back()));
      }
    }
  }
  // Snapshots whose directory is gone.
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> missing, snapshot_cleaner_.FindMissing());
  for (const std::string& key : missing) {
    report.problems.push_back(
        fmt::format("snapshot {}: its layer is gone or damaged on disk (removed or truncated "
                    "behind berth's back); `berth check --repair` drops it and what is built on "
                    "it, and the next pull makes it again",
                    key));
  }
  // Blobs whose bytes do not match their name.
  std::vector<Digest> corrupt;
  if (options.verify_digests) {
    std::vector<content::BlobInfo> blobs;
    BERTH_RETURN_IF_ERROR(
        store_.Walk([&](const content::BlobInfo& blob) { blobs.push_back(blob); }));
    for (const content::BlobInfo& blob : blobs) {
      Result<Digest> actual = HashBlob(store_, blob.digest);
      if (!actual) {
        if (actual.error().code() == ErrorCode::kNotFound) continue;  // removed meanwhile
        return Fail(std::move(actual).error());
      }
      ++report.blobs_verified;
      if (*actual != blob.digest) {
        corrupt.push_back(blob.digest);
        report.problems.push_back(fmt::format("blob {}: its bytes hash to {}",
                                              blob.digest.ToString(), actual->ToString()));
      }
    }
  }
  if (options.repair) {
    BERTH_RETURN_IF_ERROR(DropSnapshotsAndChildren(missing));
    for (const Digest& digest : corrupt) {
      Result<void> deleted = store_.Delete(digest);
      if (!deleted && deleted.error().code() != ErrorCode::kNotFound) return Fail(deleted.error());
    }
    BERTH_ASSIGN_OR_RETURN(report.garbage, CollectLocked(/*dry_run=*/false));
    report.repaired = true;
  } else {
    BERTH_ASSIGN_OR_RETURN(report.garbage, CollectLocked(/*dry_run=*/true));
  }
  return report;
}

Result<std::vector<FilesystemUsage>> ImageService::FsInfo() {
  std::map<std::string, std::vector<fs::path>> by_mountpoint;
  for (const fs::path& root : {options_.snapshot_root, store_.root()}) {
    if (root.empty()) continue;
    BERTH_ASSIGN_OR_RETURN(std::string mountpoint, MountpointOf(root));
    by_mountpoint[mountpoint].push_back(root);
  }
  std::vector<FilesystemUsage> filesystems;
  for (const auto& [mountpoint, roots] : by_mountpoint) {
    const snapshot::Usage usage = snapshot::DiskUsageBestEffort(roots);
    filesystems.push_back(
        {.timestamp = std::chrono::system_clock::now(),
         .mountpoint = mountpoint,
         .used_bytes = static_cast<uint64_t>(usage.size),
         .inodes_used = static_cast<uint64_t>(usage.inodes),
         .holds_writable_layers =
             std::find(roots.begin(), roots.end(), options_.snapshot_root) != roots.end()});
  }
  return filesystems;
}

}  // namespace berth::service
