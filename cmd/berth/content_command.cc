#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <vector>

#include "cmd/berth/commands.h"
#include "cmd/berth/common.h"

namespace berth::cli {
namespace {

int ContentList() {
  Result<config::Config> config = LoadConfig();
  if (!config) return PrintError(config.error());
  Result<std::unique_ptr<content::Store>> store = OpenContentStore(*config);
  if (!store) return PrintError(store.error());
  std::vector<content::BlobInfo> blobs;
  if (auto walked = (*store)->Walk([&](const content::BlobInfo& info) { blobs.push_back(info); });
      !walked) {
    return PrintError(walked.error());
  }
  std::sort(blobs.begin(), blobs.end(),
            [](const auto& a, const auto& b) { return a.digest < b.digest; });
  std::cout << fmt::format("{:<71}  {:>12}  {:>10}\n", "DIGEST", "BYTES", "SIZE");
  int64_t total = 0;
  for (const content::BlobInfo& blob : blobs) {
    std::cout << fmt::format("{:<71}  {:>12}  {:>10}\n", blob.digest.ToString(), blob.size,
                             HumanSize(blob.size));
    total += blob.size;
  }
  std::cout << fmt::format("{} blobs, {}\n", blobs.size(), HumanSize(total));
  return 0;
}

}  // namespace

void AddContentCommand(CLI::App& app, int* status) {
  CLI::App* content = app.add_subcommand("content", "Inspect the content store");
  content->require_subcommand(1);
  content->add_subcommand("ls", "List blobs with their sizes")->callback([=] {
    *status = ContentList();
  });
}

}  // namespace berth::cli
