// File: tools/imagegen/byte_sink.h
//
// ByteSink is the streaming output seam of the image generator: tar writers, compressors and
// hashers are chained sinks, so a layer of any size flows from its source to its destination
// (a string, a file, a registry upload) in bounded memory.
//
// Lifecycle: Write() any number of times, then Finish() exactly once. Finish() flushes what a
// sink buffers (a compressor's tail) and finishes the sink downstream of it, if it owns that
// link in the chain (documented per sink). Write() after Finish() is a bug.
//
// Thread safety: a sink is used by one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "berth/base/result.h"
#include "berth/base/unique_fd.h"
#include "berth/digest/digest.h"

namespace berth::imagegen {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Consumes `data`. On failure the sink is unusable and the chain should be abandoned.
  virtual Result<void> Write(std::string_view data) = 0;
  // Flushes buffered bytes. The default does nothing.
  virtual Result<void> Finish() { return Ok(); }
};

// Appends everything to a caller-owned string. `*out` must outlive the sink.
class StringSink final : public ByteSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  Result<void> Write(std::string_view data) override;

 private:
  std::string* out_;
};

// Writes to a new file (created or truncated, mode 0644). Finish() fsyncs nothing: generated
// files are test and benchmark inputs, not durable state.
class FileSink final : public ByteSink {
 public:
  // kNotFound / kPermissionDenied / kInternal when the file cannot be created.
  static Result<FileSink> Create(const std::filesystem::path& path);
  Result<void> Write(std::string_view data) override;
  Result<void> Finish() override;

 private:
  FileSink(UniqueFd fd, std::filesystem::path path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::filesystem::path path_;
};

// Discards bytes. Useful to compute digests without storing anything.
class NullSink final : public ByteSink {
 public:
  Result<void> Write(std::string_view) override { return Ok(); }
};

// Passes bytes to `downstream` (which must outlive this sink) while hashing and counting them
// with sha256. Finish() finishes `downstream`.
class HashingSink final : public ByteSink {
 public:
  explicit HashingSink(ByteSink& downstream) : downstream_(downstream) {}
  Result<void> Write(std::string_view data) override;
  Result<void> Finish() override { return downstream_.Finish(); }

  // sha256 of the bytes written so far.
  Digest digest() const { return hasher_.Finish(); }
  uint64_t size() const { return hasher_.size(); }

 private:
  ByteSink& downstream_;
  Hasher hasher_;
};

}  // namespace berth::imagegen
