// berth mount REF DIR / berth unmount DIR: an image's root filesystem on a directory, as a new
// active snapshot on top of the image's top chain ID (a read-only view with --read-only).
//
// The image service looks the image up, with the rules `berth inspect` uses (see
// service/image_service.h: the text as recorded, as an image ID, as a normalized reference, as a
// unique image ID prefix), among every image of the root, whichever snapshotter it was pulled
// into. What `berth unmount` must undo is kept in a marker file, <root>/mounts/<sha256(DIR)>.json:
// {"directory", "key", "snapshotter", "image_id", "reference"}, written atomically after the
// mount succeeded and removed after the snapshot was. Both take the root's lock for their
// duration, so they refuse while a berthd runs on the root.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "berth/base/file_util.h"
#include "berth/service/image_service.h"
#include "berth/snapshot/mount.h"
#include "berth/stack/image_stack.h"
#include "berth/stack/root_lock.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {

namespace fs = std::filesystem;

namespace {

using stack::OpenSnapshotter;

struct MountFlags {
  std::string reference;
  std::string directory;
  bool read_only = false;
};

// Asks the image service of the root for the image `text` names. REQUIRES: the root's lock is
// held.
Result<service::Image> FindImage(const config::Config& config, const std::string& text) {
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<stack::ImageStack> stack,
                         stack::ImageStack::Open(config, {.recover = false}));
  if (std::optional<service::Image> image = stack->images().Find(text)) return *image;
  return Fail(ErrorCode::kNotFound,
              fmt::format("no image \"{}\" has been pulled into this root; run `berth pull {}` "
                          "first",
                          text, text));
}

Result<config::SnapshotterKind> KindOf(std::string_view name) {
  for (config::SnapshotterKind kind : config::kSnapshotterKinds) {
    if (name == config::SnapshotterName(kind)) return kind;
  }
  return Fail(ErrorCode::kInvalidArgument, fmt::format("unknown snapshotter \"{}\"", name));
}

// The name the marker records for the image: a repo tag, else a repo digest, else its ID.
std::string DisplayName(const service::Image& image) {
  if (!image.repo_tags.empty()) return image.repo_tags.front();
  if (!image.repo_digests.empty()) return image.repo_digests.front();
  return image.id.ToString();
}

fs::path MarkerPath(const config::Config& config, const fs::path& directory) {
  return fs::absolute(config.root) / "mounts" /
         (Digest::Sha256Of(directory.string()).encoded() + ".json");
}

Result<fs::path> CanonicalDirectory(const std::string& text) {
  std::error_code error;
  fs::path directory = fs::canonical(text, error);
  if (error) return Fail(ErrnoError(error.value(), fmt::format("resolve {}", text)));
  if (!fs::is_directory(directory)) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("{} is not a directory", text));
  }
  return directory;
}

Result<std::string> MountImage(const MountFlags& flags) {
  BERTH_ASSIGN_OR_RETURN(config::Config config, LoadConfig());
  BERTH_ASSIGN_OR_RETURN(fs::path directory, CanonicalDirectory(flags.directory));
  const fs::path marker = MarkerPath(config, directory);
  if (fs::exists(marker)) {
    return Fail(ErrorCode::kAlreadyExists,
                fmt::format("{} already has a berth mount; run `berth unmount {}` first",
                            directory.string(), directory.string()));
  }
  // Not beside a berthd (or another berth command) working on the same root.
  BERTH_ASSIGN_OR_RETURN(stack::RootLock lock, stack::RootLock::Acquire(config.root, "berth"));
  BERTH_ASSIGN_OR_RETURN(service::Image image, FindImage(config, flags.reference));
  BERTH_ASSIGN_OR_RETURN(config::SnapshotterKind kind, KindOf(image.snapshotter));
  BERTH_ASSIGN_OR_RETURN(auto snapshotter, OpenSnapshotter(config, kind));

  std::random_device random;
  const std::string key = fmt::format("mount-{:08x}{:08x}", random(), random());
  BERTH_ASSIGN_OR_RETURN(std::vector<snapshot::Mount> mounts,
                         flags.read_only ? snapshotter->View(key, image.chain_id, {})
                                         : snapshotter->Prepare(key, image.chain_id, {}));
  if (auto mounted = snapshot::MountAll(mounts, directory); !mounted) {
    (void)snapshotter->Remove(key);
    return Fail(std::move(mounted).error());
  }
  nlohmann::json record = {{"directory", directory.string()},
                           {"key", key},
                           {"snapshotter", image.snapshotter},
                           {"image_id", image.id.ToString()},
                           {"reference", DisplayName(image)}};
  Result<void> written = MakeDirectories(marker.parent_path());
  if (written) written = WriteFileAtomically(marker, record.dump(2) + "\n");
  if (!written) {
    (void)snapshot::UnmountAll(directory);
    (void)snapshotter->Remove(key);
    return Fail(std::move(written).error());
  }
  return key;
}

Result<void> UnmountImage(const std::string& text) {
  BERTH_ASSIGN_OR_RETURN(config::Config config, LoadConfig());
  BERTH_ASSIGN_OR_RETURN(fs::path directory, CanonicalDirectory(text));
  const fs::path marker = MarkerPath(config, directory);
  Result<std::string> bytes = ReadFile(marker, 1 << 20);
  if (!bytes) {
    if (bytes.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound,
                  fmt::format("{} was not mounted by `berth mount` with root {}",
                              directory.string(), config.root.string()));
    }
    return Fail(std::move(bytes).error());
  }
  nlohmann::json record = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (record.is_discarded() || !record.is_object() || !record["key"].is_string() ||
      !record["snapshotter"].is_string()) {
    return Fail(ErrorCode::kDataLoss, fmt::format("mount marker {} is damaged", marker.string()));
  }
  BERTH_ASSIGN_OR_RETURN(config::SnapshotterKind kind,
                         KindOf(record["snapshotter"].get<std::string>()));
  BERTH_ASSIGN_OR_RETURN(stack::RootLock lock, stack::RootLock::Acquire(config.root, "berth"));
  BERTH_RETURN_IF_ERROR(snapshot::UnmountAll(directory));
  BERTH_ASSIGN_OR_RETURN(auto snapshotter, OpenSnapshotter(config, kind));
  Result<void> removed = snapshotter->Remove(record["key"].get<std::string>());
  if (!removed && removed.error().code() != ErrorCode::kNotFound) return removed;
  std::error_code error;
  fs::remove(marker, error);
  if (error) return Fail(ErrnoError(error.value(), fmt::format("remove {}", marker.string())));
  return Ok();
}

}  // namespace

void AddMountCommands(CLI::App& app, int* status) {
  auto flags = std::make_shared<MountFlags>();
  CLI::App* mount = app.add_subcommand(
      "mount", "Mount an image's root filesystem (a new snapshot on top of the image) at DIR");
  mount->add_option("REF", flags->reference, "Image reference or ID, as pulled")->required();
  mount->add_option("DIR", flags->directory, "An existing directory")->required();
  mount->add_flag("--read-only", flags->read_only, "Mount a read-only view instead");
  mount->callback([=] {
    Result<std::string> key = MountImage(*flags);
    *status = key ? 0 : PrintError(key.error());
    if (key) std::cout << *key << "\n";
  });

  auto directory = std::make_shared<std::string>();
  CLI::App* unmount = app.add_subcommand(
      "unmount", "Unmount what `berth mount` mounted at DIR and remove its snapshot");
  unmount->add_option("DIR", *directory, "The directory given to berth mount")->required();
  unmount->callback([=] {
    Result<void> done = UnmountImage(*directory);
    *status = done ? 0 : PrintError(done.error());
  });
}

}  // namespace berth::cli
