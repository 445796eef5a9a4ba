// berth images / inspect / rmi / fsinfo: the CRI ImageService's ListImages, ImageStatus,
// RemoveImage and ImageFsInfo, through berthd when it answers, else on the root in this process
// (see backend.h). Tables by default, JSON (--json) for scripts; inspect prints JSON only.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/berth/backend.h"
#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

// Keys in insertion order: the fields read as CRI lists them.
using json = nlohmann::ordered_json;

// An image as ImageStatus reports it, in CRI's JSON field names.
json ImageJson(const service::Image& image) {
  json out = {{"id", image.id.ToString()},
              {"repoTags", image.repo_tags},
              {"repoDigests", image.repo_digests},
              {"size", image.size},
              {"uid", image.user.uid ? json(*image.user.uid) : json(nullptr)},
              {"username", image.user.username},
              {"spec", {{"image", image.id.ToString()}}},
              {"pinned", image.pinned}};
  return out;
}

// "host/repo@sha256:0123456789ab": the digest cut to 12 hex digits, like the image ID column.
std::string ShortDigest(const std::string& repo_digest) {
  size_t at = repo_digest.find('@');
  if (at == std::string::npos) return repo_digest;
  size_t colon = repo_digest.find(':', at);
  if (colon == std::string::npos) return repo_digest;
  return repo_digest.substr(0, std::min(repo_digest.size(), colon + 1 + 12));
}

std::string JoinOrNone(const std::vector<std::string>& items) {
  if (items.empty()) return "<none>";
  std::string joined;
  for (const std::string& item : items) joined += (joined.empty() ? "" : ",") + item;
  return joined;
}

// Prints rows as left-aligned columns two spaces apart; the first row is the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += i + 1 == row.size() ? row[i] : fmt::format("{:<{}}  ", row[i], widths[i]);
    }
    std::cout << line << "\n";
  }
}

Error NoSuchImage(std::string_view ref) {
  return Error(ErrorCode::kNotFound, fmt::format("no such image: {}", ref));
}

struct ListFlags {
  std::string filter;
  bool json = false;
  bool names = false;
};

int Images(const ListFlags& flags) {
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend();
  if (!backend) return PrintError(backend.error());
  Result<std::vector<service::Image>> images = (*backend)->List(flags.filter);
  if (!images) return PrintError(images.error());
  if (flags.json) {
    json out = json::array();
    for (const service::Image& image : *images) out.push_back(ImageJson(image));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (flags.names) {
    for (const service::Image& image : *images) {
      if (image.repo_tags.empty()) std::cout << image.id.ToString() << "\n";
      for (const std::string& tag : image.repo_tags) std::cout << tag << "\n";
    }
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"IMAGE ID", "REPO TAGS", "REPO DIGESTS", "SIZE"}};
  for (const service::Image& image : *images) {
    std::vector<std::string> digests;
    for (const std::string& digest : image.repo_digests) digests.push_back(ShortDigest(digest));
    rows.push_back({image.id.encoded().substr(0, 12), JoinOrNone(image.repo_tags),
                    JoinOrNone(digests), HumanSize(image.size)});
  }
  PrintTable(rows);
  return 0;
}

int Inspect(const std::string& reference) {
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend();
  if (!backend) return PrintError(backend.error());
  Result<std::optional<service::Image>> image = (*backend)->Status(reference);
  if (!image) return PrintError(image.error());
  if (!*image) return PrintError(NoSuchImage(reference));
  json info = json::parse(service::VerboseInfo(**image), nullptr, /*allow_exceptions=*/false);
  json out = {{"status", ImageJson(**image)},
              {"info", info.is_discarded() ? json::object() : info}};
  std::cout << out.dump(2) << "\n";
  return 0;
}

struct RemoveFlags {
  std::vector<std::string> references;
  bool force = false;
};

int Remove(const RemoveFlags& flags) {
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend();
  if (!backend) return PrintError(backend.error());
  const service::RemovePinned pinned =
      flags.force ? service::RemovePinned::kAllow : service::RemovePinned::kRefuse;
  int status = 0;
  for (const std::string& reference : flags.references) {
    // CRI's RemoveImage succeeds for an unknown image; a person asking wants to hear about it.
    Result<std::optional<service::Image>> image = (*backend)->Status(reference);
    if (!image) {
      status = PrintError(image.error());
      continue;
    }
    if (!*image) {
      status = PrintError(NoSuchImage(reference));
      continue;
    }
    Result<void> removed = (*backend)->Remove(reference, pinned);
    if (!removed) {
      Error error = removed.error();
      if (error.code() == ErrorCode::kFailedPrecondition && !flags.force) {
        error = Error(error.code(), error.ToString() + "; use --force to remove it anyway");
      }
      status = PrintError(error);
      continue;
    }
    std::cout << "Deleted: " << (*image)->id.ToString() << "\n";
  }
  return status;
}

int FsInfo(bool as_json) {
  Result<std::unique_ptr<ImageBackend>> backend = OpenBackend();
  if (!backend) return PrintError(backend.error());
  Result<std::vector<service::FilesystemUsage>> filesystems = (*backend)->FsInfo();
  if (!filesystems) return PrintError(filesystems.error());
  if (as_json) {
    json out = json::array();
    for (const service::FilesystemUsage& usage : *filesystems) {
      out.push_back({{"timestamp", std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       usage.timestamp.time_since_epoch())
                                       .count()},
                     {"mountpoint", usage.mountpoint},
                     {"usedBytes", usage.used_bytes},
                     {"inodesUsed", usage.inodes_used}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"MOUNTPOINT", "USED", "INODES"}};
  for (const service::FilesystemUsage& usage : *filesystems) {
    rows.push_back({usage.mountpoint, HumanSize(static_cast<int64_t>(usage.used_bytes)),
                    std::to_string(usage.inodes_used)});
  }
  PrintTable(rows);
  return 0;
}

}  // namespace

void AddImageCommands(CLI::App& app, int* status) {
  auto list = std::make_shared<ListFlags>();
  CLI::App* images = app.add_subcommand("images", "List images (CRI ListImages)");
  images->add_option("FILTER", list->filter, "Only the image this name, ID or ID prefix names");
  images->add_flag("--json", list->json, "Print JSON instead of a table");
  images
      ->add_flag("--names", list->names,
                 "Print each image's tags (its ID when it has none), one per line")
      ->excludes("--json");
  images->callback([=] { *status = Images(*list); });

  auto reference = std::make_shared<std::string>();
  CLI::App* inspect =
      app.add_subcommand("inspect", "Print an image's status and verbose info as JSON");
  inspect->add_option("REF", *reference, "Image name, ID or ID prefix")->required();
  inspect->add_flag("--json")->description("JSON output (the default and only format)");
  inspect->callback([=] { *status = Inspect(*reference); });

  auto remove = std::make_shared<RemoveFlags>();
  CLI::App* rmi = app.add_subcommand("rmi",
                                     "Remove images: every name of each, and its data "
                                     "no other image uses");
  rmi->add_option("REF", remove->references, "Image names, IDs or ID prefixes")->required();
  rmi->add_flag("-f,--force", remove->force, "Remove pinned images too");
  rmi->callback([=] { *status = Remove(*remove); });

  auto as_json = std::make_shared<bool>(false);
  CLI::App* fsinfo =
      app.add_subcommand("fsinfo", "Filesystems holding image data and berth's use of them");
  fsinfo->add_flag("--json", *as_json, "Print JSON instead of a table");
  fsinfo->callback([=] { *status = FsInfo(*as_json); });
}

}  // namespace berth::cli
