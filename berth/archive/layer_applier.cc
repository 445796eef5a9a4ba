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

// A bounded hand-off of bytes from one stage of the pipeline to the next (compressed bytes to the
// inflate thread, decompressed bytes to the untar worker): a pool of fixed-size blocks cycling
// between a free list and a filled queue.
class Ring {
 public:
  struct Block {
    std::unique_ptr<char[]> bytes;
    size_t size = 0;
    std::string_view view() const { return {bytes.get(), size}; }
  };
  enum class Next {
    kBlock,    // a filled block was popped
    kEnd,      // the producer closed the stream and every block was popped
    kAborted,  // the stream was aborted
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

  // Consumer: the next filled block, or why there is none.
  Next Pop(Block& block) {
    std::unique_lock lock(mutex_);
    consumer_cv_.wait(lock, [&] { return !filled_.empty() || closed_ || aborted_; });
    if (aborted_) return Next::kAborted;
    if (filled_.empty()) return Next::kEnd;
    block = std::move(filled_.front());
    filled_.pop_front();
    return Next::kBlock;
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
  ~Pipeline() override { StopThreads(/*abort=*/true); }

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
    if (options.threading != ApplyThreading::kSingle) {
      decompressed_ = std::make_unique<Ring>(options.ring_bytes);
      worker_ = std::thread([this] { UntarLoop(); });
    }
    if (options.threading == ApplyThreading::kThreeThreads) {
      compressed_ = std::make_unique<Ring>(options.ring_bytes);
      inflater_ = std::thread([this] { InflateLoop(); });
    }
    return Ok();
  }

  // Compressed bytes from the caller: decompressed here, or handed to the inflate thread.
  Result<void> Feed(std::string_view compressed) {
    if (finished_) return Fail(ErrorCode::kFailedPrecondition, "Write() after Finish()");
    Result<void> fed = compressed_ ? HandOn(*compressed_, compressed, "layer inflate thread")
                                   : decompressor_->Write(compressed);
    if (fed) return Ok();
    StopThreads(/*abort=*/true);
    return Fail(FirstError(fed.error()));
  }

  // Decompressed bytes, on the thread that decompresses: hashed and untarred here, or handed to
  // the untar worker.
  Result<void> Write(std::string_view data) override {
    BERTH_RETURN_IF_ERROR(CheckInflated(data.size()));
    if (decompressed_) return HandOn(*decompressed_, data, "layer untar worker");
    hasher_.Update(data);
    return tar_->Write(data);
  }

  Result<ApplyResult> Finish() {
    if (finished_) return Fail(ErrorCode::kFailedPrecondition, "Finish() called twice");
    finished_ = true;
    BERTH_RETURN_IF_ERROR(EndStream());
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

  // Ends the compressed stream and waits until every stage has finished with it. After an
  // error, the first stage's.
  Result<void> EndStream() {
    if (compressed_) {
      compressed_->Close();
      StopThreads(/*abort=*/false);
      if (worker_error_) return Fail(*worker_error_);
      if (inflate_error_) return Fail(*inflate_error_);
      return Ok();
    }
    Result<void> decoded = decompressor_->Finish();
    if (decompressed_) {
      if (decoded) decompressed_->Close();
      StopThreads(/*abort=*/!decoded);
      if (worker_error_) return Fail(*worker_error_);
    }
    return decoded;
  }

  // Appends `data` to the next stage's ring; when that stage has stopped, an error standing in
  // for the stage's own, which FirstError() finds once the threads are joined.
  static Result<void> HandOn(Ring& ring, std::string_view data, std::string_view stage) {
    if (ring.Append(data)) return Ok();
    return Fail(ErrorCode::kInternal, fmt::format("{} stopped", stage));
  }

  // The inflate thread (kThreeThreads): decompresses the caller's bytes, whose decompressed
  // bytes come back through Write() on this thread; at the end of the stream, finishes the
  // decompressor and closes the untar worker's ring.
  void InflateLoop() {
    Ring::Block block;
    Ring::Next next = Ring::Next::kBlock;
    while ((next = compressed_->Pop(block)) == Ring::Next::kBlock) {
      if (!inflate_error_) KeepInflateError(decompressor_->Write(block.view()));
      compressed_->Recycle(std::move(block));
    }
    if (next == Ring::Next::kEnd && !inflate_error_) KeepInflateError(decompressor_->Finish());
    if (next == Ring::Next::kEnd && !inflate_error_) {
      decompressed_->Close();
    } else {
      decompressed_->Abort();
    }
  }

  void KeepInflateError(const Result<void>& inflated) {
    if (inflated) return;
    inflate_error_ = std::make_unique<Error>(inflated.error());
    compressed_->Fail();
    decompressed_->Abort();
  }

  // The untar worker: hashes and untars the decompressed bytes.
  void UntarLoop() {
    Ring::Block block;
    while (decompressed_->Pop(block) == Ring::Next::kBlock) {
      if (!worker_error_) {
        hasher_.Update(block.view());
        auto written = tar_->Write(block.view());
        if (!written) {
          worker_error_ = std::make_unique<Error>(written.error());
          decompressed_->Fail();
        }
      }
      decompressed_->Recycle(std::move(block));
    }
  }

  // What a failed pipeline reports once its threads are joined: the untar worker's error (a
  // stage that fails makes the stages before it fail with a stand-in, see HandOn), else the
  // inflate thread's, else `fallback`.
  Error FirstError(const Error& fallback) const {
    if (worker_error_) return *worker_error_;
    if (inflate_error_) return *inflate_error_;
    return fallback;
  }

  // ApplyOptions::inflate_check, every inflate_check_interval_ bytes from the first chunk on.
  Result<void> CheckInflated(size_t more) {
    inflated_ += more;
    if (!inflate_check_ || inflated_ < next_check_) return Ok();
    next_check_ = inflated_ + inflate_check_interval_;
    return inflate_check_(inflated_);
  }

  void StopThreads(bool abort) {
    if (abort && compressed_) compressed_->Abort();
    if (inflater_.joinable()) inflater_.join();
    if (abort && decompressed_) decompressed_->Abort();
    if (worker_.joinable()) worker_.join();
  }

  std::unique_ptr<TarApplier> applier_;
  std::unique_ptr<TarReader> tar_;
  std::unique_ptr<Decompressor> decompressor_;
  Hasher hasher_;  // on the thread that untars
  // kThreeThreads: the caller's compressed bytes, on their way to the inflate thread.
  std::unique_ptr<Ring> compressed_;
  std::thread inflater_;
  // Written by the inflate thread before it fails its ring; read by others after join().
  std::unique_ptr<Error> inflate_error_;
  // kTwoThreads and kThreeThreads: decompressed bytes, on their way to the untar worker.
  std::unique_ptr<Ring> decompressed_;
  std::thread worker_;
  // Written by the worker before it fails its ring; read by others after join().
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
