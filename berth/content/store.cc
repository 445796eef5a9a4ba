#include "berth/content/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <random>
#include <thread>

#include "berth/base/file_util.h"

namespace berth::content {
namespace {

constexpr size_t kHashChunk = 1 << 20;

// Feeds [0, length) of `fd` (to its end when `length` < 0) to `consume` in chunks of up to
// kHashChunk bytes, reading with pread so the file offset is left alone. `what` names the file
// in errors.
Result<void> ReadChunks(int fd, int64_t length,
                        const std::function<Result<void>(std::string_view)>& consume,
                        std::string_view what) {
  std::string buffer(kHashChunk, '\0');
  int64_t position = 0;
  while (length < 0 || position < length) {
    size_t want = length < 0
                      ? kHashChunk
                      : static_cast<size_t>(std::min<int64_t>(length - position, kHashChunk));
    ssize_t n = ::pread(fd, buffer.data(), want, position);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoError(errno, fmt::format("read {}", what)));
    }
    if (n == 0) break;
    BERTH_RETURN_IF_ERROR(consume(std::string_view(buffer.data(), static_cast<size_t>(n))));
    position += n;
  }
  return Ok();
}

// Takes the exclusive lock of an ingest's data file without blocking for long: a collector
// holds it for the moment it takes to look at (or remove) the ingest, a writer for the whole
// download. So a lock still held after ~100 ms is a writer's. Returns whether it was taken.
bool LockWithinBriefWait(int fd) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Parses the `expected` file of an ingest: "<digest> <size>".
std::optional<std::pair<Digest, int64_t>> ReadExpected(const std::filesystem::path& dir) {
  Result<std::string> text = ReadFile(dir / "expected", 4096);
  if (!text) return std::nullopt;
  size_t space = text->find(' ');
  if (space == std::string::npos) return std::nullopt;
  Result<Digest> digest = Digest::Parse(std::string_view(*text).substr(0, space));
  if (!digest) return std::nullopt;
  try {
    return std::make_pair(*digest, std::stoll(text->substr(space + 1)));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  if (options.root.empty()) return Fail(ErrorCode::kInvalidArgument, "content store root is empty");
  for (const char* sub : {"blobs/sha256", "blobs/sha384", "blobs/sha512", "ingest"}) {
    BERTH_RETURN_IF_ERROR(MakeDirectories(options.root / sub));
  }
  return std::unique_ptr<Store>(new Store(options));
}

std::filesystem::path Store::BlobPath(const Digest& digest) const {
  return options_.root / "blobs" / std::string(digest.algorithm_name()) / digest.encoded();
}

std::filesystem::path Store::IngestDir(std::string_view ref) const {
  return options_.root / "ingest" / Digest::Sha256Of(ref).encoded();
}

Result<BlobInfo> Store::Info(const Digest& digest) const {
  struct stat st {};
  if (::stat(BlobPath(digest).c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("blob {} not found in the content store", digest));
    }
    return Fail(ErrnoError(errno, fmt::format("stat blob {}", digest)));
  }
  return BlobInfo{digest, static_cast<int64_t>(st.st_size),
                  static_cast<int64_t>(st.st_blocks) * 512};
}

bool Store::Contains(const Digest& digest) const {
  return ::access(BlobPath(digest).c_str(), F_OK) == 0;
}

Result<std::string> Store::ReadBlob(const Digest& digest, size_t max_bytes) const {
  Result<std::string> bytes = ReadFile(BlobPath(digest), max_bytes);
  if (!bytes && bytes.error().code() == ErrorCode::kNotFound) {
    return Fail(ErrorCode::kNotFound,
                fmt::format("blob {} not found in the content store", digest));
  }
  return bytes;
}

Result<UniqueFd> Store::OpenBlob(const Digest& digest) const {
  UniqueFd fd(::open(BlobPath(digest).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("blob {} not found in the content store", digest));
    }
    return Fail(ErrnoError(errno, fmt::format("open blob {}", digest)));
  }
  return fd;
}

Result<void> Store::StreamBlob(const Digest& digest,
                               const std::function<Result<void>(std::string_view)>& consume) const {
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, OpenBlob(digest));
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return ReadChunks(fd.get(), -1, consume, fmt::format("blob {}", digest));
}

Result<void> Store::WriteBlob(const Digest& expected, std::string_view bytes) {
  if (Contains(expected)) return Ok();
  // A private ingest per call: concurrent writers of the same small blob do not wait for each
  // other; each verifies its bytes and the renames into place are atomic.
  std::random_device random;
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<Writer> writer,
      OpenWriter(fmt::format("write-blob-{}-{:08x}{:08x}", expected, random(), random()), expected,
                 static_cast<int64_t>(bytes.size())));
  if (writer->offset() != 0) BERTH_RETURN_IF_ERROR(writer->Truncate());
  BERTH_RETURN_IF_ERROR(writer->Write(bytes));
  BERTH_RETURN_IF_ERROR(writer->Commit());
  return Ok();
}

Result<void> Store::Delete(const Digest& digest) {
  if (::unlink(BlobPath(digest).c_str()) != 0) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("blob {} not found in the content store", digest));
    }
    return Fail(ErrnoError(errno, fmt::format("delete blob {}", digest)));
  }
  return Ok();
}

Result<void> Store::Walk(const std::function<void(const BlobInfo&)>& visit) const {
  std::error_code ec;
  for (const auto& algorithm_dir :
       std::filesystem::directory_iterator(options_.root / "blobs", ec)) {
    std::string algorithm = algorithm_dir.path().filename().string();
    for (const auto& entry : std::filesystem::directory_iterator(algorithm_dir.path(), ec)) {
      Result<Digest> digest = Digest::Parse(algorithm + ":" + entry.path().filename().string());
      if (!digest) continue;  // not a blob (e.g. a stray temp file)
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) != 0) continue;  // deleted meanwhile
      visit(BlobInfo{*digest, static_cast<int64_t>(st.st_size),
                     static_cast<int64_t>(st.st_blocks) * 512});
    }
  }
  if (ec) return Fail(ErrnoError(ec.value(), "walk content store"));
  return Ok();
}

Result<std::unique_ptr<Writer>> Store::OpenWriter(std::string_view ref, const Digest& expected,
                                                  int64_t size) {
  std::filesystem::path dir = IngestDir(ref);
  std::filesystem::path data_path = dir / "data";
  UniqueFd data;
  // RemoveIngest locks the data file before it removes the directory, so a collector can remove
  // it between our open and our lock: once locked, the file must still be the one named
  // data_path, or the lock guards nothing and we start again.
  for (int attempt = 1;; ++attempt) {
    BERTH_RETURN_IF_ERROR(MakeDirectories(dir));
    data.reset(::open(data_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!data) return Fail(ErrnoError(errno, fmt::format("open ingest {}", data_path.string())));
    if (!LockWithinBriefWait(data.get())) {
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("ingest \"{}\" is being written by another writer", ref));
    }
    struct stat locked {};
    struct stat named {};
    if (::fstat(data.get(), &locked) == 0 && ::stat(data_path.c_str(), &named) == 0 &&
        locked.st_dev == named.st_dev && locked.st_ino == named.st_ino) {
      break;
    }
    if (attempt == 3) {
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("ingest \"{}\" was removed while it was being opened, three times; "
                              "a garbage collection may be running, try again",
                              ref));
    }
  }

  // Keep what is on disk only if it belongs to the same blob and is not already too long.
  bool reset = true;
  if (auto recorded = ReadExpected(dir); recorded && recorded->first == expected) {
    struct stat st {};
    if (::fstat(data.get(), &st) == 0 && (size < 0 || st.st_size <= size)) reset = false;
  }
  std::unique_ptr<Writer> writer(
      new Writer(*this, std::string(ref), dir, std::move(data), expected, size));
  if (reset) {
    BERTH_RETURN_IF_ERROR(writer->Truncate());
    BERTH_RETURN_IF_ERROR(WriteFileAtomically(dir / "ref", ref));
    BERTH_RETURN_IF_ERROR(
        WriteFileAtomically(dir / "expected", fmt::format("{} {}", expected, size)));
    return writer;
  }
  // Resume: re-hash the bytes already on disk.
  std::string buffer(kHashChunk, '\0');
  while (true) {
    ssize_t n = ::pread(writer->data_.get(), buffer.data(), buffer.size(), writer->offset_);
    if (n < 0) {
      if (errno == EINTR) continue;
      BERTH_RETURN_IF_ERROR(writer->Truncate());  // unreadable: start over
      break;
    }
    if (n == 0) break;
    writer->hasher_.Update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    writer->offset_ += n;
  }
  if (::lseek(writer->data_.get(), writer->offset_, SEEK_SET) < 0) {
    return Fail(ErrnoError(errno, "seek ingest"));
  }
  return writer;
}

Result<std::vector<IngestInfo>> Store::ListIngests() const {
  std::vector<IngestInfo> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.root / "ingest", ec)) {
    IngestInfo info;
    info.id = entry.path().filename().string();
    Result<std::string> ref = ReadFile(entry.path() / "ref", 4096);
    if (ref) info.ref = *ref;
    if (auto recorded = ReadExpected(entry.path())) {
      info.expected = recorded->first;
      info.expected_size = recorded->second;
    }
    std::error_code size_ec;
    info.offset = static_cast<int64_t>(std::filesystem::file_size(entry.path() / "data", size_ec));
    if (size_ec) info.offset = 0;
    out.push_back(std::move(info));
  }
  if (ec) return Fail(ErrnoError(ec.value(), "list ingests"));
  return out;
}

Result<void> Store::AbortIngest(std::string_view ref) {
  std::filesystem::path dir = IngestDir(ref);
  UniqueFd data(::open((dir / "data").c_str(), O_RDWR | O_CLOEXEC));
  if (!data) {
    if (errno == ENOENT) return Fail(ErrorCode::kNotFound, fmt::format("no ingest \"{}\"", ref));
    return Fail(ErrnoError(errno, fmt::format("open ingest \"{}\"", ref)));
  }
  if (::flock(data.get(), LOCK_EX | LOCK_NB) != 0) {
    return Fail(ErrorCode::kUnavailable, fmt::format("ingest \"{}\" is in use", ref));
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return Fail(ErrnoError(ec.value(), fmt::format("remove ingest \"{}\"", ref)));
  return Ok();
}

Result<void> Store::RemoveIngest(std::string_view id, bool no_writer_starting) {
  if (id.empty() || id == "." || id == ".." || id.find('/') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("\"{}\" is not an ingest id", id));
  }
  const std::filesystem::path dir = options_.root / "ingest" / std::string(id);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Fail(ErrorCode::kNotFound, fmt::format("no ingest {}", id));
    return Fail(ErrnoError(errno, fmt::format("stat ingest {}", dir.string())));
  }
  UniqueFd data(::open((dir / "data").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
  if (data) {
    // A writer holds the lock for as long as it exists (OpenWriter takes it first thing).
    if (::flock(data.get(), LOCK_EX | LOCK_NB) != 0) {
      return Fail(ErrorCode::kUnavailable, fmt::format("ingest {} is in use", id));
    }
  } else if (errno != ENOENT) {
    return Fail(ErrnoError(errno, fmt::format("open ingest {}", dir.string())));
  } else if (!no_writer_starting && std::chrono::system_clock::now() -
                                            std::chrono::system_clock::from_time_t(st.st_mtime) <
                                        std::chrono::minutes(1)) {
    return Fail(ErrorCode::kUnavailable, fmt::format("ingest {} is being created", id));
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return Fail(ErrnoError(ec.value(), fmt::format("remove ingest {}", dir.string())));
  return Ok();
}

Writer::Writer(Store& store, std::string ref, std::filesystem::path dir, UniqueFd data,
               Digest expected, int64_t expected_size)
    : store_(store),
      ref_(std::move(ref)),
      dir_(std::move(dir)),
      data_(std::move(data)),
      expected_(std::move(expected)),
      expected_size_(expected_size),
      hasher_(expected_.algorithm()) {}

Writer::~Writer() = default;  // closing the fd releases the flock; the ingest stays for resume

Result<void> Writer::Write(std::string_view bytes) {
  if (closed_) return Fail(ErrorCode::kFailedPrecondition, "write to a closed content writer");
  if (expected_size_ >= 0 && offset_ + static_cast<int64_t>(bytes.size()) > expected_size_) {
    return Fail(
        ErrorCode::kDataLoss,
        fmt::format("blob {} is longer than its descriptor's {} bytes", expected_, expected_size_));
  }
  if (auto written = WriteAll(data_.get(), bytes); !written) {
    return Fail(std::move(written).error().WithContext(fmt::format("write blob {}", expected_)));
  }
  hasher_.Update(bytes);
  offset_ += static_cast<int64_t>(bytes.size());
  return Ok();
}

Result<void> Writer::Truncate() {
  if (::ftruncate(data_.get(), 0) != 0 || ::lseek(data_.get(), 0, SEEK_SET) < 0) {
    return Fail(ErrnoError(errno, fmt::format("truncate ingest of {}", expected_)));
  }
  hasher_ = Hasher(expected_.algorithm());
  offset_ = 0;
  return Ok();
}

Result<void> Writer::ReadExisting(
    const std::function<Result<void>(std::string_view)>& consume) const {
  return ReadChunks(data_.get(), offset_, consume, fmt::format("ingest of {}", expected_));
}

Result<UniqueFd> Writer::OpenReader() const {
  UniqueFd reader(::open((dir_ / "data").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!reader) return Fail(ErrnoError(errno, fmt::format("open ingest of {}", expected_)));
  return reader;
}

Result<BlobInfo> Writer::Commit() {
  if (closed_) return Fail(ErrorCode::kFailedPrecondition, "commit of a closed content writer");
  closed_ = true;
  auto discard = [&] {
    data_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  };
  if (expected_size_ >= 0 && offset_ != expected_size_) {
    discard();
    return Fail(ErrorCode::kDataLoss, fmt::format("blob {} is {} bytes, its descriptor says {}",
                                                  expected_, offset_, expected_size_));
  }
  Digest actual = hasher_.Finish();
  if (actual != expected_) {
    discard();
    return Fail(ErrorCode::kDataLoss,
                fmt::format("blob digest mismatch: expected {}, got {}", expected_, actual));
  }
  if (store_.options_.durability != Durability::kNone && ::fdatasync(data_.get()) != 0) {
    return Fail(ErrnoError(errno, fmt::format("fsync blob {}", expected_)));
  }
  std::filesystem::path target = store_.BlobPath(expected_);
  if (::rename((dir_ / "data").c_str(), target.c_str()) != 0) {
    int saved = errno;
    discard();
    return Fail(ErrnoError(saved, fmt::format("commit blob {}", expected_)));
  }
  if (store_.options_.durability != Durability::kNone) {
    BERTH_RETURN_IF_ERROR(SyncDirectory(target.parent_path()));
  }
  struct stat st {};
  const int64_t allocated =
      ::fstat(data_.get(), &st) == 0 ? static_cast<int64_t>(st.st_blocks) * 512 : 0;
  discard();
  return BlobInfo{expected_, offset_, allocated};
}

}  // namespace berth::content
