#include "berth/service/sequential_unpacker.h"

#include <unistd.h>

#include <atomic>

#include <fmt/format.h>

#include "berth/archive/layer_applier.h"

namespace berth::service {
namespace {

std::string ExtractKey(const std::string& chain_id) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("extract-{}-{} {}", ::getpid(), counter.fetch_add(1), chain_id);
}

}  // namespace

Result<void> SequentialUnpacker::Begin(const image::Manifest& manifest,
                                       const image::ImageConfig& config) {
  if (manifest.layers.size() != config.diff_ids.size()) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("manifest lists {} layers but the config {} diffIDs",
                            manifest.layers.size(), config.diff_ids.size()));
  }
  manifest_ = manifest;
  config_ = config;
  return Ok();
}

Result<pull::LayerPlan> SequentialUnpacker::PlanLayer(size_t) { return pull::LayerPlan{}; }

Result<void> SequentialUnpacker::End(bool success) {
  if (!success || !manifest_) return Ok();
  std::vector<Digest> chain = image::ChainIds(config_->diff_ids);
  std::string parent;
  for (size_t i = 0; i < chain.size(); ++i) {
    std::string chain_id = chain[i].ToString();
    if (!snapshotter_.Stat(chain_id)) {
      BERTH_RETURN_IF_ERROR(WithContext(
          ApplyLayer(i, parent, chain_id),
          fmt::format("unpack layer {} ({})", i, manifest_->layers[i].digest.ToString())));
    }
    parent = std::move(chain_id);
  }
  return Ok();
}

Result<void> SequentialUnpacker::ApplyLayer(size_t index, const std::string& parent,
                                            const std::string& chain_id) {
  const image::Descriptor& layer = manifest_->layers[index];
  std::string key = ExtractKey(chain_id);
  BERTH_RETURN_IF_ERROR(snapshotter_.Prepare(key, parent));
  auto applied = [&]() -> Result<void> {
    BERTH_ASSIGN_OR_RETURN(snapshot::ApplyTarget target, snapshotter_.GetApplyTarget(key));
    archive::ApplyOptions options{
        .root = target.directory,
        .media_type = layer.media_type,
        .whiteout_mode = target.whiteouts == snapshot::WhiteoutStyle::kOverlay
                             ? archive::WhiteoutMode::kOverlay
                             : archive::WhiteoutMode::kDelete};
    BERTH_ASSIGN_OR_RETURN(archive::ApplyResult result,
                           archive::ApplyLayerFromFile(store_.BlobPath(layer.digest), options));
    if (result.diff_id != config_->diff_ids[index]) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("layer diffID is {}, the config says {}", result.diff_id.ToString(),
                              config_->diff_ids[index].ToString()));
    }
    return snapshotter_.Commit(chain_id, key);
  }();
  if (!applied) {
    (void)snapshotter_.Remove(key);
    // Another pull may have committed the same chain meanwhile: that is success.
    if (applied.error().code() == ErrorCode::kAlreadyExists && snapshotter_.Stat(chain_id)) {
      return Ok();
    }
  }
  return applied;
}

}  // namespace berth::service
