// File: tools/imagegen/compress.h
//
// Compressing sinks for layer blobs: gzip (zlib) and zstd (libzstd), plus the identity.
//
// Output is deterministic for a given library version and level: the gzip header carries no
// file name and mtime 0, and zstd runs single-threaded, so the same input gives the same blob
// digest on every run.
//
// Thread safety: a compressor is used by one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "tools/imagegen/byte_sink.h"

namespace berth::imagegen {

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip", "zstd".
std::string_view CompressionName(Compression compression);

struct CompressionOptions {
  Compression compression = Compression::kGzip;
  // Library-specific level; 0 picks the library default (gzip 6, zstd 3).
  int level = 0;
};

// Returns a sink that compresses what it is given and writes the result to `downstream`, which
// must outlive it. Finish() writes the stream's tail and then finishes `downstream`. For
// kNone the returned sink forwards bytes unchanged. kInternal if the library cannot start.
Result<std::unique_ptr<ByteSink>> MakeCompressor(const CompressionOptions& options,
                                                 ByteSink& downstream);

// Decompresses a whole gzip or zstd stream held in memory (tests and small blobs only).
// kDataLoss if the stream is corrupt or truncated.
Result<std::string> Decompress(Compression compression, std::string_view compressed);

}  // namespace berth::imagegen
