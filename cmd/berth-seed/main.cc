// berth-seed: a local registry with a generated image in it, for the README's demo and for
// trying berth by hand without the internet.
//
// Starts a real Distribution registry (Debian's docker-registry) on a free loopback port,
// pushes a generated image (two layers, gzip and zstd), reads it back and verifies every digest
// (the registry round trip), writes the image's reference to --ready-file, and keeps the
// registry running until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "berth/base/file_util.h"
#include "berth/imagegen/image.h"
#include "berth/imagegen/push.h"
#include "berth/imagegen/registry_client.h"
#include "berth/testing/test_registry.h"

namespace {

int Die(const berth::Error& error) {
  std::fprintf(stderr, "berth-seed: error: %s\n", error.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth-seed: a loopback registry seeded with a generated image"};
  std::string repository = "demo/hello";
  std::string tag = "v1";
  std::string ready_file;
  app.add_option("--repo", repository, "Repository to push to");
  app.add_option("--tag", tag, "Tag to push");
  app.add_option("--ready-file", ready_file, "Write the pushed image's reference here when ready");
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
  auto image = berth::imagegen::MakeDemoImage();
  if (!image) return Die(image.error());
  auto client = berth::imagegen::RegistryClient::Create({.base_url = (*registry)->url()});
  if (!client) return Die(client.error());
  auto pushed = berth::imagegen::PushImage(**client, repository, tag, *image);
  if (!pushed) return Die(pushed.error());
  if (auto verified = berth::imagegen::VerifyImage(**client, repository, tag, *image); !verified) {
    return Die(verified.error());
  }
  std::string reference = (*registry)->host() + "/" + repository + ":" + tag;
  std::printf("berth-seed: registry %s is up\n", (*registry)->url().c_str());
  std::printf("berth-seed: pushed %s (%d blobs), manifest %s\n", reference.c_str(),
              pushed->blobs_uploaded, pushed->manifest.digest.ToString().c_str());
  std::printf("berth-seed: round trip verified: manifest, config and %zu layers read back with "
              "matching digests\n",
              image->layers.size());
  std::fflush(stdout);
  if (!ready_file.empty()) {
    if (auto written = berth::WriteFileAtomically(ready_file, reference + "\n"); !written) {
      return Die(written.error());
    }
  }
  int received = 0;
  sigwait(&signals, &received);
  (*registry)->Stop();
  return 0;
}
