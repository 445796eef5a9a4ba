// File: berth/archive/decompressor.h
//
// Streaming (push-model) decompressors for layer blobs: the caller pushes compressed bytes as
// they arrive with Write() and ends the stream with Finish(); decompressed bytes are handed to a
// downstream ChunkSink in chunks of at most DecompressorOptions::output_chunk_bytes, from a
// buffer the decompressor owns (a view is valid only during the ChunkSink::Write call).
//
//   gzip  ISA-L isal_inflate (ISAL_GZIP: header, CRC-32 and ISIZE checked) or zlib; multi-member
//         streams (concatenated gzip members, as pigz and `cat a.gz b.gz` produce) are supported.
//   zstd  ZSTD_decompressStream; concatenated frames are supported.
//   none  pass-through.
//
// Which one is chosen by the layer's media type (CompressionForMediaType), and the first bytes of
// the stream are checked against it: gzip data must start with 1f 8b, zstd with 28 b5 2f fd, and
// an uncompressed tar must start with neither. A mismatch is kInvalidArgument naming both.
//
// Errors (all sticky: after a failure every later call returns the same error):
//   kInvalidArgument   magic/media-type mismatch, corrupt compressed data, trailing garbage
//   kDataLoss          Finish() before the end of the compressed data ("truncated"), a gzip
//                      member whose CRC-32 or length does not match (zstd checksum errors are
//                      kInvalidArgument, like other corrupt zstd data)
//   kResourceExhausted more than max_uncompressed_bytes of output (decompression bomb)
//   kUnimplemented     an unknown layer media type
//   anything the downstream sink returns, unchanged
//
// Memory: bounded (ISA-L state ~90 KB, zstd window up to 128 MiB by the library's default
// windowLogMax, plus one output buffer), independent of the layer's size.
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "berth/base/result.h"

namespace berth::archive {

// Receives a stream of bytes in chunks. Lifecycle: Write() any number of times; the producer
// never calls it again after an error was returned.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  // Consumes `data`, which is only valid during the call.
  virtual Result<void> Write(std::string_view data) = 0;
};

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip", "zstd".
std::string_view CompressionName(Compression compression);

// Maps a layer media type (OCI or Docker, plain, gzip or zstd, distributable or not) to its
// compression. kUnimplemented for anything else (e.g. "+bzip2", a manifest type).
Result<Compression> CompressionForMediaType(std::string_view media_type);

enum class GzipBackend {
  kIsal,  // ISA-L isal_inflate: about 2x zlib on this hardware.
  kZlib,  // zlib inflate: the portable fallback.
};

struct DecompressorOptions {
  // Output beyond this many bytes fails with kResourceExhausted. 0 means no limit.
  uint64_t max_uncompressed_bytes = 0;
  GzipBackend gzip_backend = GzipBackend::kIsal;
  // Size of the output buffer, i.e. the largest chunk handed to the sink (at least 4096; smaller
  // values are raised to it).
  size_t output_chunk_bytes = size_t{256} * 1024;
};

class Decompressor {
 public:
  virtual ~Decompressor() = default;

  // Consumes `compressed` (any size, including empty) and writes whatever it decodes to the sink.
  Result<void> Write(std::string_view compressed);
  // Declares the end of the compressed stream. kDataLoss "truncated" if the data ended inside
  // a gzip member / zstd frame or before any data at all for gzip/zstd. Call once, after the
  // last Write().
  Result<void> Finish();

  // Decompressed bytes emitted so far.
  uint64_t uncompressed_bytes() const { return emitted_; }
  // Compressed bytes consumed so far.
  uint64_t compressed_bytes() const { return consumed_; }
  Compression compression() const { return compression_; }

 protected:
  Decompressor(Compression compression, ChunkSink& sink, const DecompressorOptions& options)
      : compression_(compression), sink_(sink), options_(options) {}

  // Implementations decode `compressed` and pass output to Emit().
  virtual Result<void> Decode(std::string_view compressed) = 0;
  virtual Result<void> End() = 0;
  // Counts `data` against the bomb limit and forwards it to the sink.
  Result<void> Emit(std::string_view data);

  const DecompressorOptions& options() const { return options_; }

 private:
  Result<void> CheckMagic(std::string_view head);
  Result<void> Sticky(Result<void> result);

  Compression compression_;
  ChunkSink& sink_;
  DecompressorOptions options_;
  // The first bytes, held back until enough arrived to check the magic.
  char head_[4] = {};
  size_t head_size_ = 0;
  bool magic_checked_ = false;
  uint64_t emitted_ = 0;
  uint64_t consumed_ = 0;
  std::unique_ptr<Error> error_;
};

// Returns a decompressor for `compression` writing to `sink`, which must outlive it.
// kInternal if the library cannot allocate its state.
Result<std::unique_ptr<Decompressor>> MakeDecompressor(Compression compression, ChunkSink& sink,
                                                       const DecompressorOptions& options = {});

}  // namespace berth::archive
