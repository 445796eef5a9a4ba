#include "tools/imagegen/compress.h"

#include <fmt/format.h>
#include <zlib.h>
#include <zstd.h>

#include <array>

#include "berth/base/c_handle.h"

namespace berth::imagegen {
namespace {

// The size of the buffer compressed output is staged in before it goes downstream.
constexpr size_t kOutputChunk = 64 * 1024;

class PassThroughSink final : public ByteSink {
 public:
  explicit PassThroughSink(ByteSink& downstream) : downstream_(downstream) {}
  Result<void> Write(std::string_view data) override { return downstream_.Write(data); }
  Result<void> Finish() override { return downstream_.Finish(); }

 private:
  ByteSink& downstream_;
};

class GzipSink final : public ByteSink {
 public:
  explicit GzipSink(ByteSink& downstream) : downstream_(downstream) {}
  ~GzipSink() override {
    if (initialized_) deflateEnd(&stream_);
  }

  Result<void> Init(int level) {
    // windowBits 15 + 16 asks zlib for a gzip wrapper. Without deflateSetHeader() zlib writes
    // a minimal header (no name, mtime 0), which is what makes the blob reproducible.
    if (deflateInit2(&stream_, level == 0 ? Z_DEFAULT_COMPRESSION : level, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      return Fail(ErrorCode::kInternal, "zlib deflateInit2 failed (bad gzip level?)");
    }
    initialized_ = true;
    return Ok();
  }

  Result<void> Write(std::string_view data) override {
    // zlib counts input in 32-bit units; feed very large writes in pieces.
    constexpr size_t kMaxPiece = size_t{1} << 30;
    while (data.size() > kMaxPiece) {
      BERTH_RETURN_IF_ERROR(Pump(data.substr(0, kMaxPiece), Z_NO_FLUSH));
      data.remove_prefix(kMaxPiece);
    }
    return Pump(data, Z_NO_FLUSH);
  }
  Result<void> Finish() override {
    BERTH_RETURN_IF_ERROR(Pump({}, Z_FINISH));
    return downstream_.Finish();
  }

 private:
  Result<void> Pump(std::string_view data, int flush) {
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream_.avail_in = static_cast<uInt>(data.size());
    while (true) {
      stream_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
      stream_.avail_out = static_cast<uInt>(buffer_.size());
      int rc = deflate(&stream_, flush);
      if (rc == Z_STREAM_ERROR) return Fail(ErrorCode::kInternal, "zlib deflate failed");
      size_t produced = buffer_.size() - stream_.avail_out;
      if (produced > 0) {
        BERTH_RETURN_IF_ERROR(downstream_.Write(std::string_view(buffer_.data(), produced)));
      }
      if (flush == Z_FINISH) {
        if (rc == Z_STREAM_END) return Ok();
      } else if (stream_.avail_in == 0 && stream_.avail_out != 0) {
        return Ok();
      }
    }
  }

  ByteSink& downstream_;
  z_stream stream_{};
  bool initialized_ = false;
  std::array<char, kOutputChunk> buffer_;
};

using UniqueZstdCctx = UniqueHandle<ZSTD_CCtx, ZSTD_freeCCtx>;

class ZstdSink final : public ByteSink {
 public:
  explicit ZstdSink(ByteSink& downstream) : downstream_(downstream) {}

  Result<void> Init(int level) {
    context_.reset(ZSTD_createCCtx());
    if (context_ == nullptr) return Fail(ErrorCode::kInternal, "ZSTD_createCCtx failed");
    size_t rc = ZSTD_CCtx_setParameter(context_.get(), ZSTD_c_compressionLevel,
                                       level == 0 ? ZSTD_CLEVEL_DEFAULT : level);
    if (ZSTD_isError(rc)) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("zstd level {}: {}", level, ZSTD_getErrorName(rc)));
    }
    // A checksum lets readers detect corruption without the digest; cheap and standard.
    ZSTD_CCtx_setParameter(context_.get(), ZSTD_c_checksumFlag, 1);
    return Ok();
  }

  Result<void> Write(std::string_view data) override { return Pump(data, ZSTD_e_continue); }
  Result<void> Finish() override {
    BERTH_RETURN_IF_ERROR(Pump({}, ZSTD_e_end));
    return downstream_.Finish();
  }

 private:
  Result<void> Pump(std::string_view data, ZSTD_EndDirective mode) {
    ZSTD_inBuffer input{data.data(), data.size(), 0};
    while (true) {
      ZSTD_outBuffer output{buffer_.data(), buffer_.size(), 0};
      size_t remaining = ZSTD_compressStream2(context_.get(), &output, &input, mode);
      if (ZSTD_isError(remaining)) {
        return Fail(ErrorCode::kInternal,
                    fmt::format("zstd compress: {}", ZSTD_getErrorName(remaining)));
      }
      if (output.pos > 0) {
        BERTH_RETURN_IF_ERROR(downstream_.Write(std::string_view(buffer_.data(), output.pos)));
      }
      bool done = mode == ZSTD_e_end ? remaining == 0 : input.pos == input.size;
      if (done) return Ok();
    }
  }

  ByteSink& downstream_;
  UniqueZstdCctx context_;
  std::array<char, kOutputChunk> buffer_;
};

Result<std::string> GunzipAll(std::string_view compressed) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) {
    return Fail(ErrorCode::kInternal, "zlib inflateInit2 failed");
  }
  std::string out;
  std::array<char, kOutputChunk> buffer;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer.data());
    stream.avail_out = static_cast<uInt>(buffer.size());
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("gzip stream is corrupt or truncated ({})", rc));
    }
    out.append(buffer.data(), buffer.size() - stream.avail_out);
  }
  inflateEnd(&stream);
  return out;
}

using UniqueZstdDctx = UniqueHandle<ZSTD_DCtx, ZSTD_freeDCtx>;

Result<std::string> UnzstdAll(std::string_view compressed) {
  UniqueZstdDctx context(ZSTD_createDCtx());
  if (context == nullptr) return Fail(ErrorCode::kInternal, "ZSTD_createDCtx failed");
  std::string out;
  std::array<char, kOutputChunk> buffer;
  ZSTD_inBuffer input{compressed.data(), compressed.size(), 0};
  size_t last = 0;
  while (input.pos < input.size) {
    ZSTD_outBuffer output{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(context.get(), &output, &input);
    if (ZSTD_isError(last)) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("zstd stream is corrupt: {}", ZSTD_getErrorName(last)));
    }
    out.append(buffer.data(), output.pos);
    if (output.pos == 0 && input.pos == input.size) break;
  }
  // Drain output that the decoder still holds.
  while (last != 0) {
    ZSTD_outBuffer output{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(context.get(), &output, &input);
    if (ZSTD_isError(last)) {
      return Fail(ErrorCode::kDataLoss,
                  fmt::format("zstd stream is corrupt: {}", ZSTD_getErrorName(last)));
    }
    out.append(buffer.data(), output.pos);
    if (output.pos == 0) break;
  }
  if (last != 0) return Fail(ErrorCode::kDataLoss, "zstd stream is truncated");
  return out;
}

}  // namespace

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

Result<std::unique_ptr<ByteSink>> MakeCompressor(const CompressionOptions& options,
                                                 ByteSink& downstream) {
  switch (options.compression) {
    case Compression::kNone:
      return std::make_unique<PassThroughSink>(downstream);
    case Compression::kGzip: {
      auto sink = std::make_unique<GzipSink>(downstream);
      BERTH_RETURN_IF_ERROR(sink->Init(options.level));
      return std::unique_ptr<ByteSink>(std::move(sink));
    }
    case Compression::kZstd: {
      auto sink = std::make_unique<ZstdSink>(downstream);
      BERTH_RETURN_IF_ERROR(sink->Init(options.level));
      return std::unique_ptr<ByteSink>(std::move(sink));
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression");
}

Result<std::string> Decompress(Compression compression, std::string_view compressed) {
  switch (compression) {
    case Compression::kNone:
      return std::string(compressed);
    case Compression::kGzip:
      return GunzipAll(compressed);
    case Compression::kZstd:
      return UnzstdAll(compressed);
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression");
}

}  // namespace berth::imagegen
