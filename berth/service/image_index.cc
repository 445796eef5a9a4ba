#include "berth/service/image_index.h"

#include <algorithm>
#include <mutex>
#include <set>

namespace berth::service {

void ImageIndex::AddName(ImageEntry& entry, const std::string& name) {
  auto& list = name.find('@') != std::string::npos ? entry.repo_digests : entry.repo_tags;
  auto at = std::lower_bound(list.begin(), list.end(), name);
  if (at == list.end() || *at != name) list.insert(at, name);
}

void ImageIndex::DropName(ImageEntry& entry, const std::string& name) {
  std::erase(entry.repo_tags, name);
  std::erase(entry.repo_digests, name);
}

void ImageIndex::Put(const ImageEntry& entry, const std::vector<std::string>& names) {
  std::unique_lock lock(mutex_);
  auto [it, inserted] = images_.try_emplace(entry.id, entry);
  ImageEntry& stored = it->second;
  if (!inserted) {
    std::vector<std::string> tags = std::move(stored.repo_tags);
    std::vector<std::string> digests = std::move(stored.repo_digests);
    stored = entry;
    stored.repo_tags = std::move(tags);
    stored.repo_digests = std::move(digests);
  } else {
    stored.repo_tags.clear();
    stored.repo_digests.clear();
  }
  for (const std::string& name : names) {
    auto previous = names_.find(name);
    if (previous != names_.end() && previous->second != entry.id) {
      auto old = images_.find(previous->second);
      // The old image stays (its ID record still names it), one name shorter.
      if (old != images_.end()) DropName(old->second, name);
    }
    names_.insert_or_assign(name, entry.id);
    AddName(stored, name);
  }
}

std::optional<ImageEntry> ImageIndex::Remove(const Digest& id) {
  std::unique_lock lock(mutex_);
  auto it = images_.find(id);
  if (it == images_.end()) return std::nullopt;
  ImageEntry entry = std::move(it->second);
  images_.erase(it);
  for (const auto* list : {&entry.repo_tags, &entry.repo_digests}) {
    for (const std::string& name : *list) names_.erase(name);
  }
  return entry;
}

std::optional<ImageEntry> ImageIndex::FindByName(std::string_view name) const {
  std::shared_lock lock(mutex_);
  auto it = names_.find(name);
  if (it == names_.end()) return std::nullopt;
  auto image = images_.find(it->second);
  if (image == images_.end()) return std::nullopt;
  return image->second;
}

std::optional<ImageEntry> ImageIndex::FindById(const Digest& id) const {
  std::shared_lock lock(mutex_);
  auto it = images_.find(id);
  if (it == images_.end()) return std::nullopt;
  return it->second;
}

std::optional<ImageEntry> ImageIndex::FindByIdPrefix(std::string_view prefix) const {
  if (prefix.empty()) return std::nullopt;
  std::shared_lock lock(mutex_);
  const ImageEntry* found = nullptr;
  for (const auto& [id, entry] : images_) {
    if (id.encoded().starts_with(prefix)) {
      if (found != nullptr) return std::nullopt;  // ambiguous
      found = &entry;
    }
  }
  if (found == nullptr) return std::nullopt;
  return *found;
}

std::vector<ImageEntry> ImageIndex::FindByRepository(std::string_view repository) const {
  if (repository.empty()) return {};
  std::shared_lock lock(mutex_);
  // Names are sorted, so those starting with `repository` are contiguous.
  std::set<Digest> ids;
  for (auto it = names_.lower_bound(repository);
       it != names_.end() && std::string_view(it->first).starts_with(repository); ++it) {
    std::string_view rest = std::string_view(it->first).substr(repository.size());
    // "<repository>@<digest>" or "<repository>:<tag>" (a tag has no '/'; a longer repository
    // such as "<repository>/sub" or "<repository>-extra" is another one).
    const bool digest = rest.starts_with('@');
    const bool tag = rest.starts_with(':') && rest.find('/') == std::string_view::npos;
    if (digest || tag) ids.insert(it->second);
  }
  std::vector<ImageEntry> entries;
  for (const Digest& id : ids) {
    if (auto image = images_.find(id); image != images_.end()) entries.push_back(image->second);
  }
  return entries;
}

std::vector<ImageEntry> ImageIndex::List() const {
  std::shared_lock lock(mutex_);
  std::vector<ImageEntry> entries;
  entries.reserve(images_.size());
  for (const auto& [id, entry] : images_) entries.push_back(entry);
  return entries;
}

}  // namespace berth::service
