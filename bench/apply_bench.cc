// apply_bench: measures LayerApplier throughput (not run by ctest).
//
//   berth_archive_apply_bench [--cache DIR] [--runs N]
//
// Builds (once, cached in DIR, default /var/tmp/berth-archive-bench) a ~200 MB layer from a
// fixed subset of /usr/lib and /usr/share as gzip and zstd blobs, mounts a tmpfs, and applies the
// layer with each variant: ISA-L vs zlib, single thread vs two threads, zstd, plus a
// decode-and-hash-only pass (no filesystem). Prints MB/s of uncompressed tar bytes (MB = 1e6),
// best and median of N runs. Needs root (mount).
#include <fmt/format.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "berth/archive/decompressor.h"
#include "berth/archive/layer_applier.h"
#include "berth/base/file_util.h"
#include "berth/image/media_types.h"
#include "tools/imagegen/layer.h"

namespace {

namespace fs = std::filesystem;
using berth::archive::ApplyOptions;
using berth::archive::ApplyThreading;
using berth::archive::GzipBackend;

class Composite final : public berth::imagegen::LayerSource {
 public:
  void Add(fs::path dir, std::string prefix) {
    berth::imagegen::DirectoryTreeOptions options;
    options.path_prefix = std::move(prefix);
    options.uid = 0;
    options.gid = 0;
    options.mtime_seconds = 1700000000;
    options.unreadable = berth::imagegen::UnreadablePolicy::kSkip;
    trees_.emplace_back(std::move(dir), options);
  }
  berth::Result<void> WriteTo(berth::imagegen::TarWriter& tar) const override {
    for (const auto& tree : trees_) BERTH_RETURN_IF_ERROR(tree.WriteTo(tar));
    return berth::Ok();
  }

 private:
  std::vector<berth::imagegen::DirectoryTree> trees_;
};

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

class NullHashSink final : public berth::archive::ChunkSink {
 public:
  berth::Result<void> Write(std::string_view data) override {
    hasher.Update(data);
    return berth::Ok();
  }
  berth::Hasher hasher;
};

int Run(int argc, char** argv) {
  fs::path cache = "/var/tmp/berth-archive-bench";
  int runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--cache") cache = argv[i + 1];
    if (flag == "--runs") runs = std::stoi(argv[i + 1]);
  }
  fs::create_directories(cache);
  Composite source;
  for (const char* dir :
       {"/usr/lib/python3", "/usr/share/vim", "/usr/share/icons", "/usr/share/perl",
        "/usr/share/cmake-3.25", "/usr/share/i18n", "/usr/share/fonts", "/usr/share/java"}) {
    if (fs::exists(dir)) source.Add(dir, std::string(dir + 1) + "/");
  }
  struct Blob {
    std::string media_type;
    fs::path path;
  };
  std::vector<Blob> blobs = {
      {std::string(berth::media_types::kOciLayerGzip), cache / "layer.tar.gz"},
      {std::string(berth::media_types::kOciLayerZstd), cache / "layer.tar.zst"},
      {std::string(berth::media_types::kOciLayer), cache / "layer.tar"}};
  for (const Blob& blob : blobs) {
    if (fs::exists(blob.path)) continue;
    auto compression = blob.path.extension() == ".gz"    ? berth::imagegen::Compression::kGzip
                       : blob.path.extension() == ".zst" ? berth::imagegen::Compression::kZstd
                                                         : berth::imagegen::Compression::kNone;
    fmt::print("building {} ...\n", blob.path.string());
    auto layer = berth::imagegen::BuildLayerFile(source, blob.path, {.compression = compression});
    if (!layer) {
      fmt::print(stderr, "build failed: {}\n", layer.error().ToString());
      return 1;
    }
  }

  char pattern[] = "/tmp/berth-apply-bench-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return 1;
  fs::path mount_point = pattern;
  auto remount = [&]() {
    umount2(mount_point.c_str(), MNT_DETACH);
    if (mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=4g") != 0) {
      std::perror("mount tmpfs");
      return false;
    }
    return true;
  };
  if (!remount()) return 1;

  struct Variant {
    std::string name;
    size_t blob;
    GzipBackend backend;
    ApplyThreading threading;
    bool decode_only;
  };
  std::vector<Variant> variants = {
      {"gzip isa-l, decode+sha256 only", 0, GzipBackend::kIsal, ApplyThreading::kSingle, true},
      {"gzip zlib,  decode+sha256 only", 0, GzipBackend::kZlib, ApplyThreading::kSingle, true},
      {"zstd,       decode+sha256 only", 1, GzipBackend::kIsal, ApplyThreading::kSingle, true},
      {"gzip isa-l, apply, 1 thread", 0, GzipBackend::kIsal, ApplyThreading::kSingle, false},
      {"gzip zlib,  apply, 1 thread", 0, GzipBackend::kZlib, ApplyThreading::kSingle, false},
      {"gzip isa-l, apply, 2 threads", 0, GzipBackend::kIsal, ApplyThreading::kTwoThreads, false},
      {"gzip zlib,  apply, 2 threads", 0, GzipBackend::kZlib, ApplyThreading::kTwoThreads, false},
      {"zstd,       apply, 1 thread", 1, GzipBackend::kIsal, ApplyThreading::kSingle, false},
      {"zstd,       apply, 2 threads", 1, GzipBackend::kIsal, ApplyThreading::kTwoThreads, false},
      {"plain tar,  apply (sha256 only)", 2, GzipBackend::kIsal, ApplyThreading::kSingle, false},
  };
  for (const Variant& variant : variants) {
    std::vector<double> rates;
    uint64_t bytes = 0, entries = 0;
    for (int run = 0; run < runs; ++run) {
      if (!remount()) return 1;
      auto start = std::chrono::steady_clock::now();
      if (variant.decode_only) {
        NullHashSink sink;
        auto compression =
            berth::archive::CompressionForMediaType(blobs[variant.blob].media_type).value();
        auto decoder =
            berth::archive::MakeDecompressor(compression, sink, {.gzip_backend = variant.backend});
        auto content = berth::ReadFile(blobs[variant.blob].path, size_t{1} << 31).value();
        start = std::chrono::steady_clock::now();  // Exclude reading the blob.
        for (size_t at = 0; at < content.size(); at += 1 << 20) {
          if (!(*decoder)->Write(std::string_view(content).substr(at, 1 << 20))) return 1;
        }
        if (!(*decoder)->Finish()) return 1;
        (void)sink.hasher.Finish();
        bytes = sink.hasher.size();
      } else {
        ApplyOptions options;
        options.root = mount_point;
        options.media_type = blobs[variant.blob].media_type;
        options.gzip_backend = variant.backend;
        options.threading = variant.threading;
        auto result = berth::archive::ApplyLayerFromFile(blobs[variant.blob].path, options);
        if (!result) {
          fmt::print(stderr, "{}: {}\n", variant.name, result.error().ToString());
          return 1;
        }
        bytes = result->uncompressed_bytes;
        entries = result->entries;
      }
      double seconds = Seconds(std::chrono::steady_clock::now() - start);
      rates.push_back(static_cast<double>(bytes) / 1e6 / seconds);
    }
    std::sort(rates.begin(), rates.end());
    fmt::print("{:<34} {:>7.1f} MB/s best {:>7.1f} median  ({:.0f} MB, {} entries)\n", variant.name,
               rates.back(), rates[rates.size() / 2], static_cast<double>(bytes) / 1e6, entries);
  }
  umount2(mount_point.c_str(), MNT_DETACH);
  rmdir(mount_point.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
