#include "berth/unpack/unpacker.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <random>
#include <string_view>
#include <thread>
#include <utility>

#include "berth/base/byte_size.h"
#include "berth/erofs/image_writer.h"

namespace berth::unpack {
LayerThreadBudget::LayerThreadBudget(int cores)
    : cores_(cores > 0 ? cores
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))) {}

LayerThreadBudget::Slot LayerThreadBudget::Begin(UnpackOptions::LayerThreads mode) {
  using archive::ApplyThreading;
  const int already = applying_.fetch_add(1);
  switch (mode) {
    case UnpackOptions::LayerThreads::kOne:
      return Slot(this, ApplyThreading::kSingle);
    case UnpackOptions::LayerThreads::kTwo:
      return Slot(this, ApplyThreading::kTwoThreads);
    case UnpackOptions::LayerThreads::kThree:
      return Slot(this, ApplyThreading::kThreeThreads);
    case UnpackOptions::LayerThreads::kAuto:
      break;
  }
  if (already == 0 && cores_ >= 2) return Slot(this, ApplyThreading::kThreeThreads);
  if (already + 2 <= cores_) return Slot(this, ApplyThreading::kTwoThreads);
  return Slot(this, ApplyThreading::kSingle);
}

namespace {

namespace fs = std::filesystem;

// The mount point of the filesystem holding `path`: its highest ancestor on the same device.
fs::path MountPointOf(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path;
  fs::path mount = path;
  while (mount.has_parent_path() && mount.parent_path() != mount) {
    struct stat parent {};
    if (::stat(mount.parent_path().c_str(), &parent) != 0 || parent.st_dev != st.st_dev) break;
    mount = mount.parent_path();
  }
  return mount;
}

// kResourceExhausted when the filesystem holding `directory` has less free space than the
// reserve `options` ask for, after `layer` inflated to `inflated` bytes.
Result<void> CheckReserve(const UnpackOptions& options, const image::Descriptor& layer,
                          const fs::path& directory, uint64_t inflated) {
  struct statvfs st {};
  if (::statvfs(directory.c_str(), &st) != 0) return Ok();  // cannot be measured: not checked
  const uint64_t available = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  const uint64_t size = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  const auto share =
      static_cast<uint64_t>(static_cast<double>(size) * options.min_free_percent / 100.0);
  const uint64_t reserve = std::max(options.min_free_bytes, share);
  if (available >= reserve) return Ok();
  // The reserve as the config spells it.
  const std::string setting =
      options.min_free_percent == 0 ? FormatByteSize(options.min_free_bytes)
      : options.min_free_bytes == 0
          ? fmt::format("{:g}% of the filesystem", options.min_free_percent)
          : fmt::format("the larger of {:g}% and {}", options.min_free_percent,
                        FormatByteSize(options.min_free_bytes));
  return Fail(ErrorCode::kResourceExhausted,
              fmt::format("layer {} had inflated to {} ({} bytes) when the filesystem at {} was "
                          "left with {} free of {}, below the reserve of {} (pull.min_free_space: "
                          "{}); the pull stopped and the partial layer was discarded. Free space "
                          "there (berth rmi, berth gc) or move berth's root to a larger "
                          "filesystem, then pull again",
                          layer.digest, FormatByteSize(inflated), inflated,
                          MountPointOf(directory).string(), FormatByteSize(available),
                          FormatByteSize(size), FormatByteSize(reserve), setting));
}

// kInvalidArgument when `layer` inflated to more than max_inflate_ratio times its size.
Result<void> CheckInflateRatio(const UnpackOptions& options, const image::Descriptor& layer,
                               uint64_t inflated) {
  const double limit = std::max(options.max_inflate_ratio * static_cast<double>(layer.size),
                                static_cast<double>(kMinInflateLimit));
  if (options.max_inflate_ratio <= 0 || static_cast<double>(inflated) <= limit) return Ok();
  return Fail(
      ErrorCode::kInvalidArgument,
      fmt::format("layer {} is {} ({} bytes) compressed and inflated to more than {} ({} "
                  "bytes), over {:g} times its size (pull.max_inflate_ratio): refused as "
                  "a decompression bomb and the partial layer discarded; if the image is "
                  "trusted, raise pull.max_inflate_ratio",
                  layer.digest, FormatByteSize(static_cast<uint64_t>(layer.size)), layer.size,
                  FormatByteSize(inflated), inflated, options.max_inflate_ratio));
}

}  // namespace

// One layer being written into an ApplyTarget. Its bytes go through a LayerApplier whose tar
// entries are applied under the target's directory or, when the target takes an image
// (ApplyTarget::layer_image) and the form allows it, go to an erofs::ImageWriter writing
// "<layer_image>.partial". FinishStream() ends the stream; an image is then completed by
// CompleteImage() (its implicit directories given the lower layers' attributes, fsynced when
// `apply.sync` asks for it, renamed to layer_image). Destroyed before that, it deletes the
// partial image.
class Unpacker::LayerWriter {
 public:
  static Result<std::unique_ptr<LayerWriter>> Create(archive::ApplyOptions apply,
                                                     const snapshot::ApplyTarget& target,
                                                     LayerForm form) {
    std::unique_ptr<LayerWriter> writer(new LayerWriter());
    if (form == LayerForm::kAsTargetPrefers && !target.layer_image.empty()) {
      writer->image_path_ = target.layer_image;
      writer->partial_path_ = target.layer_image;
      writer->partial_path_ += ".partial";
      writer->preserve_ownership_ = apply.preserve_ownership;
      erofs::ImageWriterOptions image_options;
      image_options.implicit_uid = ::geteuid();
      image_options.implicit_gid = ::getegid();
      image_options.sync = apply.sync == archive::SyncPolicy::kNone
                               ? erofs::ImageSync::kNone
                               : erofs::ImageSync::kFsyncAtFinish;
      BERTH_ASSIGN_OR_RETURN(writer->image_,
                             erofs::ImageWriter::Create(writer->partial_path_, image_options));
      apply.visitor = writer->image_.get();
    }
    BERTH_ASSIGN_OR_RETURN(writer->applier_, archive::LayerApplier::Create(apply));
    return writer;
  }

  ~LayerWriter() {
    applier_.reset();  // its worker may still be calling the image writer
    image_.reset();
    if (!partial_path_.empty()) (void)::unlink(partial_path_.c_str());
  }

  Result<void> Write(std::string_view chunk) { return applier_->Write(chunk); }

  // Ends the layer's stream. A layer of files is then complete; an image waits for
  // CompleteImage().
  Result<archive::ApplyResult> FinishStream() {
    Result<archive::ApplyResult> applied = applier_->Finish();
    applier_.reset();
    return applied;
  }

  // Whether CompleteImage() needs the lower layers: an image with implicit directories, which
  // must show the lower layers' attributes (the overlay snapshotter's applier does the same).
  bool ImageNeedsLowerLayers() const {
    return image_ != nullptr && !partial_path_.empty() && !image_->ImplicitDirectories().empty();
  }

  // Gives the image's implicit directories the attributes `lower_dirs` (the layer's parents,
  // topmost first; none for a first layer) show, writes its metadata and renames it into
  // place. Does nothing for a layer of files.
  Result<void> CompleteImage(const std::vector<fs::path>& lower_dirs) {
    if (image_ == nullptr || partial_path_.empty()) return Ok();
    BERTH_RETURN_IF_ERROR(erofs::InheritLowerDirectories(*image_, lower_dirs, preserve_ownership_));
    BERTH_RETURN_IF_ERROR(image_->Finish());
    if (::rename(partial_path_.c_str(), image_path_.c_str()) != 0) {
      return Fail(ErrnoError(
          errno, fmt::format("rename {} to {}", partial_path_.string(), image_path_.string())));
    }
    partial_path_.clear();
    return Ok();
  }

 private:
  LayerWriter() = default;

  fs::path image_path_;
  fs::path partial_path_;  // empty once renamed, or without an image
  bool preserve_ownership_ = true;
  std::unique_ptr<erofs::ImageWriter> image_;
  std::unique_ptr<archive::LayerApplier> applier_;  // may point at image_; null once finished
};

LayerThreadBudget::Slot::Slot(Slot&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), threading_(other.threading_) {}

LayerThreadBudget::Slot::~Slot() {
  if (budget_ != nullptr) budget_->applying_.fetch_sub(1);
}

// Feeds a layer's bytes to a LayerApplier writing into the layer's own (parentless) snapshot.
class Unpacker::StreamingObserver final : public pull::LayerObserver {
 public:
  StreamingObserver(Unpacker& unpacker, size_t index, image::Descriptor descriptor, std::string key)
      : unpacker_(unpacker),
        index_(index),
        descriptor_(std::move(descriptor)),
        key_(std::move(key)) {}

  Result<void> Start() {
    BERTH_ASSIGN_OR_RETURN(snapshot::ApplyTarget target,
                           unpacker_.snapshotter_.GetApplyTarget(key_));
    if (target.whiteouts != snapshot::WhiteoutStyle::kOverlay) {
      return Fail(ErrorCode::kInternal,
                  fmt::format("snapshot {} cannot take a streamed layer: it holds its parent's "
                              "tree",
                              key_));
    }
    applying_.emplace(unpacker_.threads_.Begin(unpacker_.options_.layer_threads));
    BERTH_ASSIGN_OR_RETURN(
        applier_,
        LayerWriter::Create(unpacker_.ApplyOptionsFor(applying_->threading(), target, descriptor_),
                            target, LayerForm::kAsTargetPrefers));
    needs_lower_layers_ = false;
    return Ok();
  }

  Result<void> Write(std::string_view chunk) override {
    if (needs_lower_layers_) return Ok();  // applied again from the blob later
    Result<void> written = applier_->Write(chunk);
    if (!written) return Divert(std::move(written).error());
    return Ok();
  }

  Result<void> Reset() override {
    // The download starts again from byte 0: start again with an empty snapshot.
    DropApplier();
    std::string old_key = std::exchange(key_, unpacker_.NewKey(index_));
    BERTH_RETURN_IF_ERROR(unpacker_.snapshotter_.Remove(old_key));
    unpacker_.ForgetKey(old_key);
    BERTH_RETURN_IF_ERROR(unpacker_.TrackKey(key_));
    BERTH_RETURN_IF_ERROR(unpacker_.snapshotter_.Prepare(key_, "", {}));
    return Start();
  }

  Result<void> Finish() override {
    const std::string what = fmt::format("unpack layer {} ({})", index_, descriptor_.digest);
    if (!needs_lower_layers_) {
      Result<archive::ApplyResult> applied = applier_->FinishStream();
      std::unique_ptr<LayerWriter> writer = std::move(applier_);
      DropApplier();
      if (!applied) {
        if (Result<void> diverted = Divert(std::move(applied).error()); !diverted) {
          return WithContext(std::move(diverted), what);
        }
      } else {
        BERTH_RETURN_IF_ERROR(WithContext(unpacker_.CheckDiffId(index_, applied->diff_id), what));
        // An image whose implicit directories need the parents' attributes is finished at
        // commit, when the parents are committed; any other now, while its download's
        // thread is still ours.
        std::unique_ptr<LayerWriter> unfinished_image;
        if (writer->ImageNeedsLowerLayers() && !unpacker_.ParentName(index_).empty()) {
          unfinished_image = std::move(writer);
        } else {
          BERTH_RETURN_IF_ERROR(WithContext(writer->CompleteImage({}), what));
        }
        unpacker_.Report(index_, LayerEvent::kApplied, applied->uncompressed_bytes);
        return WithContext(
            unpacker_.MarkReady(index_, State::kApplied, key_, applied->uncompressed_bytes,
                                std::move(applied->implicit_dirs), std::move(unfinished_image)),
            what);
      }
    }
    // The layer links to files of lower layers: drop this attempt; it is applied from the blob
    // (now committed to the store) once its parent is committed.
    BERTH_RETURN_IF_ERROR(WithContext(unpacker_.snapshotter_.Remove(key_), what));
    unpacker_.ForgetKey(key_);
    return WithContext(unpacker_.MarkReady(index_, State::kBlobReady, "", 0), what);
  }

 private:
  // The applier first (its worker stops), then the thread slot it held.
  void DropApplier() {
    applier_.reset();
    applying_.reset();
  }

  // A hardlink to a lower layer's file (kFailedPrecondition from the applier) is not an error
  // of the layer: the layer is applied again later with its lower layers. Anything else is.
  Result<void> Divert(Error error) {
    if (error.code() != ErrorCode::kFailedPrecondition) return Fail(std::move(error));
    DropApplier();
    needs_lower_layers_ = true;
    return Ok();
  }

  Unpacker& unpacker_;
  const size_t index_;
  const image::Descriptor descriptor_;
  std::string key_;
  // Held while applier_ exists; declared first, so it is freed after the applier's worker stops.
  std::optional<LayerThreadBudget::Slot> applying_;
  std::unique_ptr<LayerWriter> applier_;
  bool needs_lower_layers_ = false;
};

// For snapshotters that cannot rebase: ignores the bytes and, once the blob is committed to the
// store, queues the layer to be applied from it on top of its parent.
class Unpacker::BlobObserver final : public pull::LayerObserver {
 public:
  BlobObserver(Unpacker& unpacker, size_t index) : unpacker_(unpacker), index_(index) {}
  Result<void> Write(std::string_view) override { return Ok(); }
  Result<void> Reset() override { return Ok(); }
  Result<void> Finish() override { return unpacker_.MarkReady(index_, State::kBlobReady, "", 0); }

 private:
  Unpacker& unpacker_;
  const size_t index_;
};

Unpacker::Unpacker(snapshot::Snapshotter& snapshotter, content::Store& store,
                   LayerThreadBudget& threads, UnpackOptions options, LayerProgressFn progress,
                   pull::PullLease* lease)
    : snapshotter_(snapshotter),
      store_(store),
      threads_(threads),
      options_(std::move(options)),
      progress_(std::move(progress)),
      lease_(lease),
      rebase_(snapshotter.SupportsRebase()) {}

Unpacker::~Unpacker() {
  if (!ended_) RemoveKeys();
}

Result<void> Unpacker::Begin(const image::Manifest& manifest, const image::ImageConfig& config) {
  if (config.diff_ids.size() != manifest.layers.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("the image config lists {} diff_ids but the manifest has {} layers",
                            config.diff_ids.size(), manifest.layers.size()));
  }
  if (manifest.layers.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "the image has no layers to unpack");
  }
  std::vector<Digest> chain_ids = image::ChainIds(config.diff_ids);
  const UnpackDestination& destination = options_.destination;
  size_t base_layers = 0;
  if (destination.base_chain_id) {
    auto base = std::find(chain_ids.begin(), chain_ids.end(), *destination.base_chain_id);
    if (base == chain_ids.end()) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("the base snapshot {} holds the layers {}, which are not the lower "
                              "layers of this image",
                              destination.base_snapshot, destination.base_chain_id->ToString()));
    }
    base_layers = static_cast<size_t>(base - chain_ids.begin()) + 1;
  }
  std::lock_guard lock(mutex_);
  chain_ids_ = std::move(chain_ids);
  base_layers_ = base_layers;
  if (lease_ != nullptr) {
    std::vector<std::string> names;
    if (!destination.base_snapshot.empty()) names.push_back(destination.base_snapshot);
    for (size_t i = base_layers_; i < chain_ids_.size(); ++i) names.push_back(SnapshotName(i));
    BERTH_RETURN_IF_ERROR(lease_->HoldSnapshots(names));
  }
  layers_.clear();
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    layers_.push_back({.descriptor = manifest.layers[i], .diff_id = config.diff_ids[i]});
  }
  stats_ = UnpackStats{.layers = layers_.size()};
  return Ok();
}

std::string Unpacker::NewKey(size_t index) const {
  std::random_device random;
  uint64_t nonce = (uint64_t{random()} << 32) | random();
  return fmt::format("{}{:016x}-{}", snapshot::kUnpackScratchPrefix, nonce,
                     chain_ids_[index].ToString());
}

std::string Unpacker::SnapshotName(size_t index) const {
  return options_.destination.name_prefix + chain_ids_[index].ToString();
}

std::string Unpacker::ParentName(size_t index) const {
  if (index == 0) return "";
  if (index == base_layers_) return options_.destination.base_snapshot;
  return SnapshotName(index - 1);
}

Result<snapshot::Info> Unpacker::StatLayer(size_t index) {
  // A layer under the destination's base counts as committed, whatever it is named there.
  if (index < base_layers_) return snapshot::Info{.kind = snapshot::Kind::kCommitted};
  return snapshotter_.Stat(SnapshotName(index));
}

archive::ApplyOptions Unpacker::ApplyOptionsFor(archive::ApplyThreading threading,
                                                const snapshot::ApplyTarget& target,
                                                const image::Descriptor& layer) const {
  archive::ApplyOptions apply;
  apply.root = target.directory;
  apply.media_type = layer.media_type;
  apply.whiteout_mode = target.whiteouts == snapshot::WhiteoutStyle::kOverlay
                            ? archive::WhiteoutMode::kOverlay
                            : archive::WhiteoutMode::kDelete;
  apply.limits.max_uncompressed_bytes = options_.max_layer_size;
  apply.sync = options_.sync;
  apply.preserve_ownership = options_.preserve_ownership;
  apply.gzip_backend = options_.gzip_backend;
  apply.threading = threading;
  const bool reserve = options_.min_free_bytes > 0 || options_.min_free_percent > 0;
  if (reserve || options_.max_inflate_ratio > 0) {
    apply.inflate_check = [options = options_, layer, directory = target.directory,
                           reserve](uint64_t inflated) -> Result<void> {
      BERTH_RETURN_IF_ERROR(CheckInflateRatio(options, layer, inflated));
      if (!reserve) return Ok();
      return CheckReserve(options, layer, directory, inflated);
    };
    // A ratio limit on a small layer is checked more often, so that a bomb is stopped near it.
    const double ratio_limit =
        std::max(options_.max_inflate_ratio * static_cast<double>(layer.size),
                 static_cast<double>(kMinInflateLimit));
    apply.inflate_check_interval = options_.max_inflate_ratio > 0
                                       ? std::clamp(static_cast<uint64_t>(ratio_limit / 8),
                                                    uint64_t{64} << 10, kSpaceCheckInterval)
                                       : kSpaceCheckInterval;
  }
  return apply;
}

Result<pull::LayerPlan> Unpacker::PlanLayer(size_t index) {
  if (index >= chain_ids_.size()) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("no layer {} to plan", index));
  }
  const std::string name = SnapshotName(index);
  image::Descriptor descriptor;
  {
    std::lock_guard lock(mutex_);
    descriptor = layers_[index].descriptor;
  }
  Result<snapshot::Info> existing = StatLayer(index);
  if (existing) {
    if (existing->kind != snapshot::Kind::kCommitted) {
      return Fail(ErrorCode::kFailedPrecondition,
                  fmt::format("snapshot {} exists but is {}, not committed", name,
                              snapshot::KindName(existing->kind)));
    }
    {
      std::lock_guard lock(mutex_);
      layers_[index].state = State::kPresent;
      ++stats_.already_present;
    }
    Report(index, LayerEvent::kAlreadyPresent);
    BERTH_RETURN_IF_ERROR(Advance());
    return pull::LayerPlan{.skip = true};
  }
  if (existing.error().code() != ErrorCode::kNotFound) return Fail(std::move(existing).error());

  if (!rebase_) {
    return pull::LayerPlan{.observer = std::make_unique<BlobObserver>(*this, index)};
  }
  std::string key = NewKey(index);
  BERTH_RETURN_IF_ERROR(TrackKey(key));
  BERTH_RETURN_IF_ERROR(snapshotter_.Prepare(key, "", {}));
  auto observer = std::make_unique<StreamingObserver>(*this, index, descriptor, key);
  BERTH_RETURN_IF_ERROR(WithContext(observer->Start(),
                                    fmt::format("unpack layer {} ({})", index, descriptor.digest)));
  return pull::LayerPlan{.observer = std::move(observer)};
}

Result<void> Unpacker::CheckDiffId(size_t index, const Digest& actual) const {
  const Digest& expected = [&]() -> const Digest& {
    std::lock_guard lock(mutex_);
    return layers_[index].diff_id;
  }();
  if (actual == expected) return Ok();
  return Fail(ErrorCode::kDataLoss,
              fmt::format("the uncompressed layer's digest is {} but the image config says "
                          "diff_ids[{}] = {}; the layer was not committed",
                          actual.ToString(), index, expected.ToString()));
}

void Unpacker::Report(size_t index, LayerEvent event, uint64_t uncompressed_bytes) {
  if (progress_) {
    progress_({.index = index,
               .chain_id = chain_ids_[index],
               .event = event,
               .uncompressed_bytes = uncompressed_bytes});
  }
}

Result<void> Unpacker::TrackKey(std::string key) {
  if (lease_ != nullptr) BERTH_RETURN_IF_ERROR(lease_->HoldActiveSnapshot(key));
  std::lock_guard lock(mutex_);
  keys_.push_back(std::move(key));
  return Ok();
}

void Unpacker::ForgetKey(const std::string& key) {
  std::lock_guard lock(mutex_);
  std::erase(keys_, key);
}

Result<void> Unpacker::MarkReady(size_t index, State state, std::string key,
                                 uint64_t uncompressed_bytes,
                                 std::vector<std::string> implicit_dirs,
                                 std::unique_ptr<LayerWriter> unfinished_image) {
  {
    std::lock_guard lock(mutex_);
    Layer& layer = layers_[index];
    layer.state = state;
    layer.key = std::move(key);
    layer.implicit_dirs = std::move(implicit_dirs);
    layer.unfinished_image = std::move(unfinished_image);
    if (state == State::kApplied) {
      ++stats_.streamed;
      stats_.uncompressed_bytes += uncompressed_bytes;
    }
  }
  return Advance();
}

Result<void> Unpacker::Advance() {
  std::unique_lock lock(mutex_);
  // Another thread is committing; it re-checks every layer's state under the mutex before it
  // stops, so it will see what we just marked.
  if (advancing_) return Ok();
  advancing_ = true;
  Result<void> status = Ok();
  while (next_commit_ < layers_.size() && !failure_) {
    const size_t index = next_commit_;
    Layer& layer = layers_[index];
    if (layer.state == State::kPending) break;
    if (layer.state == State::kApplied || layer.state == State::kBlobReady) {
      const State state = layer.state;
      const std::string key = layer.key;
      const std::vector<std::string> implicit_dirs = std::move(layer.implicit_dirs);
      layer.implicit_dirs.clear();
      const std::unique_ptr<LayerWriter> unfinished_image = std::move(layer.unfinished_image);
      lock.unlock();
      Result<void> done = state == State::kApplied
                              ? CommitApplied(index, key, implicit_dirs, unfinished_image.get())
                              : ApplyFromStore(index);
      lock.lock();
      if (!done) {
        failure_ = done.error();
        status = std::move(done);
        break;
      }
      layers_[index].state = State::kCommitted;
      layers_[index].key.clear();
    }
    ++next_commit_;
  }
  advancing_ = false;
  lock.unlock();
  advanced_.notify_all();
  return status;
}

Result<void> Unpacker::InheritImplicitDirs(size_t index, const std::string& key,
                                           const std::string& parent,
                                           const std::vector<std::string>& implicit_dirs,
                                           LayerWriter* unfinished_image) {
  const std::string what = fmt::format(
      "give layer {}'s implicit directories their lower "
      "layers' attributes",
      index);
  BERTH_ASSIGN_OR_RETURN(snapshot::ApplyTarget target,
                         WithContext(snapshotter_.GetApplyTarget(key), what));
  // The parent's layer directories, from the apply target of a short-lived active snapshot on
  // it (the layer's own is still parentless until CommitRebased).
  const std::string lower = NewKey(index) + "-lower";
  BERTH_RETURN_IF_ERROR(TrackKey(lower));
  if (Result<std::vector<snapshot::Mount>> prepared = snapshotter_.Prepare(lower, parent, {});
      !prepared) {
    ForgetKey(lower);
    return Fail(std::move(prepared).error().WithContext(what));
  }
  Result<snapshot::ApplyTarget> lower_target = snapshotter_.GetApplyTarget(lower);
  Result<void> inherited = [&]() -> Result<void> {
    if (!lower_target) return Fail(lower_target.error());
    if (unfinished_image != nullptr) {
      return unfinished_image->CompleteImage(lower_target->lower_dirs);
    }
    Result<size_t> inherited_dirs = archive::InheritLowerDirectories(
        target.directory, implicit_dirs, lower_target->lower_dirs, options_.preserve_ownership);
    if (!inherited_dirs) return Fail(std::move(inherited_dirs).error());
    return Ok();
  }();
  Result<void> removed = snapshotter_.Remove(lower);
  if (removed) ForgetKey(lower);
  BERTH_RETURN_IF_ERROR(WithContext(std::move(inherited), what));
  return WithContext(std::move(removed), what);
}

Result<void> Unpacker::CommitApplied(size_t index, const std::string& key,
                                     const std::vector<std::string>& implicit_dirs,
                                     LayerWriter* unfinished_image) {
  const std::string name = SnapshotName(index);
  const std::string parent = ParentName(index);
  if (snapshotter_.Stat(name)) return LoseRace(key);
  // Last change to those directories: nothing writes into the layer after this.
  if (!parent.empty() && (!implicit_dirs.empty() || unfinished_image != nullptr)) {
    BERTH_RETURN_IF_ERROR(InheritImplicitDirs(index, key, parent, implicit_dirs, unfinished_image));
  } else if (unfinished_image != nullptr) {
    BERTH_RETURN_IF_ERROR(unfinished_image->CompleteImage({}));
  }
  Result<void> committed = parent.empty() ? snapshotter_.Commit(name, key, {})
                                          : snapshotter_.CommitRebased(name, key, parent, {});
  if (!committed) {
    if (committed.error().code() != ErrorCode::kAlreadyExists) return committed;
    return LoseRace(key);
  }
  ForgetKey(key);
  {
    std::lock_guard lock(mutex_);
    ++stats_.committed;
  }
  Report(index, LayerEvent::kCommitted);
  return Ok();
}

Result<void> Unpacker::LoseRace(const std::string& key) {
  // A concurrent pull committed the same chain ID first: theirs is as good as ours.
  BERTH_RETURN_IF_ERROR(snapshotter_.Remove(key));
  ForgetKey(key);
  std::lock_guard lock(mutex_);
  ++stats_.lost_races;
  return Ok();
}

Result<void> Unpacker::ApplyFromStore(size_t index) {
  const std::string name = SnapshotName(index);
  const std::string parent = ParentName(index);
  image::Descriptor descriptor;
  {
    std::lock_guard lock(mutex_);
    descriptor = layers_[index].descriptor;
  }
  const std::string what =
      fmt::format("unpack layer {} ({}) from the content store", index, descriptor.digest);
  if (snapshotter_.Stat(name)) {  // committed meanwhile by a concurrent pull
    std::lock_guard lock(mutex_);
    ++stats_.lost_races;
    return Ok();
  }
  if (!store_.Contains(descriptor.digest)) {
    return Fail(ErrorCode::kNotFound,
                fmt::format("{}: the blob is not in the content store; pull the image", what));
  }
  const std::string key = NewKey(index);
  BERTH_RETURN_IF_ERROR(TrackKey(key));
  BERTH_RETURN_IF_ERROR(WithContext(snapshotter_.Prepare(key, parent, {}), what));
  BERTH_ASSIGN_OR_RETURN(snapshot::ApplyTarget target,
                         WithContext(snapshotter_.GetApplyTarget(key), what));
  LayerThreadBudget::Slot applying = threads_.Begin(options_.layer_threads);
  archive::ApplyOptions apply = ApplyOptionsFor(applying.threading(), target, descriptor);
  apply.lower_dirs = target.lower_dirs;
  BERTH_ASSIGN_OR_RETURN(archive::ApplyResult applied,
                         WithContext(ApplyBlob(descriptor.digest, apply, target), what));
  BERTH_RETURN_IF_ERROR(WithContext(CheckDiffId(index, applied.diff_id), what));
  {
    std::lock_guard lock(mutex_);
    ++stats_.applied_from_store;
    stats_.uncompressed_bytes += applied.uncompressed_bytes;
  }
  Report(index, LayerEvent::kApplied, applied.uncompressed_bytes);
  Result<void> committed = snapshotter_.Commit(name, key, {});
  if (!committed) {
    if (committed.error().code() != ErrorCode::kAlreadyExists) {
      return WithContext(std::move(committed), what);
    }
    BERTH_RETURN_IF_ERROR(snapshotter_.Remove(key));
    ForgetKey(key);
    std::lock_guard lock(mutex_);
    ++stats_.lost_races;
    return Ok();
  }
  ForgetKey(key);
  {
    std::lock_guard lock(mutex_);
    ++stats_.committed;
  }
  Report(index, LayerEvent::kCommitted);
  return Ok();
}

Result<archive::ApplyResult> Unpacker::ApplyBlob(const Digest& digest,
                                                 const archive::ApplyOptions& apply,
                                                 const snapshot::ApplyTarget& target) const {
  Result<archive::ApplyResult> applied =
      ApplyBlobAs(digest, apply, target, LayerForm::kAsTargetPrefers);
  if (applied || target.layer_image.empty() ||
      applied.error().code() != ErrorCode::kFailedPrecondition) {
    return applied;
  }
  // The layer hardlinks files of its lower layers, which an image cannot reach; the applier
  // copies them from target.lower_dirs into the directory, and Commit makes the image.
  return ApplyBlobAs(digest, apply, target, LayerForm::kDirectory);
}

Result<archive::ApplyResult> Unpacker::ApplyBlobAs(const Digest& digest,
                                                   const archive::ApplyOptions& apply,
                                                   const snapshot::ApplyTarget& target,
                                                   LayerForm form) const {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<LayerWriter> writer,
                         LayerWriter::Create(apply, target, form));
  BERTH_RETURN_IF_ERROR(
      store_.StreamBlob(digest, [&](std::string_view chunk) { return writer->Write(chunk); }));
  BERTH_ASSIGN_OR_RETURN(archive::ApplyResult applied, writer->FinishStream());
  BERTH_RETURN_IF_ERROR(writer->CompleteImage(target.lower_dirs));
  return applied;
}

void Unpacker::RemoveKeys() {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mutex_);
    keys.swap(keys_);
  }
  for (const std::string& key : keys) {
    Result<void> removed = snapshotter_.Remove(key);
    if (removed || removed.error().code() != ErrorCode::kResourceExhausted) continue;
    // The disk the layer filled can fail the very transaction that would free it.
    DropAppliedFiles(key);
    (void)snapshotter_.Remove(key);
  }
}

void Unpacker::DropAppliedFiles(const std::string& key) {
  Result<snapshot::ApplyTarget> target = snapshotter_.GetApplyTarget(key);
  if (!target) return;
  std::error_code ignored;
  for (const fs::directory_entry& entry : fs::directory_iterator(target->directory, ignored)) {
    fs::remove_all(entry.path(), ignored);
  }
  if (!target->layer_image.empty()) fs::remove(target->layer_image, ignored);
}

Result<void> Unpacker::End(bool success) {
  ended_ = true;
  if (!success) {
    RemoveKeys();
    return Ok();
  }
  Result<void> advanced = Advance();
  std::unique_lock lock(mutex_);
  advanced_.wait(lock, [&] { return !advancing_; });
  Result<void> status = Ok();
  if (failure_) {
    status = Fail(*failure_);
  } else if (next_commit_ < layers_.size()) {
    status =
        Fail(ErrorCode::kInternal, fmt::format("layer {} of {} was never delivered to the unpacker",
                                               next_commit_, layers_.size()));
  }
  lock.unlock();
  if (!status) RemoveKeys();
  return status;
}

Result<void> Unpacker::PlanAllFromStore() {
  for (size_t i = 0; i < chain_ids_.size(); ++i) {
    Result<snapshot::Info> existing = StatLayer(i);
    if (!existing && existing.error().code() != ErrorCode::kNotFound) {
      return Fail(std::move(existing).error());
    }
    const bool present = existing && existing->kind == snapshot::Kind::kCommitted;
    {
      std::lock_guard lock(mutex_);
      layers_[i].state = present ? State::kPresent : State::kBlobReady;
      if (present) ++stats_.already_present;
    }
    if (present) Report(i, LayerEvent::kAlreadyPresent);
  }
  return Ok();
}

UnpackStats Unpacker::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

Result<Digest> UnpackImage(content::Store& store, snapshot::Snapshotter& snapshotter,
                           LayerThreadBudget& threads, const image::Manifest& manifest,
                           const image::ImageConfig& config, const UnpackOptions& options,
                           UnpackStats* stats) {
  Unpacker unpacker(snapshotter, store, threads, options);
  BERTH_RETURN_IF_ERROR(unpacker.Begin(manifest, config));
  BERTH_RETURN_IF_ERROR(unpacker.PlanAllFromStore());
  BERTH_RETURN_IF_ERROR(unpacker.End(true));
  if (stats != nullptr) *stats = unpacker.stats();
  return unpacker.chain_id();
}

}  // namespace berth::unpack
