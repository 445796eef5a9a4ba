// berth-seed: a local registry with a generated image in it, for the README's demo, for
// benchmarks, and for trying berth by hand without the internet.
//
// Starts a real Distribution registry (Debian's docker-registry) on a free loopback port,
// pushes a generated image, reads it back and verifies every digest (the registry round trip),
// writes the image's reference to --ready-file, and keeps the registry running until SIGINT or
// SIGTERM.
//
// The image is the small demo image (two layers, gzip and zstd), or, with --layer-dir (repeat
// it), one layer per directory of this machine, streamed to blob files under --work-dir and
// streamed to the registry: for benchmarks with realistic content. With --index-platform
// (repeat it), the tag names an OCI index instead: that image as linux/amd64 plus, for each
// platform given, a small image built for it — a multi-platform image whose other platforms a
// puller must skip.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "berth/base/file_util.h"
#include "testing/test_registry.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/image.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/push.h"
#include "tools/imagegen/registry_client.h"

namespace {

int Die(const berth::Error& error) {
  std::fprintf(stderr, "berth-seed: error: %s\n", error.ToString().c_str());
  return 1;
}

// One layer per directory, each placed at its own path in the image ("/usr/lib/python3" stays
// there), built to a blob file without holding it in memory.
berth::Result<berth::imagegen::Image> BuildFromDirectories(const std::vector<std::string>& dirs,
                                                           const std::string& compression_name,
                                                           const std::string& work_dir) {
  using namespace berth::imagegen;
  Compression compression = Compression::kGzip;
  if (compression_name == "zstd") {
    compression = Compression::kZstd;
  } else if (compression_name == "none") {
    compression = Compression::kNone;
  } else if (compression_name != "gzip") {
    return berth::Fail(berth::ErrorCode::kInvalidArgument,
                       "--compression must be gzip, zstd or none");
  }
  std::vector<Layer> layers;
  for (size_t i = 0; i < dirs.size(); ++i) {
    std::string prefix = std::filesystem::path(dirs[i]).relative_path().string() + "/";
    DirectoryTree tree(dirs[i], {.path_prefix = prefix,
                                 .uid = 0,
                                 .gid = 0,
                                 .mtime_seconds = 0,
                                 .unreadable = UnreadablePolicy::kSkip});
    std::filesystem::path blob =
        std::filesystem::path(work_dir) / ("berth-seed-layer-" + std::to_string(i));
    BERTH_ASSIGN_OR_RETURN(Layer layer, BuildLayerFile(tree, blob, {.compression = compression}));
    std::printf("berth-seed: layer %zu from %s: %llu bytes compressed, %llu uncompressed\n", i,
                dirs[i].c_str(), static_cast<unsigned long long>(layer.blob.size),
                static_cast<unsigned long long>(layer.uncompressed_size));
    layers.push_back(std::move(layer));
  }
  return AssembleImage(ImageConfig{}, std::move(layers));
}

// "os/arch[/variant]", as `--platform` flags write it.
berth::Result<berth::imagegen::Platform> ParsePlatform(const std::string& text) {
  size_t first = text.find('/');
  size_t second = first == std::string::npos ? first : text.find('/', first + 1);
  if (first == std::string::npos || first == 0 || first + 1 == text.size() ||
      second + 1 == text.size()) {
    return berth::Fail(berth::ErrorCode::kInvalidArgument,
                       "--index-platform \"" + text + "\" is not os/arch[/variant]");
  }
  berth::imagegen::Platform platform;
  platform.os = text.substr(0, first);
  platform.architecture =
      text.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
  if (second != std::string::npos) platform.variant = text.substr(second + 1);
  return platform;
}

// The index of --index-platform: `image` for linux/amd64 first, then a demo image per platform.
berth::Result<berth::imagegen::ImageIndex> IndexWithPlatforms(
    const berth::imagegen::Image& image, const std::vector<std::string>& platforms) {
  std::vector<berth::imagegen::Image> images{image};
  for (const std::string& text : platforms) {
    BERTH_ASSIGN_OR_RETURN(berth::imagegen::Platform platform, ParsePlatform(text));
    BERTH_ASSIGN_OR_RETURN(
        berth::imagegen::Image other,
        berth::imagegen::MakeDemoImage(berth::imagegen::ManifestFormat::kOci, platform));
    images.push_back(std::move(other));
  }
  return berth::imagegen::AssembleIndex(std::move(images));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth-seed: a loopback registry seeded with a generated image"};
  std::string repository = "demo/hello";
  std::string tag = "v1";
  std::string ready_file;
  std::vector<std::string> layer_dirs;
  std::string compression = "gzip";
  std::string work_dir = "/var/tmp";
  app.add_option("--layer-dir", layer_dirs, "Build one layer from this directory (repeatable)");
  app.add_option("--compression", compression, "Layer compression for --layer-dir: gzip|zstd|none");
  app.add_option("--work-dir", work_dir, "Where --layer-dir blobs are built");
  app.add_option("--repo", repository, "Repository to push to");
  app.add_option("--tag", tag, "Tag to push");
  app.add_option("--ready-file", ready_file, "Write the pushed image's reference here when ready");
  std::vector<std::string> index_platforms;
  app.add_option("--index-platform", index_platforms,
                 "Push an index: the image as linux/amd64 and a small image for this "
                 "os/arch[/variant] (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Block the stop signals before any thread starts, then wait for them at the end.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto registry = berth::testing::TestRegistry::Start({.log_level = "warn"});
  if (!registry) return Die(registry.error());
  berth::Result<berth::imagegen::Image> image =
      layer_dirs.empty() ? berth::imagegen::MakeDemoImage()
                         : BuildFromDirectories(layer_dirs, compression, work_dir);
  if (!image) return Die(image.error());
  auto client = berth::imagegen::RegistryClient::Create({.base_url = (*registry)->url()});
  if (!client) return Die(client.error());
  // Pushes what the tag names (the image, or the index over it) and reads it back.
  auto push_and_verify = [&](const auto& what) -> berth::Result<berth::imagegen::PushedImage> {
    BERTH_ASSIGN_OR_RETURN(berth::imagegen::PushedImage pushed,
                           berth::imagegen::PushImage(**client, repository, tag, what));
    BERTH_RETURN_IF_ERROR(berth::imagegen::VerifyImage(**client, repository, tag, what));
    return pushed;
  };
  berth::Result<berth::imagegen::PushedImage> pushed = [&] {
    if (index_platforms.empty()) return push_and_verify(*image);
    auto index = IndexWithPlatforms(*image, index_platforms);
    if (!index) return berth::Result<berth::imagegen::PushedImage>(berth::Fail(index.error()));
    return push_and_verify(*index);
  }();
  if (!pushed) return Die(pushed.error());
  std::string reference = (*registry)->host() + "/" + repository + ":" + tag;
  std::printf("berth-seed: registry %s is up\n", (*registry)->url().c_str());
  std::printf("berth-seed: pushed %s (%d blobs), %s %s\n", reference.c_str(),
              pushed->blobs_uploaded, index_platforms.empty() ? "manifest" : "index",
              pushed->manifest.digest.ToString().c_str());
  std::printf(
      "berth-seed: round trip verified: %s, config and %zu layers read back with "
      "matching digests\n",
      index_platforms.empty() ? "manifest" : "index, manifests", image->layers.size());
  std::fflush(stdout);
  if (!ready_file.empty()) {
    if (auto written = berth::WriteFileAtomically(ready_file, reference + "\n"); !written) {
      return Die(written.error());
    }
  }
  int received = 0;
  sigwait(&signals, &received);
  (*registry)->Stop();
  for (const berth::imagegen::Layer& layer : image->layers) {
    if (layer.on_disk()) std::filesystem::remove(layer.file);
  }
  return 0;
}
