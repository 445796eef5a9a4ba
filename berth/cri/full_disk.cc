#include "berth/cri/full_disk.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "berth/base/byte_size.h"

namespace berth::cri {
namespace {

bool SaysDiskFull(std::string_view message) {
  for (int errnum : {ENOSPC, EDQUOT}) {
    if (message.find(std::strerror(errnum)) != std::string_view::npos) return true;
  }
  return message.find("database or disk is full") != std::string_view::npos;
}

}  // namespace

Error ExplainFullDisk(const Error& error, std::span<const std::filesystem::path> directories) {
  if (error.code() != ErrorCode::kResourceExhausted || !SaysDiskFull(error.ToString())) {
    return error;
  }
  // The fullest filesystem among berth's directories is the one that ran out.
  std::optional<std::filesystem::path> fullest;
  uint64_t fullest_free = 0;
  uint64_t fullest_total = 0;
  for (const std::filesystem::path& directory : directories) {
    struct statvfs st {};
    if (directory.empty() || ::statvfs(directory.c_str(), &st) != 0) continue;
    uint64_t free = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    if (!fullest || free < fullest_free) {
      fullest = directory;
      fullest_free = free;
      fullest_total = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
    }
  }
  std::string where =
      fullest ? fmt::format("the filesystem holding {} ({} free of {})", fullest->string(),
                            FormatByteSize(fullest_free), FormatByteSize(fullest_total))
              : std::string("the filesystem holding berth's root");
  return Error(error.code(),
               fmt::format("{}; {} is full: free space there (berth rmi removes images no "
                           "longer needed) or move berth's root to a larger filesystem, then "
                           "pull again",
                           error.ToString(), where));
}

}  // namespace berth::cri
