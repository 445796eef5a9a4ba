#include "tools/imagegen/byte_sink.h"

#include <fcntl.h>

#include <cerrno>

#include "berth/base/file_util.h"

namespace berth::imagegen {

Result<void> StringSink::Write(std::string_view data) {
  out_->append(data);
  return Ok();
}

Result<FileSink> FileSink::Create(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Fail(ErrnoError(errno, "create " + path.string()));
  return FileSink(std::move(fd), path);
}

Result<void> FileSink::Write(std::string_view data) {
  if (!fd_) return Fail(ErrorCode::kFailedPrecondition, "write to finished file " + path_.string());
  return WithContext(WriteAll(fd_.get(), data), "write " + path_.string());
}

Result<void> FileSink::Finish() {
  if (fd_ && ::close(fd_.release()) != 0) {
    return Fail(ErrnoError(errno, "close " + path_.string()));
  }
  return Ok();
}

Result<void> HashingSink::Write(std::string_view data) {
  hasher_.Update(data);
  return downstream_.Write(data);
}

}  // namespace berth::imagegen
