#include "berth/archive/decompressor.h"

#include <fmt/format.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "berth/image/media_types.h"

namespace berth::archive {
namespace {

constexpr unsigned char kGzipMagic[] = {0x1f, 0x8b};
constexpr unsigned char kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};

bool StartsWith(std::string_view data, const unsigned char* magic, size_t magic_size) {
  size_t n = std::min(data.size(), magic_size);
  return std::memcmp(data.data(), magic, n) == 0;
}

// What the first bytes of a stream look like, for error messages.
std::string DescribeHead(std::string_view head) {
  if (head.size() >= 2 && StartsWith(head, kGzipMagic, 2)) return "gzip magic (1f 8b)";
  if (head.size() >= 4 && StartsWith(head, kZstdMagic, 4)) return "zstd magic (28 b5 2f fd)";
  std::string hex;
  for (unsigned char c : head) hex += fmt::format("{}{:02x}", hex.empty() ? "" : " ", c);
  return fmt::format("bytes {} (neither gzip nor zstd magic)", hex);
}

Error Truncated(Compression compression) {
  return Error(ErrorCode::kDataLoss,
               fmt::format("{} stream is truncated: it ended before the end of the compressed "
                           "data; the blob is incomplete, fetch it again",
                           CompressionName(compression)));
}

class PassThrough final : public Decompressor {
 public:
  PassThrough(ChunkSink& sink, const DecompressorOptions& options)
      : Decompressor(Compression::kNone, sink, options) {}

 protected:
  Result<void> Decode(std::string_view compressed) override {
    // Keep chunks bounded so downstream sees the same granularity as with real decoders.
    size_t step = options().output_chunk_bytes;
    while (!compressed.empty()) {
      size_t n = std::min(compressed.size(), step);
      BERTH_RETURN_IF_ERROR(Emit(compressed.substr(0, n)));
      compressed.remove_prefix(n);
    }
    return Ok();
  }
  Result<void> End() override { return Ok(); }
};

// Where a gzip decoder is relative to the member structure of the stream.
enum class MemberState {
  kNone,      // No byte seen yet.
  kInMember,  // Inside a member (header, deflate data or trailer).
  kBetween,   // A member ended; the stream may end here or another member may follow.
};

class IsalGzip final : public Decompressor {
 public:
  IsalGzip(ChunkSink& sink, const DecompressorOptions& options)
      : Decompressor(Compression::kGzip, sink, options),
        state_(std::make_unique<inflate_state>()),
        out_(std::make_unique<uint8_t[]>(options.output_chunk_bytes)) {
    isal_inflate_init(state_.get());
  }

 protected:
  Result<void> Decode(std::string_view compressed) override {
    inflate_state& s = *state_;
    while (!compressed.empty()) {
      if (member_ != MemberState::kInMember) {
        if (member_ == MemberState::kBetween) isal_inflate_reset(&s);
        s.crc_flag = ISAL_GZIP;
        member_ = MemberState::kInMember;
        magic_seen_ = 0;
      }
      // isa-l waits for a whole header before judging it; check the magic of every member
      // as its bytes arrive so that trailing garbage is reported as such.
      for (size_t i = 0; magic_seen_ < 2 && i < compressed.size(); ++i, ++magic_seen_) {
        if (static_cast<unsigned char>(compressed[i]) != kGzipMagic[magic_seen_]) {
          return MapError(ISAL_INVALID_WRAPPER);
        }
      }
      size_t feed = std::min<size_t>(compressed.size(), std::numeric_limits<uint32_t>::max());
      s.next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(compressed.data()));
      s.avail_in = static_cast<uint32_t>(feed);
      bool member_done = false;
      while (true) {
        s.next_out = out_.get();
        s.avail_out = static_cast<uint32_t>(options().output_chunk_bytes);
        int rc = isal_inflate(&s);
        if (rc < 0) return MapError(rc);
        size_t produced = options().output_chunk_bytes - s.avail_out;
        if (produced > 0) {
          BERTH_RETURN_IF_ERROR(
              Emit(std::string_view(reinterpret_cast<const char*>(out_.get()), produced)));
        }
        if (s.block_state == ISAL_BLOCK_FINISH) {
          member_done = true;
          break;
        }
        if (s.avail_in == 0 && s.avail_out != 0) break;
      }
      compressed.remove_prefix(feed - s.avail_in);
      if (member_done) {
        member_ = MemberState::kBetween;
        completed_member_ = true;
      }
    }
    return Ok();
  }

  Result<void> End() override {
    if (member_ != MemberState::kBetween) return Fail(Truncated(Compression::kGzip));
    return Ok();
  }

 private:
  Result<void> MapError(int rc) {
    if (rc == ISAL_INCORRECT_CHECKSUM) {
      return Fail(ErrorCode::kDataLoss,
                  "gzip checksum mismatch (CRC-32 or length in the member trailer): the blob is "
                  "corrupt, fetch it again");
    }
    if (rc == ISAL_INVALID_WRAPPER && completed_member_) {
      return Fail(ErrorCode::kInvalidArgument,
                  "bytes after the end of a gzip member are not another gzip member (trailing "
                  "garbage); the blob is not a valid gzip stream");
    }
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("corrupt gzip data (isa-l error {}); the blob is not a valid gzip "
                            "stream",
                            rc));
  }

  std::unique_ptr<inflate_state> state_;
  // Set once a member has been completed, so that a bad wrapper after it reads as trailing data.
  bool completed_member_ = false;
  // Magic bytes of the current member checked so far.
  size_t magic_seen_ = 0;
  std::unique_ptr<uint8_t[]> out_;
  MemberState member_ = MemberState::kNone;
};

class ZlibGzip final : public Decompressor {
 public:
  ZlibGzip(ChunkSink& sink, const DecompressorOptions& options)
      : Decompressor(Compression::kGzip, sink, options),
        out_(std::make_unique<uint8_t[]>(options.output_chunk_bytes)) {}
  ~ZlibGzip() override {
    if (initialized_) inflateEnd(&z_);
  }

  Result<void> Init() {
    std::memset(&z_, 0, sizeof(z_));
    if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) {
      return Fail(ErrorCode::kInternal, "zlib inflateInit2 failed (out of memory?)");
    }
    initialized_ = true;
    return Ok();
  }

 protected:
  Result<void> Decode(std::string_view compressed) override {
    while (!compressed.empty()) {
      if (member_ == MemberState::kBetween) inflateReset(&z_);
      bool trailing = member_ == MemberState::kBetween;
      member_ = MemberState::kInMember;
      size_t feed = std::min<size_t>(compressed.size(), std::numeric_limits<uInt>::max());
      z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
      z_.avail_in = static_cast<uInt>(feed);
      bool member_done = false;
      while (true) {
        z_.next_out = out_.get();
        z_.avail_out = static_cast<uInt>(options().output_chunk_bytes);
        int rc = inflate(&z_, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
          if (trailing && z_.total_out == 0) {
            return Fail(ErrorCode::kInvalidArgument,
                        "bytes after the end of a gzip member are not another gzip member "
                        "(trailing garbage); the blob is not a valid gzip stream");
          }
          bool check =
              z_.msg != nullptr && std::string_view(z_.msg).find("check") != std::string_view::npos;
          return Fail(check ? ErrorCode::kDataLoss : ErrorCode::kInvalidArgument,
                      fmt::format("corrupt gzip data (zlib: {}); the blob is not a valid gzip "
                                  "stream",
                                  z_.msg ? z_.msg : "error"));
        }
        size_t produced = options().output_chunk_bytes - z_.avail_out;
        if (produced > 0) {
          BERTH_RETURN_IF_ERROR(
              Emit(std::string_view(reinterpret_cast<const char*>(out_.get()), produced)));
        }
        if (rc == Z_STREAM_END) {
          member_done = true;
          break;
        }
        if (z_.avail_in == 0 && z_.avail_out != 0) break;
      }
      compressed.remove_prefix(feed - z_.avail_in);
      if (member_done) member_ = MemberState::kBetween;
    }
    return Ok();
  }

  Result<void> End() override {
    if (member_ != MemberState::kBetween) return Fail(Truncated(Compression::kGzip));
    return Ok();
  }

 private:
  z_stream z_;
  bool initialized_ = false;
  std::unique_ptr<uint8_t[]> out_;
  MemberState member_ = MemberState::kNone;
};

class Zstd final : public Decompressor {
 public:
  Zstd(ChunkSink& sink, const DecompressorOptions& options)
      : Decompressor(Compression::kZstd, sink, options),
        out_(std::make_unique<uint8_t[]>(options.output_chunk_bytes)) {}
  ~Zstd() override { ZSTD_freeDCtx(context_); }

  Result<void> Init() {
    context_ = ZSTD_createDCtx();
    if (context_ == nullptr) return Fail(ErrorCode::kInternal, "ZSTD_createDCtx failed");
    return Ok();
  }

 protected:
  Result<void> Decode(std::string_view compressed) override {
    ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
    if (!compressed.empty()) seen_input_ = true;
    while (true) {
      ZSTD_outBuffer out{out_.get(), options().output_chunk_bytes, 0};
      size_t before = in.pos;
      size_t rc = ZSTD_decompressStream(context_, &out, &in);
      if (ZSTD_isError(rc)) {
        return Fail(ErrorCode::kInvalidArgument,
                    fmt::format("corrupt zstd data ({}); the blob is not a valid zstd stream",
                                ZSTD_getErrorName(rc)));
      }
      // A call that neither consumed nor produced anything (flushing after a frame ended)
      // reports the next frame's header size; it must not hide that the last frame completed.
      if (in.pos != before || out.pos > 0) last_hint_ = rc;
      if (out.pos > 0) {
        BERTH_RETURN_IF_ERROR(
            Emit(std::string_view(reinterpret_cast<const char*>(out_.get()), out.pos)));
      }
      if (in.pos == in.size && out.pos < out.size) break;
    }
    return Ok();
  }

  Result<void> End() override {
    // A hint of 0 means the last frame was complete and fully flushed.
    if (!seen_input_ || last_hint_ != 0) return Fail(Truncated(Compression::kZstd));
    return Ok();
  }

 private:
  ZSTD_DCtx* context_ = nullptr;
  std::unique_ptr<uint8_t[]> out_;
  bool seen_input_ = false;
  size_t last_hint_ = 1;
};

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

Result<Compression> CompressionForMediaType(std::string_view media_type) {
  namespace mt = berth::media_types;
  if (media_type == mt::kOciLayer || media_type == mt::kOciLayerNondistributable ||
      media_type == "application/vnd.docker.image.rootfs.diff.tar") {
    return Compression::kNone;
  }
  if (media_type == mt::kOciLayerGzip || media_type == mt::kOciLayerNondistributableGzip ||
      media_type == mt::kDockerLayerGzip || media_type == mt::kDockerLayerForeignGzip) {
    return Compression::kGzip;
  }
  if (media_type == mt::kOciLayerZstd || media_type == mt::kOciLayerNondistributableZstd ||
      media_type == mt::kDockerLayerZstd) {
    return Compression::kZstd;
  }
  return Fail(ErrorCode::kUnimplemented,
              fmt::format("unsupported layer media type \"{}\": berth applies tar layers that "
                          "are uncompressed, gzip or zstd",
                          media_type));
}

Result<void> Decompressor::Sticky(Result<void> result) {
  if (!result) error_ = std::make_unique<Error>(result.error());
  return result;
}

Result<void> Decompressor::CheckMagic(std::string_view head) {
  bool gzip = StartsWith(head, kGzipMagic, 2);
  bool zstd = StartsWith(head, kZstdMagic, 4);
  bool ok = true;
  switch (compression_) {
    case Compression::kGzip:
      ok = gzip;
      break;
    case Compression::kZstd:
      ok = zstd;
      break;
    case Compression::kNone:
      // A short head is a prefix of both magics; only a full match counts against a plain tar.
      ok = !(head.size() >= 2 && gzip) && !(head.size() >= 4 && zstd);
      break;
  }
  if (ok) return Ok();
  std::string_view said =
      compression_ == Compression::kNone ? "uncompressed tar" : CompressionName(compression_);
  return Fail(ErrorCode::kInvalidArgument,
              fmt::format("media type says {} but the data starts with {}; the manifest's "
                          "media type does not match the blob",
                          said, DescribeHead(head)));
}

Result<void> Decompressor::Write(std::string_view compressed) {
  if (error_) return Fail(*error_);
  consumed_ += compressed.size();
  if (!magic_checked_) {
    size_t take = std::min(compressed.size(), sizeof(head_) - head_size_);
    std::memcpy(head_ + head_size_, compressed.data(), take);
    head_size_ += take;
    compressed.remove_prefix(take);
    if (head_size_ < sizeof(head_)) return Ok();
    magic_checked_ = true;
    BERTH_RETURN_IF_ERROR(Sticky(CheckMagic(std::string_view(head_, head_size_))));
    BERTH_RETURN_IF_ERROR(Sticky(Decode(std::string_view(head_, head_size_))));
  }
  if (compressed.empty()) return Ok();
  return Sticky(Decode(compressed));
}

Result<void> Decompressor::Finish() {
  if (error_) return Fail(*error_);
  if (!magic_checked_) {
    magic_checked_ = true;
    if (head_size_ > 0) {
      BERTH_RETURN_IF_ERROR(Sticky(CheckMagic(std::string_view(head_, head_size_))));
      BERTH_RETURN_IF_ERROR(Sticky(Decode(std::string_view(head_, head_size_))));
    }
  }
  return Sticky(End());
}

Result<void> Decompressor::Emit(std::string_view data) {
  emitted_ += data.size();
  if (options_.max_uncompressed_bytes != 0 && emitted_ > options_.max_uncompressed_bytes) {
    return Fail(ErrorCode::kResourceExhausted,
                fmt::format("layer decompresses to more than the limit of {} bytes "
                            "(max_uncompressed_bytes); refusing a possible decompression bomb",
                            options_.max_uncompressed_bytes));
  }
  return sink_.Write(data);
}

Result<std::unique_ptr<Decompressor>> MakeDecompressor(Compression compression, ChunkSink& sink,
                                                       const DecompressorOptions& options) {
  DecompressorOptions adjusted = options;
  if (adjusted.output_chunk_bytes < 4096) adjusted.output_chunk_bytes = 4096;
  switch (compression) {
    case Compression::kNone:
      return std::make_unique<PassThrough>(sink, adjusted);
    case Compression::kGzip:
      if (adjusted.gzip_backend == GzipBackend::kIsal) {
        return std::make_unique<IsalGzip>(sink, adjusted);
      } else {
        auto zlib = std::make_unique<ZlibGzip>(sink, adjusted);
        BERTH_RETURN_IF_ERROR(zlib->Init());
        return zlib;
      }
    case Compression::kZstd: {
      auto zstd = std::make_unique<Zstd>(sink, adjusted);
      BERTH_RETURN_IF_ERROR(zstd->Init());
      return zstd;
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unknown compression");
}

}  // namespace berth::archive
