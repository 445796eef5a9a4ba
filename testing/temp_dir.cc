#include "testing/temp_dir.h"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>

namespace berth::testing {

Result<TempDir> TempDir::Create(std::string_view prefix) {
  if (prefix.find('/') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "temp dir prefix must not contain '/': \"" + std::string(prefix) + "\"");
  }
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  std::string name = "berth-";
  if (!prefix.empty()) name += std::string(prefix) + "-";
  std::string templ = (base / (name + "XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) {
    return Fail(ErrnoError(errno, "mkdtemp " + templ));
  }
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(templ, ec);
  return TempDir(ec ? std::filesystem::path(templ) : absolute);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

TempDir::~TempDir() { Remove(); }

void TempDir::Remove() {
  if (path_.empty()) return;
  std::error_code ec;
  // Make everything writable first: a test may have left read-only directories behind (as an
  // unpacked layer does), which remove_all cannot descend into otherwise.
  for (auto it = std::filesystem::recursive_directory_iterator(
           path_, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
    }
  }
  ec.clear();
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
  path_.clear();
}

}  // namespace berth::testing
