#include "berth/registry/pull_credentials.h"

#include <fmt/format.h>

#include <utility>

#include "berth/reference/reference.h"

namespace berth::registry {

PullCredentials::Hold::Hold(Hold&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), id_(other.id_) {}

PullCredentials::Hold& PullCredentials::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

void PullCredentials::Hold::Release() {
  if (owner_ == nullptr) return;
  std::exchange(owner_, nullptr)->Drop(id_);
}

Result<std::string> PullCredentials::ImageKey(std::string_view image) {
  BERTH_ASSIGN_OR_RETURN(Reference reference, Reference::Parse(image));
  return reference.ToString();
}

Result<PullCredentials::Hold> PullCredentials::Register(std::string_view image,
                                                        CriAuthConfig auth) {
  BERTH_ASSIGN_OR_RETURN(Reference reference, Reference::Parse(image));
  std::lock_guard lock(mutex_);
  const uint64_t id = next_id_++;
  entries_.emplace(id, Entry{.image_key = reference.ToString(),
                             .host = reference.domain(),
                             .auth = std::move(auth)});
  return Hold(this, id);
}

void PullCredentials::Drop(uint64_t id) {
  std::lock_guard lock(mutex_);
  entries_.erase(id);
}

std::optional<CriAuthConfig> PullCredentials::ForImage(std::string_view image) const {
  Result<std::string> key = ImageKey(image);
  if (!key) return std::nullopt;
  std::lock_guard lock(mutex_);
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (it->second.image_key == *key) return it->second.auth;
  }
  return std::nullopt;
}

std::optional<CriAuthConfig> PullCredentials::ForHost(std::string_view host) const {
  std::lock_guard lock(mutex_);
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (it->second.host == host) return it->second.auth;
  }
  return std::nullopt;
}

size_t PullCredentials::HoldersOf(std::string_view image) const {
  Result<std::string> key = ImageKey(image);
  if (!key) return 0;
  std::lock_guard lock(mutex_);
  size_t holders = 0;
  for (const auto& [id, entry] : entries_) holders += entry.image_key == *key ? 1 : 0;
  return holders;
}

size_t PullCredentials::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::string PullCredentials::ToString() const {
  std::map<std::pair<std::string, std::string>, size_t> holders;  // (image, host) → count
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, entry] : entries_) ++holders[{entry.image_key, entry.host}];
  }
  if (holders.empty()) return "none";
  std::string text;
  for (const auto& [key, count] : holders) {
    if (!text.empty()) text += ", ";
    text += fmt::format("{} host={} holders={}", key.first, key.second, count);
  }
  return text;
}

}  // namespace berth::registry
