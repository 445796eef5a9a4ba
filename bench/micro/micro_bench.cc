// File: bench/micro/micro_bench.cc
//
// berth_micro_bench: Google Benchmark micro-benchmarks of the stages of a pull (issue 7), each
// measured in-process on one thread so it can be set against /work/shared/MACHINE-LIMITS.md.
// Figures only: not a ctest test, nothing here passes or fails on a timing.
//
//   berth_micro_bench [--corpus_mib=48] [--scratch_dir=/dev/shm] [--db_dir=/var/tmp]
//                     [--benchmark_filter=...] [--benchmark_repetitions=3] ...
//
// At start it builds, in memory, a corpus tar of real files sampled from /usr/lib/x86_64-linux-gnu
// and /usr/share (files of at most 4 MiB, taken in the order of a hash of their path until the
// tar reaches --corpus_mib), then compresses it once with zlib level 6 (gzip) and zstd level 3,
// and generates an uncompressed tar of 5,000 small files in 50 directories.
//
//   sha256/*             the corpus tar in 1 MiB updates: berth::Hasher, and OpenSSL EVP directly
//   gzip_inflate/*       the gzip corpus fed in 1 MiB pieces to berth's streaming decompressor
//                        (ISA-L and zlib backends); libdeflate as a reference, which has no
//                        streaming API and so needs the whole blob and the whole output buffer
//                        in memory (once with the output buffer reused, once with a fresh one
//                        whose page faults are then part of the time)
//   zstd_decompress/*    the zstd corpus through berth's streaming decompressor
//   tar_apply/*          the small-files tar applied into a fresh directory under --scratch_dir
//                        (a tmpfs: VFS cost only) by LayerApplier (sha256 diffID + tar parse +
//                        apply), by TarReader + TarApplier alone, and by GNU `tar -xf` as a
//                        reference; the directory is created and removed outside the timed
//                        region
//   metadata/*           MetadataDb on a fresh file under --db_dir (the disk; WAL mode), with
//                        synchronous FULL (berth's default) and NORMAL: PutImages of the three
//                        names a pull records, one transaction per iteration; and a lease cycle
//                        (CreateLease + AddLeaseResources of 5 resources + DeleteLease)
//
// Units: bytes_per_second is Google Benchmark's (binary prefixes, "M/s" = MiB/s). The "MB"
// counter is uncompressed bytes per second in MB = 10^6 bytes and "comp_MB" compressed bytes per
// second, the units of MACHINE-LIMITS.md. sha256, inflate and zstd rates are per CPU-second
// (CPU-bound stages: less disturbed by the other work on a shared machine); tar_apply and
// metadata use wall time (they wait on the kernel and the disk). items_per_second is entries
// (tar_apply), transactions (put_images) or lease cycles (lease_cycle) per second.
//
// Debian's libbenchmark prints "Library was built as DEBUG": that is the harness's own build
// (its timing loop), not the code measured, which is built in Release by bench/micro.sh.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <libdeflate.h>
#include <linux/magic.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "berth/archive/decompressor.h"
#include "berth/archive/layer_applier.h"
#include "berth/archive/tar_applier.h"
#include "berth/archive/tar_reader.h"
#include "berth/base/c_handle.h"
#include "berth/base/file_util.h"
#include "berth/base/unique_fd.h"
#include "berth/digest/digest.h"
#include "berth/image/media_types.h"
#include "berth/metadata/metadata_db.h"
#include "tools/imagegen/byte_sink.h"
#include "tools/imagegen/compress.h"
#include "tools/imagegen/tar_writer.h"

namespace {

namespace fs = std::filesystem;
using berth::archive::Compression;
using berth::archive::GzipBackend;
using berth::sqlite::Synchronous;

// How the blobs are fed to the streaming stages, as an HTTP body would be.
constexpr size_t kChunkBytes = size_t{1} << 20;
constexpr int64_t kMtime = 1700000000;

struct Flags {
  uint64_t corpus_mib = 48;
  fs::path scratch_dir = "/dev/shm";
  fs::path db_dir = "/var/tmp";
};

// The inputs every benchmark reads; built once before any runs.
struct Corpus {
  std::string tar;
  uint64_t tar_files = 0;
  std::string gzip;  // zlib level 6, one gzip member
  std::string zstd;  // level 3
  std::string small_files_tar;
  uint64_t small_files_entries = 0;
};

// A directory made with mkdtemp under `parent`, removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(const fs::path& parent) {
    std::string pattern = (parent / "berth-micro-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror(("mkdtemp " + pattern).c_str());
      std::exit(1);
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// FNV-1a: a sampling order that is the same on every run and every standard library.
uint64_t PathHash(std::string_view path) {
  uint64_t hash = 14695981039346656037u;
  for (char c : path) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211u;
  }
  return hash;
}

template <typename Fn>
void ForEachChunk(std::string_view data, Fn&& fn) {
  for (size_t at = 0; at < data.size(); at += kChunkBytes) fn(data.substr(at, kChunkBytes));
}

[[noreturn]] void Die(std::string_view what, const berth::Error& error) {
  fmt::print(stderr, "berth_micro_bench: {}: {}\n", what, error.ToString());
  std::exit(1);
}

std::string Compress(std::string_view data, berth::imagegen::Compression compression, int level) {
  std::string out;
  berth::imagegen::StringSink sink(&out);
  auto compressor =
      berth::imagegen::MakeCompressor({.compression = compression, .level = level}, sink);
  if (!compressor) Die("compressor", compressor.error());
  ForEachChunk(data, [&](std::string_view chunk) {
    if (auto written = (*compressor)->Write(chunk); !written) Die("compress", written.error());
  });
  if (auto finished = (*compressor)->Finish(); !finished) Die("compress", finished.error());
  return out;
}

// The corpus tar: regular files only (their content is what the codecs see), named by their
// path without the leading '/'.
void BuildCorpusTar(uint64_t target_bytes, Corpus& corpus) {
  struct Candidate {
    uint64_t hash;
    fs::path path;
  };
  std::vector<Candidate> candidates;
  for (const char* root : {"/usr/lib/x86_64-linux-gnu", "/usr/share"}) {
    std::error_code error;
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, error);
    for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      std::error_code stat_error;
      if (!it->is_regular_file(stat_error) || it->is_symlink(stat_error)) continue;
      uint64_t size = it->file_size(stat_error);
      if (stat_error || size == 0 || size > (uint64_t{4} << 20)) continue;
      candidates.push_back({PathHash(it->path().native()), it->path()});
    }
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.hash < b.hash; });

  berth::imagegen::StringSink sink(&corpus.tar);
  berth::imagegen::TarWriter tar(sink);
  for (const Candidate& candidate : candidates) {
    if (corpus.tar.size() >= target_bytes) break;
    auto content = berth::ReadFile(candidate.path, size_t{4} << 20);
    if (!content) continue;  // Unreadable or changed since the walk: sample another.
    berth::imagegen::Entry entry;
    entry.path = candidate.path.relative_path().string();
    entry.mtime_seconds = kMtime;
    if (auto written = tar.WriteEntry(entry, *content); !written) Die("tar", written.error());
    ++corpus.tar_files;
  }
  if (auto finished = tar.Finish(); !finished) Die("tar", finished.error());
}

// 50 directories of 100 files each, 64 B to 8 KiB (pseudo-random, the same every run).
void BuildSmallFilesTar(Corpus& corpus) {
  berth::imagegen::StringSink sink(&corpus.small_files_tar);
  berth::imagegen::TarWriter tar(sink);
  uint64_t state = 0x9e3779b97f4a7c15u;
  std::string content;
  for (int dir = 0; dir < 50; ++dir) {
    berth::imagegen::Entry directory{.path = fmt::format("data/d{:02}", dir),
                                     .type = berth::imagegen::EntryType::kDirectory,
                                     .mode = 0755,
                                     .mtime_seconds = kMtime};
    if (auto written = tar.WriteEntry(directory); !written) Die("tar", written.error());
    ++corpus.small_files_entries;
    for (int file = 0; file < 100; ++file) {
      state = state * 6364136223846793005u + 1442695040888963407u;
      size_t size = 64 + (state >> 33) % (8 * 1024 - 64);
      content.assign(size, static_cast<char>('a' + (file % 26)));
      berth::imagegen::Entry entry{.path = fmt::format("data/d{:02}/f{:03}.txt", dir, file),
                                   .mtime_seconds = kMtime};
      if (auto written = tar.WriteEntry(entry, content); !written) Die("tar", written.error());
      ++corpus.small_files_entries;
    }
  }
  if (auto finished = tar.Finish(); !finished) Die("tar", finished.error());
}

Corpus BuildCorpus(const Flags& flags) {
  Corpus corpus;
  BuildCorpusTar(flags.corpus_mib << 20, corpus);
  corpus.gzip = Compress(corpus.tar, berth::imagegen::Compression::kGzip, 6);
  corpus.zstd = Compress(corpus.tar, berth::imagegen::Compression::kZstd, 3);
  BuildSmallFilesTar(corpus);
  return corpus;
}

// Bytes per second (Google Benchmark's, binary prefixes) plus MB (10^6) per second of
// uncompressed and, for a codec, compressed bytes.
void SetRates(benchmark::State& state, uint64_t uncompressed_bytes, uint64_t compressed_bytes) {
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(uncompressed_bytes));
  state.counters["MB"] = benchmark::Counter(static_cast<double>(uncompressed_bytes) / 1e6,
                                            benchmark::Counter::kIsIterationInvariantRate);
  if (compressed_bytes > 0) {
    state.counters["comp_MB"] = benchmark::Counter(static_cast<double>(compressed_bytes) / 1e6,
                                                   benchmark::Counter::kIsIterationInvariantRate);
  }
}

// --- SHA-256 -------------------------------------------------------------------------------------

void Sha256BerthHasher(benchmark::State& state, const Corpus& corpus) {
  for (auto _ : state) {
    berth::Hasher hasher;
    ForEachChunk(corpus.tar, [&](std::string_view chunk) { hasher.Update(chunk); });
    benchmark::DoNotOptimize(hasher.Finish());
  }
  SetRates(state, corpus.tar.size(), 0);
}

using UniqueMdContext = berth::UniqueHandle<EVP_MD_CTX, EVP_MD_CTX_free>;

void Sha256OpenSslEvp(benchmark::State& state, const Corpus& corpus) {
  UniqueMdContext context(EVP_MD_CTX_new());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  for (auto _ : state) {
    if (EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
      state.SkipWithError("EVP_DigestInit_ex failed");
      return;
    }
    ForEachChunk(corpus.tar, [&](std::string_view chunk) {
      EVP_DigestUpdate(context.get(), chunk.data(), chunk.size());
    });
    EVP_DigestFinal_ex(context.get(), digest, &digest_size);
    benchmark::DoNotOptimize(digest);
  }
  SetRates(state, corpus.tar.size(), 0);
}

// --- gzip inflate and zstd -----------------------------------------------------------------------

// Counts what the decompressor emits and otherwise drops it.
class CountingSink final : public berth::archive::ChunkSink {
 public:
  berth::Result<void> Write(std::string_view data) override {
    benchmark::DoNotOptimize(data.data());
    bytes_ += data.size();
    return berth::Ok();
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

void BerthDecompress(benchmark::State& state, const Corpus& corpus, Compression compression,
                     GzipBackend backend) {
  const std::string& blob = compression == Compression::kGzip ? corpus.gzip : corpus.zstd;
  for (auto _ : state) {
    CountingSink sink;
    auto decoder = berth::archive::MakeDecompressor(compression, sink, {.gzip_backend = backend});
    if (!decoder) {
      state.SkipWithError(decoder.error().ToString().c_str());
      return;
    }
    berth::Result<void> result = berth::Ok();
    ForEachChunk(blob, [&](std::string_view chunk) {
      if (result) result = (*decoder)->Write(chunk);
    });
    if (result) result = (*decoder)->Finish();
    if (!result || sink.bytes() != corpus.tar.size()) {
      state.SkipWithError(result ? "wrong output size" : result.error().ToString().c_str());
      return;
    }
  }
  SetRates(state, corpus.tar.size(), blob.size());
}

using UniqueLibdeflate = berth::UniqueHandle<libdeflate_decompressor, libdeflate_free_decompressor>;

enum class OutputBuffer {
  kReused,  // One buffer, already faulted in: the codec alone.
  kFresh,   // A new allocation per run: the codec plus the kernel's zeroed pages.
};

void LibdeflateInflate(benchmark::State& state, const Corpus& corpus, OutputBuffer output) {
  UniqueLibdeflate decompressor(libdeflate_alloc_decompressor());
  const size_t size = corpus.tar.size();
  std::unique_ptr<char[]> reused;
  if (output == OutputBuffer::kReused) {
    reused = std::make_unique<char[]>(size);  // Value-initialised: every page touched.
  }
  for (auto _ : state) {
    std::unique_ptr<char[]> fresh;
    char* out = reused.get();
    if (output == OutputBuffer::kFresh) {
      fresh.reset(new char[size]);  // Not initialised: libdeflate takes the page faults.
      out = fresh.get();
    }
    size_t produced = 0;
    libdeflate_result result = libdeflate_gzip_decompress(decompressor.get(), corpus.gzip.data(),
                                                          corpus.gzip.size(), out, size, &produced);
    if (result != LIBDEFLATE_SUCCESS || produced != size) {
      state.SkipWithError("libdeflate_gzip_decompress failed");
      return;
    }
    benchmark::DoNotOptimize(out);
  }
  SetRates(state, corpus.tar.size(), corpus.gzip.size());
}

// --- tar apply of many small files ---------------------------------------------------------------

enum class ApplyPath {
  kLayerApplier,  // What the unpacker runs: diffID sha256 + tar parse + filesystem.
  kTarApplier,    // TarReader + TarApplier only: tar parse + filesystem.
  kGnuTar,        // Reference: `tar -xf` of the same tar (a file on the same tmpfs).
};

double ThreadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// Runs `tar -xf tar_file -C root` (as root GNU tar keeps owners, like the appliers) and adds the
// child's user+system CPU seconds to `*cpu_seconds`.
berth::Result<void> GnuTarOnce(const fs::path& tar_file, const fs::path& root,
                               double* cpu_seconds) {
  std::string program = "tar", extract = "-xf", file = tar_file.string(), change = "-C",
              directory = root.string();
  char* argv[] = {program.data(), extract.data(),   file.data(),
                  change.data(),  directory.data(), nullptr};
  pid_t pid = 0;
  if (int error = posix_spawnp(&pid, "tar", nullptr, nullptr, argv, environ); error != 0) {
    return berth::Fail(berth::ErrorCode::kInternal,
                       fmt::format("posix_spawnp tar: {}", std::strerror(error)));
  }
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return berth::Fail(berth::ErrorCode::kInternal, "tar -xf failed");
  }
  auto seconds = [](const timeval& time) {
    return static_cast<double>(time.tv_sec) + static_cast<double>(time.tv_usec) / 1e6;
  };
  *cpu_seconds += seconds(usage.ru_utime) + seconds(usage.ru_stime);
  return berth::Ok();
}

berth::Result<uint64_t> ApplyOnce(const Corpus& corpus, const fs::path& root, ApplyPath path) {
  // As root the archive's uid/gid 0 is kept (and chown skipped, as it already matches); as
  // another user chown would fail, so ownership is not applied.
  const bool preserve_ownership = geteuid() == 0;
  if (path == ApplyPath::kLayerApplier) {
    berth::archive::ApplyOptions options;
    options.root = root;
    options.media_type = std::string(berth::media_types::kOciLayer);
    options.preserve_ownership = preserve_ownership;
    BERTH_ASSIGN_OR_RETURN(auto applier, berth::archive::LayerApplier::Create(options));
    berth::Result<void> written = berth::Ok();
    ForEachChunk(corpus.small_files_tar, [&](std::string_view chunk) {
      if (written) written = applier->Write(chunk);
    });
    BERTH_RETURN_IF_ERROR(written);
    BERTH_ASSIGN_OR_RETURN(berth::archive::ApplyResult result, applier->Finish());
    return result.entries;
  }
  berth::UniqueFd root_fd(open(root.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!root_fd) return berth::Fail(berth::ErrorCode::kInternal, "open " + root.string());
  BERTH_ASSIGN_OR_RETURN(
      auto applier, berth::archive::TarApplier::Create(root_fd.get(),
                                                       {.preserve_ownership = preserve_ownership}));
  berth::archive::TarReader reader(*applier);
  berth::Result<void> written = berth::Ok();
  ForEachChunk(corpus.small_files_tar, [&](std::string_view chunk) {
    if (written) written = reader.Write(chunk);
  });
  BERTH_RETURN_IF_ERROR(written);
  BERTH_RETURN_IF_ERROR(reader.Finish());
  BERTH_RETURN_IF_ERROR(applier->Finish());
  return applier->stats().entries;
}

// Besides the rates, reports entries_per_cpu_s: entries per CPU-second of the thread that
// applies (or of the tar child), which the other work on a shared machine disturbs less than
// wall time.
void TarApply(benchmark::State& state, const Corpus& corpus, const fs::path& scratch,
              ApplyPath path) {
  const fs::path tar_file = scratch / "small_files.tar";
  if (path == ApplyPath::kGnuTar) {
    if (auto written = berth::WriteFileAtomically(tar_file, corpus.small_files_tar); !written) {
      state.SkipWithError(written.error().ToString().c_str());
      return;
    }
  }
  uint64_t run = 0;
  double cpu_seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fs::path root = scratch / fmt::format("apply-{}", run++);
    std::error_code error;
    fs::create_directory(root, error);
    state.ResumeTiming();

    berth::Result<uint64_t> entries = corpus.small_files_entries;
    if (path == ApplyPath::kGnuTar) {
      if (auto extracted = GnuTarOnce(tar_file, root, &cpu_seconds); !extracted) {
        entries = tl::unexpected(extracted.error());
      }
    } else {
      double cpu_start = ThreadCpuSeconds();
      entries = ApplyOnce(corpus, root, path);
      cpu_seconds += ThreadCpuSeconds() - cpu_start;
    }

    state.PauseTiming();
    fs::remove_all(root, error);
    state.ResumeTiming();
    if (!entries || *entries != corpus.small_files_entries) {
      state.SkipWithError(entries ? "wrong entry count" : entries.error().ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(corpus.small_files_entries));
  SetRates(state, corpus.small_files_tar.size(), 0);
  if (cpu_seconds > 0) {
    state.counters["entries_per_cpu_s"] = benchmark::Counter(
        static_cast<double>(state.iterations() * corpus.small_files_entries) / cpu_seconds);
  }
  std::error_code ignored;
  fs::remove(tar_file, ignored);
}

// --- metadata DB ---------------------------------------------------------------------------------

std::unique_ptr<berth::metadata::MetadataDb> OpenFreshDb(const fs::path& path,
                                                         Synchronous synchronous) {
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path.string() + suffix, ignored);
  auto db = berth::metadata::MetadataDb::Open({.path = path, .synchronous = synchronous});
  if (!db) Die("open " + path.string(), db.error());
  return std::move(*db);
}

// The three names a pull records for one new image (tag, repo digest, image ID).
std::vector<berth::metadata::ImageRecord> PullRecords(uint64_t image) {
  berth::Digest manifest = berth::Digest::Sha256Of(fmt::format("manifest {}", image));
  berth::Digest config = berth::Digest::Sha256Of(fmt::format("config {}", image));
  std::string repository = fmt::format("registry.bench.local/team/app{}", image);
  berth::metadata::ImageRecord record;
  record.target = {
      .media_type = "application/vnd.oci.image.manifest.v1+json", .digest = manifest, .size = 1234};
  record.image_id = config;
  record.chain_id = berth::Digest::Sha256Of(fmt::format("chain {}", image)).ToString();
  record.snapshotter = "overlayfs";
  record.labels = {
      {std::string(berth::metadata::kManagedLabel), std::string(berth::metadata::kManagedValue)}};
  std::vector<berth::metadata::ImageRecord> records(3, record);
  records[0].name = repository + ":latest";
  records[1].name = repository + "@" + manifest.ToString();
  records[2].name = config.ToString();
  return records;
}

void MetadataPutImages(benchmark::State& state, const fs::path& dir, Synchronous synchronous) {
  auto db = OpenFreshDb(dir / "put_images.db", synchronous);
  uint64_t image = 0;
  for (auto _ : state) {
    std::vector<berth::metadata::ImageRecord> records = PullRecords(image++);
    if (auto put = db->PutImages(records); !put) {
      state.SkipWithError(put.error().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void MetadataLeaseCycle(benchmark::State& state, const fs::path& dir, Synchronous synchronous) {
  auto db = OpenFreshDb(dir / "leases.db", synchronous);
  using berth::metadata::LeaseResourceKind;
  uint64_t pull = 0;
  for (auto _ : state) {
    std::string id = fmt::format("pull-{}", pull++);
    std::vector<berth::metadata::LeaseResource> resources = {
        {LeaseResourceKind::kBlob, berth::Digest::Sha256Of(id + " manifest").ToString()},
        {LeaseResourceKind::kBlob, berth::Digest::Sha256Of(id + " config").ToString()},
        {LeaseResourceKind::kBlob, berth::Digest::Sha256Of(id + " layer").ToString()},
        {LeaseResourceKind::kSnapshot, berth::Digest::Sha256Of(id + " chain").ToString()},
        {LeaseResourceKind::kActiveSnapshot, "extract-" + id},
    };
    berth::Result<void> result = db->CreateLease(id, "pull registry.bench.local/team/app:latest");
    if (result) result = db->AddLeaseResources(id, resources);
    if (result) result = db->DeleteLease(id);
    if (!result) {
      state.SkipWithError(result.error().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// --- main ----------------------------------------------------------------------------------------

bool ParseFlag(std::string_view arg, std::string_view name, std::string* value) {
  std::string prefix = fmt::format("--{}=", name);
  if (!arg.starts_with(prefix)) return false;
  *value = std::string(arg.substr(prefix.size()));
  return true;
}

bool IsTmpfs(const fs::path& path) {
  struct statfs info {};
  return statfs(path.c_str(), &info) == 0 && info.f_type == TMPFS_MAGIC;
}

int Run(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    if (ParseFlag(argv[i], "corpus_mib", &value)) {
      flags.corpus_mib = std::stoull(value);
    } else if (ParseFlag(argv[i], "scratch_dir", &value)) {
      flags.scratch_dir = value;
    } else if (ParseFlag(argv[i], "db_dir", &value)) {
      flags.db_dir = value;
    } else {
      fmt::print(stderr,
                 "unknown flag {}\nusage: berth_micro_bench [--corpus_mib=48] "
                 "[--scratch_dir=/dev/shm] [--db_dir=/var/tmp] [--benchmark_*...]\n",
                 argv[i]);
      return 2;
    }
  }

  Corpus corpus = BuildCorpus(flags);
  TempDir scratch(flags.scratch_dir);
  TempDir db_dir(flags.db_dir);
  benchmark::AddCustomContext(
      "corpus",
      fmt::format("{} files from /usr/lib/x86_64-linux-gnu and /usr/share, tar {:.1f} MB, "
                  "gzip -6 {:.1f} MB, zstd -3 {:.1f} MB",
                  corpus.tar_files, corpus.tar.size() / 1e6, corpus.gzip.size() / 1e6,
                  corpus.zstd.size() / 1e6));
  benchmark::AddCustomContext(
      "small_files",
      fmt::format("{} entries, tar {:.1f} MB, applied under {}{}", corpus.small_files_entries,
                  corpus.small_files_tar.size() / 1e6, flags.scratch_dir.string(),
                  IsTmpfs(flags.scratch_dir) ? " (tmpfs)" : " (not tmpfs)"));
  benchmark::AddCustomContext("metadata_db", db_dir.path().string());

  auto cpu_bound = [](benchmark::internal::Benchmark* benchmark) {
    benchmark->Unit(benchmark::kMillisecond);
  };
  cpu_bound(
      benchmark::RegisterBenchmark("sha256/berth_hasher", Sha256BerthHasher, std::cref(corpus)));
  cpu_bound(
      benchmark::RegisterBenchmark("sha256/openssl_evp", Sha256OpenSslEvp, std::cref(corpus)));
  cpu_bound(benchmark::RegisterBenchmark("gzip_inflate/berth_isal", BerthDecompress,
                                         std::cref(corpus), Compression::kGzip,
                                         GzipBackend::kIsal));
  cpu_bound(benchmark::RegisterBenchmark("gzip_inflate/berth_zlib", BerthDecompress,
                                         std::cref(corpus), Compression::kGzip,
                                         GzipBackend::kZlib));
  cpu_bound(benchmark::RegisterBenchmark("gzip_inflate/libdeflate_whole_buffer", LibdeflateInflate,
                                         std::cref(corpus), OutputBuffer::kReused));
  cpu_bound(benchmark::RegisterBenchmark("gzip_inflate/libdeflate_whole_buffer_fresh_output",
                                         LibdeflateInflate, std::cref(corpus),
                                         OutputBuffer::kFresh));
  cpu_bound(benchmark::RegisterBenchmark("zstd_decompress/berth", BerthDecompress,
                                         std::cref(corpus), Compression::kZstd,
                                         GzipBackend::kIsal));

  benchmark::RegisterBenchmark("tar_apply/5000_small_files/layer_applier", TarApply,
                               std::cref(corpus), scratch.path(), ApplyPath::kLayerApplier)
      ->Unit(benchmark::kMillisecond)
      ->MinTime(2.0)
      ->UseRealTime();
  benchmark::RegisterBenchmark("tar_apply/5000_small_files/tar_applier", TarApply,
                               std::cref(corpus), scratch.path(), ApplyPath::kTarApplier)
      ->Unit(benchmark::kMillisecond)
      ->MinTime(2.0)
      ->UseRealTime();
  benchmark::RegisterBenchmark("tar_apply/5000_small_files/gnu_tar_reference", TarApply,
                               std::cref(corpus), scratch.path(), ApplyPath::kGnuTar)
      ->Unit(benchmark::kMillisecond)
      ->MinTime(2.0)
      ->UseRealTime();

  for (auto [name, synchronous] : {std::pair{"sync_full", Synchronous::kFull},
                                   std::pair{"sync_normal", Synchronous::kNormal}}) {
    benchmark::RegisterBenchmark(fmt::format("metadata/put_images_3/{}", name).c_str(),
                                 MetadataPutImages, db_dir.path(), synchronous)
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(1.0)
        ->UseRealTime();
    benchmark::RegisterBenchmark(fmt::format("metadata/lease_cycle/{}", name).c_str(),
                                 MetadataLeaseCycle, db_dir.path(), synchronous)
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(1.0)
        ->UseRealTime();
  }

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
