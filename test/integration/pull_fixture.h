// File: test/integration/pull_fixture.h
//
// PullFixture is the GoogleTest fixture the pull end-to-end tests share (pull_test,
// schema1_test, watchdog_test, unpack_test): a content store on a fresh temp dir and a real curl
// transport, and Pullers over them. Tests bring their own registries and servers.
//
//   class MyPullTest : public PullFixture {};
//   TEST_F(MyPullTest, Pulls) {
//     Result<PulledImage> pulled = Pull(registry->host() + "/demo:v1");
//     ...store_->Info(digest)...
//   }
//
// A test that overrides SetUp calls PullFixture::SetUp() (and may GTEST_SKIP before it). Errors
// of Pull() are noted with testing/secret_sentinel.h's NoteProductOutput, which the credential
// hygiene listener (test/hygiene, linked into every integration test) checks.
//
// Thread safety: like any fixture, used from the test's thread; a Puller from MakePuller() may
// pull from several threads (see berth/pull/puller.h).
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/pull/download_scheduler.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "berth/registry/observer.h"
#include "testing/temp_dir.h"
#include "tools/imagegen/image.h"

namespace berth::pull {

// Pull options that select the linux/amd64 image of an index.
PullOptions Amd64();

// Incompressible bytes, the same for the same seed (layers that stay as large as they are).
std::string IncompressibleBytes(size_t size, uint32_t seed);

// A linux/amd64 OCI image of three gzip layers, each one file of `layer_bytes` incompressible
// bytes (seeds 1, 2, 3). Failures are test failures (an empty image then).
imagegen::Image ThreeLayerImage(size_t layer_bytes);

// The log lines the process writes from the first Get() on, for the whole test binary (a sink
// added to berth's logger), so that a test can look for the lines it caused: note
// Text().size() before, read Text().substr(that) after. Thread-safe.
class CapturedLog {
 public:
  static CapturedLog& Get();
  std::string Text();

 private:
  CapturedLog();
  std::mutex mutex_;
  std::ostringstream stream_;
};

// What a registry client reports about blob sources and peers, as berthd's metrics count it:
// the blob bytes from peers and from registries, and each peer given up on ("<peer> <reason>").
// Thread-safe (pulls report from their download threads).
class PeerReports final : public registry::RegistryObserver {
 public:
  void RequestDone(std::string_view, registry::FetchKind, int, uint64_t) override {}
  void Retried(std::string_view, registry::RetryReason) override {}
  void FellBack(std::string_view) override {}
  void EndpointDead(std::string_view) override {}
  void WatchdogTripped(registry::Watchdog) override {}
  void BlobBytes(registry::BlobSource source, std::string_view, uint64_t bytes) override {
    std::lock_guard lock(mutex_);
    (source == registry::BlobSource::kPeer ? peer_bytes_ : registry_bytes_) += bytes;
  }
  void PeerGivenUp(std::string_view peer, registry::PeerFailure reason) override {
    std::lock_guard lock(mutex_);
    given_up_.push_back(fmt::format("{} {}", peer, registry::PeerFailureName(reason)));
  }
  uint64_t peer_bytes() {
    std::lock_guard lock(mutex_);
    return peer_bytes_;
  }
  uint64_t registry_bytes() {
    std::lock_guard lock(mutex_);
    return registry_bytes_;
  }
  std::vector<std::string> given_up() {
    std::lock_guard lock(mutex_);
    return given_up_;
  }

 private:
  std::mutex mutex_;
  uint64_t peer_bytes_ = 0;
  uint64_t registry_bytes_ = 0;
  std::vector<std::string> given_up_;
};

class PullFixture : public ::testing::Test {
 protected:
  // `dir_prefix` names the temp dir ("berth-<dir_prefix>-XXXXXX"), to tell tests' dirs apart.
  explicit PullFixture(std::string dir_prefix = "pull-test");

  // Creates dir_, store_ (at dir_/content, Durability::kNone: a test need not survive a crash)
  // and transport_. Fails the test if any of them cannot be made.
  void SetUp() override;

  // A Puller on store_ and transport_ with `config`, whose root is set to dir_; `scheduler`
  // (may be null) is passed on as Puller's node-wide download scheduler.
  std::unique_ptr<Puller> MakePuller(config::Config config = config::DefaultConfig(),
                                     DownloadScheduler* scheduler = nullptr);

  // Pulls `reference` with a fresh MakePuller(config), never cancelled. A failure's text is
  // noted for the credential hygiene check at the end of the test.
  Result<PulledImage> Pull(const config::Config& config, const std::string& reference,
                           const PullOptions& options = Amd64());
  Result<PulledImage> Pull(const std::string& reference, const PullOptions& options = Amd64());

  berth::testing::TempDir dir_;
  std::unique_ptr<content::Store> store_;
  std::unique_ptr<registry::CurlTransport> transport_;

 private:
  std::string dir_prefix_;
};

}  // namespace berth::pull
