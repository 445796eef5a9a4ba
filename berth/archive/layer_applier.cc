#include "berth/archive/layer_applier.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "berth/base/unique_fd.h"

namespace berth::archive {
namespace {

constexpr size_t kRingBlockBytes = 1 << 20;

// A bounded hand-off of decompressed bytes from the caller's thread to the untar worker: a pool
// of fixed-size blocks cycling between a free list and a filled queue.
class Ring {
 public:
  struct Block {
    std::unique_ptr<char[]> bytes;
    size_t size = 0;
  };

  explicit Ring(size_t total_bytes) {
    size_t count = std::max<size_t>(2, total_bytes / kRingBlockBytes);
    for (size_t i = 0; i < count; ++i) {
      free_.push_back(Block{std::make_unique<char[]>(kRingBlockBytes), 0});
    }
  }

  // Producer: appends bytes, handing full blocks to the consumer. Returns false if the consumer
  // failed (the caller then reports the consumer's error).
  bool Append(std::string_view data) {
    while (!data.empty()) {
      if (!current_.bytes) {
        std::unique_lock lock(mutex_);
        producer_cv_.wait(lock, [&] { return !free_.empty() || failed_; });
        if (failed_) return false;
        current_ = std::move(free_.front());
        free_.pop_front();
        current_.size = 0;
      }
      size_t n = std::min(data.size(), kRingBlockBytes - current_.size);
      std::memcpy(current_.bytes.get() + current_.size, data.data(), n);
      current_.size += n;
      data.remove_prefix(n);
      if (current_.size == kRingBlockBytes && !Flush()) return false;
    }
    std::lock_guard lock(mutex_);
    return !failed_;
  }

  // Producer: hands over the partial block and marks the end of the stream.
  void Close() {
    Flush();
    std::lock_guard lock(mutex_);
    closed_ = true;
    consumer_cv_.notify_one();
  }

  // Consumer: the next filled block; false at the end of the stream (or on abort).
  bool Pop(Block& block) {
    std::unique_lock lock(mutex_);
    consumer_cv_.wait(lock, [&] { return !filled_.empty() || closed_ || aborted_; });
    if (aborted_ || filled_.empty()) return false;
    block = std::move(filled_.front());
    filled_.pop_front();
    return true;
  }

  // Consumer: returns a processed block.
  void Recycle(Block block) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(block));
    producer_cv_.notify_one();
  }

  // Consumer: stops accepting data; the producer's next Append() returns false.
  void Fail() {
    std::lock_guard lock(mutex_);
    failed_ = true;
    producer_cv_.notify_all();
  }

  // Either side: stop everything (destruction before Finish()).
  void Abort() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    failed_ = true;
    consumer_cv_.notify_all();
    producer_cv_.notify_all();
  }

 private:
  bool Flush() {
    if (!current_.bytes || current_.size == 0) return true;
    std::lock_guard lock(mutex_);
    if (failed_) return false;
    filled_.push_back(std::move(current_));
    current_ = Block{};
    consumer_cv_.notify_one();
    return true;
  }

  std::mutex mutex_;
  std::condition_variable producer_cv_;
  std::condition_variable consumer_cv_;
  std::deque<Block> free_;
  std::deque<Block> filled_;
  Block current_;
  bool closed_ = false;
  bool failed_ = false;
  bool aborted_ = false;
};

}  // namespace

class LayerApplier::Pipeline final : public ChunkSink {
 public:
  ~Pipeline() override { StopWorker(/*abort=*/true); }

  Result<void> Init(const ApplyOptions& options) {
    BERTH_ASSIGN_OR_RETURN(Compression compression, CompressionForMediaType(options.media_type));
    TarVisitor* visitor = options.visitor;
    if (visitor == nullptr) {
      BERTH_RETURN_IF_ERROR(CreateApplier(options));
      visitor = applier_.get();
    }
    TarLimits tar_limits;
    tar_limits.max_entries = options.limits.max_entries;
    tar_limits.max_path_bytes = options.limits.max_path_bytes;
    tar_limits.max_entry_bytes = options.limits.max_entry_bytes;
    tar_ = std::make_unique<TarReader>(*visitor, tar_limits);
    inflate_check_ = options.inflate_check;
    inflate_check_interval_ = options.inflate_check_interval;
    DecompressorOptions decompressor_options;
    decompressor_options.max_uncompressed_bytes = options.limits.max_uncompressed_bytes;
    decompressor_options.gzip_backend = options.gzip_backend;
    BERTH_ASSIGN_OR_RETURN(decompressor_,
                           MakeDecompressor(compression, *this, decompressor_options));
    if (options.threading == ApplyThreading::kTwoThreads) {
      ring_ = std::make_unique<Ring>(options.ring_bytes);
      worker_ = std::thread([this] { WorkerLoop(); });
    }
    return Ok();
  }

  Result<void> Feed(std::string_view compressed) {
    if (finished_) return Fail(ErrorCode::kFailedPrecondition, "Write() after Finish()");
    return decompressor_->Write(compressed);
  }

  // Decompressed bytes: hash, then untar here or hand to the worker.
  Result<void> Write(std::string_view data) override {
    BERTH_RETURN_IF_ERROR(CheckInflated(data.size()));
    hasher_.Update(data);
    if (!ring_) return tar_->Write(data);
    if (ring_->Append(data)) return Ok();
    StopWorker(/*abort=*/true);
    return Fail(worker_error_ ? *worker_error_
                              : Error(ErrorCode::kInternal, "layer untar worker stopped"));
  }

  Result<ApplyResult> Finish() {
    if (finished_) return Fail(ErrorCode::kFailedPrecondition, "Finish() called twice");
    finished_ = true;
    auto decoded = decompressor_->Finish();
    if (ring_) {
      if (decoded) ring_->Close();
      StopWorker(/*abort=*/!decoded);
      if (worker_error_) return Fail(*worker_error_);
    }
    BERTH_RETURN_IF_ERROR(decoded);
    BERTH_RETURN_IF_ERROR(tar_->Finish());
    if (applier_) BERTH_RETURN_IF_ERROR(applier_->Finish());
    ApplyResult result;
    result.diff_id = hasher_.Finish();
    result.uncompressed_bytes = hasher_.size();
    result.compressed_bytes = decompressor_->compressed_bytes();
    result.entries = tar_->entries();
    if (applier_) {
      result.file_bytes_written = applier_->stats().file_bytes_written;
      result.implicit_dirs = applier_->implicit_dirs();
    }
    return result;
  }

 private:
  // The TarApplier writing under options.root (or root_fd).
  Result<void> CreateApplier(const ApplyOptions& options) {
    UniqueFd root;
    if (options.root_fd >= 0) {
      root.reset(fcntl(options.root_fd, F_DUPFD_CLOEXEC, 3));
    } else {
      root.reset(open(options.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    if (!root) {
      return Fail(ErrnoError(errno, fmt::format("open layer root {}", options.root.string())));
    }
    TarApplierOptions applier_options{
        .whiteout_mode = options.whiteout_mode,
        .lower_dirs = options.lower_dirs,
        .sync = options.sync,
        .preserve_ownership = options.preserve_ownership,
    };
    BERTH_ASSIGN_OR_RETURN(applier_, TarApplier::Create(root.get(), std::move(applier_options)));
    return Ok();
  }

  void WorkerLoop() {
    Ring::Block block;
    while (ring_->Pop(block)) {
      if (!worker_error_) {
        auto written = tar_->Write(std::string_view(block.bytes.get(), block.size));
        if (!written) {
          worker_error_ = std::make_unique<Error>(written.error());
          ring_->Fail();
        }
      }
      ring_->Recycle(std::move(block));
    }
  }

  // ApplyOptions::inflate_check, every inflate_check_interval_ bytes from the first chunk on.
  Result<void> CheckInflated(size_t more) {
    inflated_ += more;
    if (!inflate_check_ || inflated_ < next_check_) return Ok();
    next_check_ = inflated_ + inflate_check_interval_;
    return inflate_check_(inflated_);
  }

  void StopWorker(bool abort) {
    if (!worker_.joinable()) return;
    if (abort) ring_->Abort();
    worker_.join();
  }

  std::unique_ptr<TarApplier> applier_;
  std::unique_ptr<TarReader> tar_;
  std::unique_ptr<Decompressor> decompressor_;
  Hasher hasher_;
  std::unique_ptr<Ring> ring_;
  std::thread worker_;
  // Written by the worker before it fails the ring; read by the producer after join().
  std::unique_ptr<Error> worker_error_;
  bool finished_ = false;
  std::function<Result<void>(uint64_t)> inflate_check_;
  uint64_t inflate_check_interval_ = 0;
  uint64_t inflated_ = 0;
  uint64_t next_check_ = 0;  // the next check when inflated_ reaches it
};

LayerApplier::LayerApplier(std::unique_ptr<Pipeline> pipeline) : pipeline_(std::move(pipeline)) {}
LayerApplier::~LayerApplier() = default;

Result<std::unique_ptr<LayerApplier>> LayerApplier::Create(const ApplyOptions& options) {
  auto pipeline = std::make_unique<Pipeline>();
  BERTH_RETURN_IF_ERROR(pipeline->Init(options));
  return std::unique_ptr<LayerApplier>(new LayerApplier(std::move(pipeline)));
}

Result<void> LayerApplier::Write(std::string_view compressed) {
  return pipeline_->Feed(compressed);
}

Result<ApplyResult> LayerApplier::Finish() { return pipeline_->Finish(); }

Result<ApplyResult> ApplyLayerFromFile(const std::filesystem::path& blob_path,
                                       const ApplyOptions& options) {
  UniqueFd fd(open(blob_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Fail(ErrnoError(errno, fmt::format("open layer blob {}", blob_path.string())));
  posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  BERTH_ASSIGN_OR_RETURN(auto applier, LayerApplier::Create(options));
  constexpr size_t kChunk = 1 << 20;
  auto buffer = std::make_unique<char[]>(kChunk);
  while (true) {
    ssize_t n = read(fd.get(), buffer.get(), kChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, fmt::format("read layer blob {}", blob_path.string())));
    }
    if (n == 0) break;
    BERTH_RETURN_IF_ERROR(applier->Write(std::string_view(buffer.get(), static_cast<size_t>(n))));
  }
  return applier->Finish();
}

}  // namespace berth::archive
