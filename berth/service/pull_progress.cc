#include "berth/service/pull_progress.h"

#include <algorithm>

namespace berth::service {

std::string_view BlobStateName(BlobState state) {
  switch (state) {
    case BlobState::kWaiting:
      return "waiting";
    case BlobState::kDownloading:
      return "downloading";
    case BlobState::kUnpacking:
      return "unpacking";
    case BlobState::kCommitted:
      return "committed";
    case BlobState::kCached:
      return "cached";
  }
  return "unknown";
}

std::string_view PullStateName(PullState state) {
  switch (state) {
    case PullState::kRunning:
      return "running";
    case PullState::kDone:
      return "done";
    case PullState::kFailed:
      return "failed";
  }
  return "unknown";
}

uint64_t PullProgressBoard::Start(std::string reference) {
  std::lock_guard lock(mutex_);
  uint64_t id = next_id_++;
  Entry& entry = pulls_[id];
  entry.status.id = id;
  entry.status.reference = std::move(reference);
  Changed();
  return id;
}

void PullProgressBoard::SetLayers(uint64_t pull, const std::vector<image::Descriptor>& layers) {
  std::lock_guard lock(mutex_);
  Entry* entry = FindRunning(pull);
  if (entry == nullptr) return;
  entry->layer_slots.clear();
  for (const image::Descriptor& layer : layers) {
    BlobStatus& blob = SlotFor(*entry, layer.digest.ToString());
    blob.layer = true;
    blob.media_type = layer.media_type;
    blob.total_bytes = std::max(blob.total_bytes, layer.size);
    entry->layer_slots.push_back(static_cast<size_t>(&blob - entry->status.blobs.data()));
  }
  Changed();
}

void PullProgressBoard::Fetched(uint64_t pull, const pull::BlobProgress& progress) {
  std::lock_guard lock(mutex_);
  Entry* entry = FindRunning(pull);
  if (entry == nullptr) return;
  BlobStatus& blob = SlotFor(*entry, progress.digest.ToString());
  if (blob.media_type.empty()) blob.media_type = progress.media_type;
  blob.fetched_bytes = std::max(blob.fetched_bytes, progress.done);
  if (progress.total > 0) blob.total_bytes = progress.total;
  // Unpack events may come before the blob's last fetch report (layers are applied while they
  // stream): never move a layer back from unpacking or committed.
  if (blob.state == BlobState::kCommitted) {
    Changed();
    return;
  }
  if (progress.cached) {
    blob.state = BlobState::kCached;
  } else if (progress.complete) {
    blob.fetched_bytes = blob.total_bytes;
    if (!blob.layer) {
      blob.state = BlobState::kCommitted;
    } else {
      blob.state = BlobState::kUnpacking;
    }
  } else if (blob.state == BlobState::kWaiting) {
    blob.state = BlobState::kDownloading;
  }
  Changed();
}

void PullProgressBoard::Unpacked(uint64_t pull, const unpack::LayerProgress& layer) {
  std::lock_guard lock(mutex_);
  Entry* entry = FindRunning(pull);
  if (entry == nullptr || layer.index >= entry->layer_slots.size()) return;
  BlobStatus& blob = entry->status.blobs[entry->layer_slots[layer.index]];
  switch (layer.event) {
    case unpack::LayerEvent::kAlreadyPresent:
      blob.state = BlobState::kCached;
      break;
    case unpack::LayerEvent::kApplied:
      blob.unpacked_bytes = layer.uncompressed_bytes;
      if (blob.state != BlobState::kCached) blob.state = BlobState::kUnpacking;
      break;
    case unpack::LayerEvent::kCommitted:
      blob.state = BlobState::kCommitted;
      break;
  }
  Changed();
}

void PullProgressBoard::Finish(uint64_t pull, const Error* error) {
  std::lock_guard lock(mutex_);
  Entry* entry = FindRunning(pull);
  if (entry == nullptr) return;
  entry->status.state = error == nullptr ? PullState::kDone : PullState::kFailed;
  if (error != nullptr) entry->status.error = error->ToString();
  finished_.push_back(pull);
  while (finished_.size() > kKeptFinished) {
    pulls_.erase(finished_.front());
    finished_.pop_front();
  }
  Changed();
}

PullBoardView PullProgressBoard::View() const {
  std::lock_guard lock(mutex_);
  PullBoardView view{.version = version_, .next_id = next_id_};
  for (const auto& [id, entry] : pulls_) view.pulls.push_back(entry.status);
  return view;
}

PullBoardView PullProgressBoard::WaitForChange(uint64_t seen_version,
                                               std::chrono::milliseconds timeout) const {
  {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return version_ != seen_version; });
  }
  return View();
}

PullProgressBoard::Entry* PullProgressBoard::FindRunning(uint64_t pull) {
  auto found = pulls_.find(pull);
  if (found == pulls_.end() || found->second.status.state != PullState::kRunning) return nullptr;
  return &found->second;
}

BlobStatus& PullProgressBoard::SlotFor(Entry& entry, const std::string& digest) {
  std::vector<BlobStatus>& blobs = entry.status.blobs;
  auto found = std::find_if(blobs.begin(), blobs.end(),
                            [&](const BlobStatus& blob) { return blob.digest == digest; });
  if (found != blobs.end()) return *found;
  blobs.push_back(BlobStatus{.digest = digest});
  return blobs.back();
}

void PullProgressBoard::Changed() {
  ++version_;
  changed_.notify_all();
}

namespace {

class ObservingLayerHandler final : public pull::LayerHandler {
 public:
  ObservingLayerHandler(PullProgressBoard& board, uint64_t pull,
                        std::unique_ptr<pull::LayerHandler> inner)
      : board_(board), pull_(pull), inner_(std::move(inner)) {}

  Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig& config) override {
    board_.SetLayers(pull_, manifest.layers);
    return inner_->Begin(manifest, config);
  }
  Result<pull::LayerPlan> PlanLayer(size_t index) override { return inner_->PlanLayer(index); }
  Result<void> End(bool success) override { return inner_->End(success); }

 private:
  PullProgressBoard& board_;
  uint64_t pull_;
  std::unique_ptr<pull::LayerHandler> inner_;
};

}  // namespace

std::unique_ptr<pull::LayerHandler> PullProgressBoard::Observe(
    uint64_t pull, std::unique_ptr<pull::LayerHandler> inner) {
  return std::make_unique<ObservingLayerHandler>(*this, pull, std::move(inner));
}

}  // namespace berth::service
