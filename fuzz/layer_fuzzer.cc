// Fuzzes the layer applier (berth/archive LayerApplier): decompression (gzip with ISA-L or zlib,
// zstd, or none) and tar application into a fresh root per input.
//
// Input: byte 0 chooses the options (bit 0: whiteout mode kDelete instead of kOverlay, bit 1:
// the zlib gzip backend instead of ISA-L), byte 1 where to split the blob into two Write()
// calls, the rest is the layer blob. Its compression follows its magic (gzip 1f 8b, zstd
// 28 b5 2f fd, else a plain tar), so that the corpus holds real layer files.
//
// The work directory (on /dev/shm when it is there, so an exec costs no disk I/O) holds the
// root, a lower layer directory (overlay hardlinks may read from it) and a sentinel file beside
// the root. Invariant: after every input, whatever the result, the work directory holds exactly
// those three, with the sentinel and the lower layer unchanged: the applier never writes
// outside its root. The root is emptied between inputs.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

#include "berth/archive/layer_applier.h"
#include "berth/base/file_util.h"
#include "berth/image/media_types.h"
#include "fuzz/fuzz_check.h"

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSentinelText = "outside the root: must never change\n";
constexpr std::string_view kLowerText = "a file of the lower layer\n";

struct WorkDir {
  fs::path base;
  fs::path root;
  fs::path lower;
  fs::path sentinel;
};

WorkDir* work = nullptr;

void RemoveWorkDir() {
  if (work != nullptr) {
    std::error_code ignored;
    fs::remove_all(work->base, ignored);
  }
}

void WriteText(const fs::path& path, std::string_view text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string Contents(const fs::path& path) {
  berth::Result<std::string> contents = berth::ReadFile(path);
  return contents ? *contents : std::string("<unreadable>");
}

std::string_view MediaTypeFor(std::string_view blob) {
  if (blob.starts_with("\x1f\x8b")) return berth::media_types::kOciLayerGzip;
  if (blob.starts_with("\x28\xb5\x2f\xfd")) return berth::media_types::kOciLayerZstd;
  return berth::media_types::kOciLayer;
}

void CheckNothingOutsideRoot() {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(work->base)) {
    names.insert(entry.path().filename().string());
  }
  FUZZ_CHECK((names == std::set<std::string>{"root", "lower", "sentinel"}),
             "an entry appeared beside the root");
  FUZZ_CHECK(Contents(work->sentinel) == kSentinelText, "the sentinel beside the root changed");
  size_t lower_entries = 0;
  for (auto it = fs::recursive_directory_iterator(work->lower);
       it != fs::recursive_directory_iterator(); ++it) {
    ++lower_entries;
  }
  FUZZ_CHECK(lower_entries == 2, "the lower layer changed");
  FUZZ_CHECK(Contents(work->lower / "etc" / "passwd") == kLowerText, "the lower layer changed");
}

void ResetRoot() {
  std::error_code error;
  fs::remove_all(work->root, error);
  FUZZ_CHECK(!error, "cannot empty the root: " + error.message());
  fs::create_directory(work->root, error);
  FUZZ_CHECK(!error, "cannot recreate the root: " + error.message());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  fs::path parent =
      access("/dev/shm", W_OK) == 0 ? fs::path("/dev/shm") : fs::temp_directory_path();
  work = new WorkDir;
  work->base = parent / ("berth-fuzz-layer-" + std::to_string(getpid()));
  work->root = work->base / "root";
  work->lower = work->base / "lower";
  work->sentinel = work->base / "sentinel";
  fs::remove_all(work->base);
  fs::create_directories(work->root);
  fs::create_directories(work->lower / "etc");
  WriteText(work->lower / "etc" / "passwd", kLowerText);
  WriteText(work->sentinel, kSentinelText);
  std::atexit(RemoveWorkDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  namespace archive = berth::archive;
  std::string_view blob(reinterpret_cast<const char*>(data) + 2, size - 2);
  archive::ApplyOptions options{
      .root = work->root,
      .media_type = std::string(MediaTypeFor(blob)),
      .whiteout_mode =
          (data[0] & 1) != 0 ? archive::WhiteoutMode::kDelete : archive::WhiteoutMode::kOverlay,
      .lower_dirs = {work->lower},
      // Small enough that no input writes much, large enough for every path the applier has.
      .limits = {.max_uncompressed_bytes = 32 << 20,
                 .max_entries = 10000,
                 .max_entry_bytes = 8 << 20},
      .gzip_backend =
          (data[0] & 2) != 0 ? archive::GzipBackend::kZlib : archive::GzipBackend::kIsal,
  };
  size_t split = blob.size() * data[1] / 256;

  berth::Result<std::unique_ptr<archive::LayerApplier>> applier =
      archive::LayerApplier::Create(options);
  FUZZ_CHECK(applier.has_value(), applier.error().message());
  berth::Result<void> written = (*applier)->Write(blob.substr(0, split));
  if (written) written = (*applier)->Write(blob.substr(split));
  if (written) {
    berth::Result<archive::ApplyResult> result = (*applier)->Finish();
    if (result) {
      FUZZ_CHECK(result->uncompressed_bytes <= options.limits.max_uncompressed_bytes,
                 "the uncompressed limit was not enforced");
      FUZZ_CHECK(result->entries <= options.limits.max_entries, "the entry limit was not enforced");
    }
  }
  applier->reset();
  CheckNothingOutsideRoot();
  ResetRoot();
  return 0;
}
