#include "berth/containerd/remote_layers.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <set>
#include <utility>

#include "berth/base/log.h"
#include "berth/containerd/labels.h"
#include "berth/reference/reference.h"

namespace berth::containerd {
namespace {

using Clock = std::chrono::steady_clock;

// How often stages are checked for their end besides when one ends.
constexpr auto kJanitorInterval = std::chrono::seconds(5);
// How long after a stage of an image failed no new one of that image starts.
constexpr auto kFailedStageMemory = std::chrono::seconds(60);

// The stored name of containerd's `key`; "" stays "".
std::string Stored(std::string_view key) {
  if (key.empty()) return "";
  return std::string(snapshot::kContainerdKeyPrefix) + std::string(key);
}

const std::string* FindLabel(const snapshot::Labels& labels, std::string_view name) {
  auto found = labels.find(std::string(name));
  return found == labels.end() ? nullptr : &found->second;
}

std::string NewStagePrefix() {
  std::random_device random;
  return fmt::format("{}{:08x}-", kStagedPrefix, random());
}

}  // namespace

struct RemoteLayers::Stage {
  std::string image;   // what it pulls
  std::string prefix;  // "remote/<stage>/": its snapshots are prefix + chain ID
  std::string base;    // the stored name its first layer sits on; "" for none
  // Guarded by mutex_:
  std::set<std::string> taken;  // stored names containerd took (parents of the layers above)
  std::set<Digest> taken_chains;
  bool done = false;      // the pull ended
  bool complete = false;  // containerd took the top layer
  Clock::time_point ended;
  Result<void> outcome = Ok();
  std::unique_ptr<service::StagedImage> staged;  // its lease
  // Not guarded:
  CancelToken cancel;
  std::thread worker;  // runs the pull; joined when the stage ends
};

RemoteLayers::RemoteLayers(service::ImageService& images, snapshot::Snapshotter& snapshotter,
                           const registry::PullCredentials* credentials,
                           RemoteLayersOptions options)
    : images_(images),
      snapshotter_(snapshotter),
      credentials_(credentials),
      options_(options),
      stage_prefix_(NewStagePrefix()),
      janitor_([this] { Janitor(); }) {}

RemoteLayers::~RemoteLayers() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (const std::shared_ptr<Stage>& stage : stages_) stage->cancel.Cancel();
  }
  changed_.notify_all();
  janitor_.join();
  EndStages(/*all=*/true);
}

size_t RemoteLayers::stages() const {
  std::lock_guard lock(mutex_);
  return stages_.size();
}

Result<std::optional<RemoteLayers::Wanted>> RemoteLayers::ReadWanted(
    const snapshot::Labels& labels) {
  const std::string* chain_id = FindLabel(labels, kSnapshotRefLabel);
  const std::string* reference = FindLabel(labels, kImageRefLabel);
  const std::string* manifest = FindLabel(labels, kManifestDigestLabel);
  if (chain_id == nullptr || reference == nullptr || manifest == nullptr) return std::nullopt;
  Wanted wanted;
  BERTH_ASSIGN_OR_RETURN(wanted.chain_id,
                         WithContext(Digest::Parse(*chain_id), std::string(kSnapshotRefLabel)));
  BERTH_ASSIGN_OR_RETURN(Reference parsed,
                         WithContext(Reference::Parse(*reference), std::string(kImageRefLabel)));
  BERTH_ASSIGN_OR_RETURN(Digest digest,
                         WithContext(Digest::Parse(*manifest), std::string(kManifestDigestLabel)));
  wanted.image = parsed.NameOnly().WithDigest(digest).ToString();
  wanted.reference = *reference;
  wanted.host = parsed.domain();
  const std::string* layers = FindLabel(labels, kImageLayersLabel);
  wanted.top = layers != nullptr && !layers->empty() && layers->find(',') == std::string::npos;
  return std::optional<Wanted>(std::move(wanted));
}

bool RemoteLayers::Provide(const LayerRequest& request, const CancelToken& cancel) {
  Result<std::optional<Wanted>> wanted = ReadWanted(request.labels);
  if (wanted && !*wanted) {
    log::Debug("containerd.remote.skip",
               {{"key", request.key}, {"reason", "no CRI image labels; containerd fetches it"}});
    return false;
  }
  Result<void> provided = wanted ? ProvideLayer(**wanted, request, cancel)
                                 : Result<void>(Fail(std::move(wanted).error()));
  if (!provided) {
    const std::string* layer = FindLabel(request.labels, kSnapshotRefLabel);
    log::Warn("containerd.remote.fallback",
              {{"key", request.key},
               {"layer", layer != nullptr ? *layer : ""},
               {"error", provided.error().ToString()},
               {"then", "containerd fetches and unpacks this layer itself"}});
    return false;
  }
  return true;
}

Result<void> RemoteLayers::ProvideLayer(const Wanted& wanted, const LayerRequest& request,
                                        const CancelToken& cancel) {
  const std::string parent = Stored(request.parent);
  std::unique_lock lock(mutex_);
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<Stage> stage, FindOrStartStage(wanted, parent));
  BERTH_RETURN_IF_ERROR(cancel.Wait(changed_, lock, [&] { return stage->done || stopping_; }));
  if (!stage->done) return Fail(ErrorCode::kUnavailable, "berthd is stopping");
  return Take(*stage, wanted, request);
}

Result<std::shared_ptr<RemoteLayers::Stage>> RemoteLayers::FindOrStartStage(
    const Wanted& wanted, const std::string& parent) {
  for (const std::shared_ptr<Stage>& stage : stages_) {
    if (stage->image != wanted.image || stage->complete) continue;
    if (stage->taken_chains.contains(wanted.chain_id)) continue;  // a second pull of it
    if (stage->base == parent || stage->taken.contains(parent)) return stage;
  }
  // A stage of this image that failed a moment ago would fail again (no credentials, a registry
  // out of reach): containerd fetches the rest itself rather than wait for each layer's retry.
  for (const std::shared_ptr<Stage>& stage : stages_) {
    if (stage->image != wanted.image || !stage->done || stage->outcome) continue;
    const auto ago = Clock::now() - stage->ended;
    if (ago < kFailedStageMemory) {
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("a stage of this image failed {} s ago, so berth does not try again "
                              "yet: {}",
                              std::chrono::duration_cast<std::chrono::seconds>(ago).count(),
                              stage->outcome.error().ToString()));
    }
  }
  // A new stage on `parent`: which of the image's layers it holds is its snapshot.ref label
  // (containerd sets it on every layer snapshot, and berth on every one it hands over).
  std::optional<Digest> parent_chain;
  if (!parent.empty()) {
    BERTH_ASSIGN_OR_RETURN(snapshot::Info info, snapshotter_.Stat(parent));
    const std::string* chain_id = FindLabel(info.labels, kSnapshotRefLabel);
    if (chain_id == nullptr) {
      return Fail(
          ErrorCode::kFailedPrecondition,
          fmt::format("the parent snapshot {} has no {} label, so berth cannot tell "
                      "which of the image's layers it holds",
                      parent.substr(snapshot::kContainerdKeyPrefix.size()), kSnapshotRefLabel));
    }
    BERTH_ASSIGN_OR_RETURN(parent_chain, Digest::Parse(*chain_id));
  }
  return StartStage(wanted, parent, parent_chain);
}

std::shared_ptr<RemoteLayers::Stage> RemoteLayers::StartStage(
    const Wanted& wanted, const std::string& parent, const std::optional<Digest>& parent_chain) {
  auto stage = std::make_shared<Stage>();
  stage->image = wanted.image;
  stage->prefix = fmt::format("{}{}/", stage_prefix_, next_stage_++);
  stage->base = parent;
  service::StageRequest request{
      .image = wanted.image,
      .auth = CredentialsFor(wanted),
      .destination = {
          .name_prefix = stage->prefix, .base_snapshot = parent, .base_chain_id = parent_chain}};
  log::Info(
      "containerd.remote.stage",
      {{"image", wanted.image}, {"stage", stage->prefix}, {"on", parent.empty() ? "-" : parent}});
  stage->worker = std::thread([this, stage, request = std::move(request)] {
    const Clock::time_point started = Clock::now();
    Result<std::unique_ptr<service::StagedImage>> staged = images_.Stage(request, stage->cancel);
    std::lock_guard lock(mutex_);
    if (staged) {
      stage->outcome = (*staged)->outcome();
      stage->staged = std::move(*staged);
    } else {
      stage->outcome = Fail(std::move(staged).error());
    }
    stage->done = true;
    stage->ended = Clock::now();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(stage->ended - started).count();
    log::Info("containerd.remote.staged",
              {{"image", stage->image},
               {"stage", stage->prefix},
               {"ms", ms},
               {"outcome", stage->outcome ? "OK" : stage->outcome.error().ToString()}});
    changed_.notify_all();
  });
  stages_.push_back(stage);
  return stage;
}

Result<void> RemoteLayers::Take(Stage& stage, const Wanted& wanted, const LayerRequest& request) {
  const std::string staged = stage.prefix + wanted.chain_id.ToString();
  Result<snapshot::Info> info = snapshotter_.Stat(staged);
  if (!info) {
    if (!stage.outcome) return Fail(stage.outcome.error());
    return Fail(std::move(info).error());
  }
  const std::string parent = Stored(request.parent);
  if (info->parent != parent) {
    return Fail(ErrorCode::kFailedPrecondition,
                fmt::format("berth staged layer {} on {}, not on containerd's {}",
                            wanted.chain_id.ToString(), info->parent, request.parent));
  }
  BERTH_RETURN_IF_ERROR(snapshotter_.Rename(staged, Stored(request.key), request.labels));
  stage.taken.insert(Stored(request.key));
  stage.taken_chains.insert(wanted.chain_id);
  stage.complete = wanted.top;
  if (stage.complete) changed_.notify_all();
  log::Debug("containerd.remote.taken",
             {{"image", stage.image}, {"layer", wanted.chain_id.ToString()}, {"key", request.key}});
  return Ok();
}

registry::CriAuthConfig RemoteLayers::CredentialsFor(const Wanted& wanted) const {
  if (credentials_ == nullptr) return {};
  if (std::optional<registry::CriAuthConfig> auth = credentials_->ForImage(wanted.reference)) {
    return *std::move(auth);
  }
  if (std::optional<registry::CriAuthConfig> auth = credentials_->ForHost(wanted.host)) {
    return *std::move(auth);
  }
  return {};
}

void RemoteLayers::Janitor() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    changed_.wait_for(lock, kJanitorInterval);
    if (stopping_) break;
    lock.unlock();
    EndStages(/*all=*/false);
    lock.lock();
  }
}

void RemoteLayers::EndStages(bool all) {
  std::vector<std::shared_ptr<Stage>> over;
  {
    std::lock_guard lock(mutex_);
    const Clock::time_point now = Clock::now();
    std::erase_if(stages_, [&](const std::shared_ptr<Stage>& stage) {
      const bool ends =
          all || (stage->done && (stage->complete || now - stage->ended >= options_.keep_staged));
      if (ends) over.push_back(stage);
      return ends;
    });
  }
  if (over.empty()) return;
  for (const std::shared_ptr<Stage>& stage : over) {
    stage->cancel.Cancel();
    if (stage->worker.joinable()) stage->worker.join();
    Discard(*stage);
  }
  // The stages' blobs (and anything else nothing holds) are garbage now.
  Result<gc::CollectReport> collected = images_.CollectGarbage();
  if (!collected) {
    log::Warn("containerd.remote.gc", {{"error", collected.error().ToString()}});
  }
}

void RemoteLayers::Discard(Stage& stage) {
  std::vector<std::string> left;
  Result<void> walked = snapshotter_.Walk([&](const snapshot::Info& info) -> Result<void> {
    if (info.name.starts_with(stage.prefix)) left.push_back(info.name);
    return Ok();
  });
  if (!walked) {
    log::Warn("containerd.remote.discard", {{"stage", stage.prefix},
                                            {"error", walked.error().ToString()},
                                            {"then", "the next collection removes what is left"}});
  }
  const size_t staged = left.size();
  // A staged layer may sit on another: remove what has no child, pass after pass.
  for (size_t pass = 0; pass < staged && !left.empty(); ++pass) {
    std::erase_if(left, [&](const std::string& name) {
      Result<void> removed = snapshotter_.Remove(name);
      return removed || removed.error().code() == ErrorCode::kNotFound;
    });
  }
  std::lock_guard lock(mutex_);
  log::Info("containerd.remote.stage.end", {{"image", stage.image},
                                            {"stage", stage.prefix},
                                            {"taken", stage.taken.size()},
                                            {"removed", staged - left.size()},
                                            {"left", left.size()}});
  stage.staged.reset();  // deletes its lease
}

}  // namespace berth::containerd
