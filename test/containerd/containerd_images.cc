#include "test/containerd/containerd_images.h"

#include <fmt/format.h>
#include <unistd.h>

#include <sstream>
#include <utility>
#include <vector>

#include "berth/base/file_util.h"
#include "testing/run_command.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/registry_client.h"

namespace berth::containerd_test {
namespace {

namespace fs = std::filesystem;

// The applets `busybox --list` names, one per line.
Result<std::vector<std::string>> ListApplets(const fs::path& busybox) {
  BERTH_ASSIGN_OR_RETURN(testing::TempDir scratch, testing::TempDir::Create("busybox-list"));
  BERTH_ASSIGN_OR_RETURN(testing::CommandResult listed,
                         testing::RunCommand({busybox.string(), "--list"}, scratch.path()));
  if (listed.exit_code != 0) {
    return Fail(ErrorCode::kInternal, fmt::format("{} --list exited {}: {}", busybox.string(),
                                                  listed.exit_code, listed.err));
  }
  std::vector<std::string> applets;
  std::istringstream lines(listed.out);
  for (std::string applet; std::getline(lines, applet);) {
    if (!applet.empty() && applet != "busybox") applets.push_back(applet);
  }
  return applets;
}

}  // namespace

Result<imagegen::Image> MakeBusyboxImage(const fs::path& busybox) {
  if (::access(busybox.c_str(), X_OK) != 0) {
    return Fail(ErrorCode::kNotFound,
                busybox.string() + " is missing: install busybox-static (scripts/setup.sh does)");
  }
  BERTH_ASSIGN_OR_RETURN(std::string binary, ReadFile(busybox));
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> applets, ListApplets(busybox));
  imagegen::FileTree base;
  base.AddDirectory("bin").AddFile("bin/busybox", std::move(binary), {.mode = 0755});
  // containerd's applier gives the linked inode the mode of the hard link's own header, so each
  // link carries the binary's mode, as tar writes it.
  for (const std::string& applet : applets) {
    base.AddHardlink("bin/" + applet, "bin/busybox", {.mode = 0755});
  }
  base.AddDirectory("etc").AddDirectory("proc").AddDirectory("dev").AddDirectory("sys");
  base.AddDirectory("tmp", {.mode = 01777});
  imagegen::FileTree data;
  const std::string known = std::string(kKnownFilePath.substr(1));
  data.AddDirectory("etc").AddDirectory("etc/berth").AddFile(known, std::string(kKnownFileContent));
  std::vector<imagegen::Layer> layers;
  for (const imagegen::FileTree* tree : {&base, &data}) {
    BERTH_ASSIGN_OR_RETURN(imagegen::Layer layer, imagegen::BuildLayer(*tree));
    layers.push_back(std::move(layer));
  }
  imagegen::ImageConfig config;
  config.env = {"PATH=/bin"};
  config.cmd = {"/bin/sh"};
  return imagegen::AssembleImage(config, std::move(layers));
}

Result<imagegen::Image> MakePauseImage(const fs::path& pause_binary) {
  BERTH_ASSIGN_OR_RETURN(std::string binary, ReadFile(pause_binary));
  imagegen::FileTree tree;
  tree.AddFile("pause", std::move(binary), {.mode = 0755});
  BERTH_ASSIGN_OR_RETURN(imagegen::Layer layer, imagegen::BuildLayer(tree));
  imagegen::ImageConfig config;
  config.entrypoint = {"/pause"};
  std::vector<imagegen::Layer> layers;
  layers.push_back(std::move(layer));
  return imagegen::AssembleImage(config, std::move(layers));
}

Result<imagegen::PushedImage> PushImage(std::string_view registry_url, std::string_view repository,
                                        std::string_view tag, const imagegen::Image& image) {
  BERTH_ASSIGN_OR_RETURN(auto client,
                         imagegen::RegistryClient::Create({.base_url = std::string(registry_url)}));
  return imagegen::PushImage(*client, repository, tag, image);
}

std::string ImageName(std::string_view repository, std::string_view tag) {
  return fmt::format("{}/{}:{}", kRegistryHost, repository, tag);
}

std::vector<std::string> BlobFetchers(const std::string& log, const Digest& digest) {
  std::vector<std::string> agents;
  std::istringstream lines(log);
  const std::string blob = "/blobs/" + digest.ToString();
  for (std::string line; std::getline(lines, line);) {
    const size_t at = line.find(blob);
    if (line.find("\"GET /v2/") == std::string::npos || at == std::string::npos ||
        (line[at + blob.size()] != ' ' && line[at + blob.size()] != '?')) {
      continue;
    }
    const size_t end = line.rfind('"');
    const size_t start = end == 0 ? std::string::npos : line.rfind('"', end - 1);
    if (start != std::string::npos) agents.push_back(line.substr(start + 1, end - start - 1));
  }
  return agents;
}

}  // namespace berth::containerd_test
