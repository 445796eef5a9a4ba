// End-to-end tests of pulling Docker schema1 images: signed manifests pushed to a real
// Distribution registry with schema1 enabled (which verifies the libtrust signature on PUT and
// re-signs with its own key on GET), then pulled by berth::pull::Puller into a real content
// store and converted into a schema2 image; and an unsigned manifest served by a small HTTP
// server (a registry would not store one).
#include "tools/imagegen/schema1.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "berth/base/cancel.h"
#include "berth/config/config.h"
#include "berth/content/store.h"
#include "berth/image/manifest.h"
#include "berth/image/media_types.h"
#include "berth/image/platform.h"
#include "tools/imagegen/file_tree.h"
#include "tools/imagegen/layer.h"
#include "tools/imagegen/registry_client.h"
#include "berth/pull/puller.h"
#include "berth/registry/curl_transport.h"
#include "testing/http_fetch.h"
#include "testing/http_server.h"
#include "testing/temp_dir.h"
#include "testing/test_registry.h"

namespace berth::pull {
namespace {

using berth::testing::HttpServer;
using berth::testing::HttpServerRequest;
using berth::testing::HttpServerResponse;
using berth::testing::TempDir;
using berth::testing::TestRegistry;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kRepository = "legacy/app";

imagegen::Layer MakeLayer(const std::string& name, size_t size) {
  imagegen::FileTree tree;
  tree.AddFile("data/" + name, std::string(size, name.empty() ? 'x' : name[0]) + "\n");
  Result<imagegen::Layer> layer = imagegen::BuildLayer(tree);
  EXPECT_TRUE(layer) << layer.error().ToString();
  return layer ? std::move(*layer) : imagegen::Layer{};
}

// The empty tar, gzipped: what Docker gave the steps that changed no files.
imagegen::Layer EmptyLayer() {
  Result<imagegen::Layer> layer = imagegen::BuildLayer(imagegen::FileTree{});
  EXPECT_TRUE(layer) << layer.error().ToString();
  return layer ? std::move(*layer) : imagegen::Layer{};
}

PullOptions Amd64() {
  PullOptions options;
  Result<image::Platform> platform = image::ParsePlatform("linux/amd64");
  EXPECT_TRUE(platform);
  if (platform) options.platform = *platform;
  return options;
}

// Sees every layer the pull hands to the unpacker and hashes what it observed.
class RecordingHandler final : public LayerHandler {
 public:
  Result<void> Begin(const image::Manifest& manifest, const image::ImageConfig&) override {
    layers_ = manifest.layers;
    return Ok();
  }
  Result<LayerPlan> PlanLayer(size_t index) override {
    return LayerPlan{.observer = std::make_unique<Observer>(*this, index)};
  }
  Result<void> End(bool success) override {
    ended_ok_ = success;
    return Ok();
  }

  // Digest of the bytes observed for each layer index.
  std::map<size_t, Digest> observed() const {
    std::lock_guard lock(mutex_);
    return observed_;
  }
  const std::vector<image::Descriptor>& layers() const { return layers_; }
  bool ended_ok() const { return ended_ok_; }

 private:
  class Observer final : public LayerObserver {
   public:
    Observer(RecordingHandler& handler, size_t index) : handler_(handler), index_(index) {}
    Result<void> Write(std::string_view chunk) override {
      hasher_.Update(chunk);
      return Ok();
    }
    Result<void> Reset() override {
      hasher_ = Hasher();
      return Ok();
    }
    Result<void> Finish() override {
      std::lock_guard lock(handler_.mutex_);
      handler_.observed_.emplace(index_, hasher_.Finish());
      return Ok();
    }

   private:
    RecordingHandler& handler_;
    size_t index_;
    Hasher hasher_;
  };

  mutable std::mutex mutex_;
  std::map<size_t, Digest> observed_;
  std::vector<image::Descriptor> layers_;
  bool ended_ok_ = false;
};

class Schema1PullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<TempDir> dir = TempDir::Create("schema1-test");
    ASSERT_TRUE(dir) << dir.error().ToString();
    dir_ = std::make_unique<TempDir>(std::move(*dir));
    Result<std::unique_ptr<content::Store>> store =
        content::Store::Open({.root = dir_->Join("content"), .durability = Durability::kNone});
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    Result<std::unique_ptr<registry::CurlTransport>> transport = registry::CurlTransport::Create();
    ASSERT_TRUE(transport) << transport.error().ToString();
    transport_ = std::move(*transport);
  }

  void StartRegistry() {
    Result<std::unique_ptr<TestRegistry>> registry =
        TestRegistry::Start({.log_level = "warn", .enable_schema1 = true});
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
    Result<std::unique_ptr<imagegen::RegistryClient>> client =
        imagegen::RegistryClient::Create({.base_url = registry_->url()});
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
  }

  void PushBlobs(const std::vector<const imagegen::Layer*>& layers) {
    for (const imagegen::Layer* layer : layers) {
      Result<void> pushed = client_->PushBlob(kRepository, layer->blob.digest, layer->bytes);
      ASSERT_TRUE(pushed) << pushed.error().ToString();
    }
  }

  // Signs `spec`'s manifest with a fresh key and puts it under its tag. The registry verifies
  // the signature and reports the digest of the payload without signatures.
  void PushSigned(const imagegen::Schema1Spec& spec) {
    Result<std::string> manifest = imagegen::BuildSchema1Manifest(spec);
    ASSERT_TRUE(manifest) << manifest.error().ToString();
    Result<imagegen::Schema1Signer> signer = imagegen::Schema1Signer::Generate();
    ASSERT_TRUE(signer) << signer.error().ToString();
    Result<std::string> signed_manifest = signer->Sign(*manifest);
    ASSERT_TRUE(signed_manifest) << signed_manifest.error().ToString();

    Result<berth::testing::HttpFetchResponse> response = PutManifest(spec.tag, *signed_manifest);
    ASSERT_TRUE(response) << response.error().ToString();
    ASSERT_EQ(response->status, 201) << response->body << "\n" << registry_->ReadLog();
    EXPECT_EQ(response->Header("Docker-Content-Digest").value_or(""),
              Digest::Sha256Of(*manifest).ToString());
  }

  // PUT of a signed schema1 manifest (imagegen's RegistryClient::PutManifest would insist on
  // the digest of the bytes sent, which a schema1 digest is not).
  Result<berth::testing::HttpFetchResponse> PutManifest(std::string_view tag,
                                                        const std::string& bytes) {
    berth::testing::HttpFetchRequest request = registry_->NewRequest(
        "/v2/" + std::string(kRepository) + "/manifests/" + std::string(tag), "PUT");
    request.headers.emplace_back("Content-Type", std::string(imagegen::kSchema1SignedMediaType));
    request.body = bytes;
    return berth::testing::HttpFetch(request);
  }

  Result<PulledImage> Pull(const std::string& reference, const PullOptions& options = Amd64()) {
    config::Config config = config::DefaultConfig();
    config.root = dir_->path();
    Puller puller(*store_, *transport_, std::move(config));
    return puller.Pull(reference, options, {}, CancelToken::Never());
  }

  std::string Stored(const Digest& digest) {
    Result<std::string> bytes = store_->ReadBlob(digest, image::kMaxManifestBytes);
    EXPECT_TRUE(bytes) << digest.ToString() << ": " << bytes.error().ToString();
    return bytes.value_or("");
  }

  // The store holds `layer`'s blob with its size.
  void ExpectStored(const imagegen::Layer& layer) {
    Result<content::BlobInfo> info = store_->Info(layer.blob.digest);
    ASSERT_TRUE(info) << layer.blob.digest.ToString() << ": " << info.error().ToString();
    EXPECT_EQ(info->size, layer.blob.size);
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<content::Store> store_;
  std::unique_ptr<registry::CurlTransport> transport_;
  std::unique_ptr<TestRegistry> registry_;
  std::unique_ptr<imagegen::RegistryClient> client_;
};

TEST_F(Schema1PullTest, SignedImageIsConvertedIntoASchema2Image) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  imagegen::Layer base = MakeLayer("base", 300 << 10);
  imagegen::Layer app = MakeLayer("app", 40 << 10);
  ASSERT_NO_FATAL_FAILURE(PushBlobs({&base, &app}));
  imagegen::Schema1Spec spec{.name = std::string(kRepository),
                             .tag = "v1",
                             .env = {"PATH=/usr/bin:/bin"},
                             .cmd = {"/app/run"}};
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "#(nop) ADD file:base in /"},
                {.blob_sum = app.blob.digest, .created_by = "COPY app /app"}};
  ASSERT_NO_FATAL_FAILURE(PushSigned(spec));

  RecordingHandler handler;
  PullOptions options = Amd64();
  options.layer_handler = &handler;
  Result<PulledImage> pulled =
      Pull(registry_->host() + "/" + std::string(kRepository) + ":v1", options);
  ASSERT_TRUE(pulled) << pulled.error().ToString() << "\n" << registry_->ReadLog();

  // A converted image: no repo digest may be recorded for it.
  EXPECT_TRUE(pulled->converted_schema1);
  // The image ID is the digest of the generated config, which is in the store.
  const std::string config = Stored(pulled->image_id);
  EXPECT_EQ(pulled->image_id, Digest::Sha256Of(config));
  Result<image::ImageConfig> parsed_config = image::ParseImageConfig(config);
  ASSERT_TRUE(parsed_config) << parsed_config.error().ToString();
  EXPECT_THAT(parsed_config->diff_ids, ElementsAre(base.diff_id, app.diff_id));
  EXPECT_THAT(parsed_config->cmd, ElementsAre("/app/run"));
  EXPECT_THAT(parsed_config->env, ElementsAre("PATH=/usr/bin:/bin"));
  EXPECT_EQ(pulled->config.diff_ids, parsed_config->diff_ids);
  json history = json::parse(config)["history"];
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0]["created_by"], "/bin/sh -c #(nop) ADD file:base in /");
  EXPECT_EQ(history[1]["created_by"], "/bin/sh -c COPY app /app");

  // The generated schema2 manifest is the image's target and manifest, and in the store.
  EXPECT_EQ(pulled->manifest.media_type, media_types::kDockerManifest);
  EXPECT_EQ(pulled->target, pulled->manifest);
  const std::string manifest = Stored(pulled->manifest.digest);
  Result<image::Manifest> parsed_manifest = image::ParseManifest(manifest);
  ASSERT_TRUE(parsed_manifest) << parsed_manifest.error().ToString();
  EXPECT_EQ(parsed_manifest->config.digest, pulled->image_id);
  ASSERT_EQ(pulled->parsed_manifest.layers.size(), 2u);
  EXPECT_EQ(pulled->parsed_manifest.layers[0].digest, base.blob.digest);
  EXPECT_EQ(pulled->parsed_manifest.layers[0].size, base.blob.size);
  EXPECT_EQ(pulled->parsed_manifest.layers[1].digest, app.blob.digest);
  EXPECT_EQ(pulled->parsed_manifest.layers[1].size, app.blob.size);
  ExpectStored(base);
  ExpectStored(app);
  EXPECT_EQ(pulled->bytes_fetched, base.blob.size + app.blob.size);
  EXPECT_EQ(pulled->content_size, pulled->manifest.size + static_cast<int64_t>(config.size()) +
                                      base.blob.size + app.blob.size);

  // The unpacker sees every layer, whole, from the store.
  EXPECT_TRUE(handler.ended_ok());
  EXPECT_EQ(handler.observed(),
            (std::map<size_t, Digest>{{0, base.blob.digest}, {1, app.blob.digest}}));

  // Pulling again gives the same image and fetches nothing.
  Result<PulledImage> again = Pull(registry_->host() + "/" + std::string(kRepository) + ":v1");
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(again->image_id, pulled->image_id);
  EXPECT_EQ(again->manifest, pulled->manifest);
  EXPECT_EQ(again->bytes_fetched, 0);
}

// A signed schema1 manifest is named by the digest of its payload without signatures; a pull
// pinned to that digest verifies the payload and converts as a pull by tag does.
TEST_F(Schema1PullTest, SignedImagePulledByDigestVerifiesThePayload) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  imagegen::Layer base = MakeLayer("base", 64 << 10);
  ASSERT_NO_FATAL_FAILURE(PushBlobs({&base}));
  imagegen::Schema1Spec spec{.name = std::string(kRepository), .tag = "pinned"};
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "ADD base /"}};
  ASSERT_NO_FATAL_FAILURE(PushSigned(spec));
  Result<std::string> unsigned_manifest = imagegen::BuildSchema1Manifest(spec);
  ASSERT_TRUE(unsigned_manifest);
  const Digest payload_digest = Digest::Sha256Of(*unsigned_manifest);

  Result<PulledImage> by_tag = Pull(registry_->host() + "/" + std::string(kRepository) + ":pinned");
  ASSERT_TRUE(by_tag) << by_tag.error().ToString();
  Result<PulledImage> by_digest =
      Pull(registry_->host() + "/" + std::string(kRepository) + "@" + payload_digest.ToString());
  ASSERT_TRUE(by_digest) << by_digest.error().ToString();
  EXPECT_TRUE(by_digest->converted_schema1);
  EXPECT_EQ(by_digest->image_id, by_tag->image_id);

  // A digest that is neither the payload's nor the document's is refused as data loss.
  Result<PulledImage> wrong = Pull(registry_->host() + "/" + std::string(kRepository) + "@" +
                                   Digest::Sha256Of("something else").ToString());
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().code(), ErrorCode::kInternal) << wrong.error().ToString();
}

TEST_F(Schema1PullTest, ThrowawayStepsBecomeEmptyHistoryEntries) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  imagegen::Layer base = MakeLayer("base", 100 << 10);
  imagegen::Layer app = MakeLayer("app", 10 << 10);
  imagegen::Layer empty = EmptyLayer();
  ASSERT_NO_FATAL_FAILURE(PushBlobs({&base, &app, &empty}));
  imagegen::Schema1Spec spec{.name = std::string(kRepository), .tag = "v2", .cmd = {"/app"}};
  spec.steps = {
      {.blob_sum = base.blob.digest, .created_by = "#(nop) ADD file:base in /"},
      {.blob_sum = empty.blob.digest, .created_by = "#(nop) ENV A=1", .throwaway = true},
      {.blob_sum = app.blob.digest, .created_by = "COPY app /app", .comment = "the app"},
      {.blob_sum = empty.blob.digest,
       .created_by = "#(nop) CMD [\"/app\"]",
       .author = "berth",
       .throwaway = true},
  };
  ASSERT_NO_FATAL_FAILURE(PushSigned(spec));

  Result<PulledImage> pulled = Pull(registry_->host() + "/" + std::string(kRepository) + ":v2");
  ASSERT_TRUE(pulled) << pulled.error().ToString() << "\n" << registry_->ReadLog();
  EXPECT_TRUE(pulled->converted_schema1);

  // Only the real layers are part of the image; the empty blob is never fetched.
  EXPECT_THAT(pulled->config.diff_ids, ElementsAre(base.diff_id, app.diff_id));
  ASSERT_EQ(pulled->parsed_manifest.layers.size(), 2u);
  EXPECT_EQ(pulled->parsed_manifest.layers[0].digest, base.blob.digest);
  EXPECT_EQ(pulled->parsed_manifest.layers[1].digest, app.blob.digest);
  EXPECT_FALSE(store_->Contains(empty.blob.digest));
  ExpectStored(base);
  ExpectStored(app);

  // Every step is in the history, oldest first; the throwaway ones marked empty.
  const std::string config = Stored(pulled->image_id);
  json parsed = json::parse(config);
  for (const char* key : {"id", "parent", "throwaway", "Size"}) {
    EXPECT_FALSE(parsed.contains(key)) << key;
  }
  json history = parsed["history"];
  ASSERT_EQ(history.size(), 4u);
  EXPECT_FALSE(history[0].contains("empty_layer"));
  EXPECT_EQ(history[1]["empty_layer"], true);
  EXPECT_EQ(history[1]["created_by"], "/bin/sh -c #(nop) ENV A=1");
  EXPECT_FALSE(history[2].contains("empty_layer"));
  EXPECT_EQ(history[2]["comment"], "the app");
  EXPECT_EQ(history[3]["empty_layer"], true);
  EXPECT_EQ(history[3]["author"], "berth");
}

// The registry really checks the signature: the same manifest with a changed field is refused.
TEST_F(Schema1PullTest, RegistryRefusesATamperedSignedManifest) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  imagegen::Layer base = MakeLayer("base", 1 << 10);
  ASSERT_NO_FATAL_FAILURE(PushBlobs({&base}));
  imagegen::Schema1Spec spec{.name = std::string(kRepository), .tag = "v3"};
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "ADD base /"}};
  Result<std::string> manifest = imagegen::BuildSchema1Manifest(spec);
  ASSERT_TRUE(manifest);
  Result<imagegen::Schema1Signer> signer = imagegen::Schema1Signer::Generate();
  ASSERT_TRUE(signer);
  Result<std::string> signed_manifest = signer->Sign(*manifest);
  ASSERT_TRUE(signed_manifest);

  std::string tampered = *signed_manifest;
  size_t architecture = tampered.find("\"amd64\"");
  ASSERT_NE(architecture, std::string::npos);
  tampered.replace(architecture, 7, "\"arm64\"");
  Result<berth::testing::HttpFetchResponse> refused = PutManifest("v3", tampered);
  ASSERT_TRUE(refused) << refused.error().ToString();
  EXPECT_EQ(refused->status, 400) << refused->body;
  EXPECT_THAT(refused->body, HasSubstr("MANIFEST_UNVERIFIED"));

  Result<berth::testing::HttpFetchResponse> accepted = PutManifest("v3", *signed_manifest);
  ASSERT_TRUE(accepted) << accepted.error().ToString();
  EXPECT_EQ(accepted->status, 201) << accepted->body;
}

TEST_F(Schema1PullTest, UnsignedManifestIsConvertedToo) {
  imagegen::Layer base = MakeLayer("base", 20 << 10);
  imagegen::Schema1Spec spec{.name = std::string(kRepository), .tag = "plain"};
  spec.steps = {{.blob_sum = base.blob.digest, .created_by = "ADD base /"}};
  Result<std::string> manifest = imagegen::BuildSchema1Manifest(spec);
  ASSERT_TRUE(manifest);

  // A registry stores only signed schema1 manifests; serve an unsigned one by hand.
  const std::string prefix = "/v2/" + std::string(kRepository);
  Result<std::unique_ptr<HttpServer>> server =
      HttpServer::Start([&](const HttpServerRequest& request) -> HttpServerResponse {
        if (request.path == "/v2/") return {.status = 200, .body = "{}"};
        if (request.path == prefix + "/manifests/plain") {
          return {.headers = {{"Content-Type", std::string(imagegen::kSchema1MediaType)}},
                  .body = *manifest};
        }
        if (request.path == prefix + "/blobs/" + base.blob.digest.ToString()) {
          return {.body = base.bytes};
        }
        return {.status = 404};
      });
  ASSERT_TRUE(server) << server.error().ToString();

  Result<PulledImage> pulled = Pull((*server)->host() + "/" + std::string(kRepository) + ":plain");
  ASSERT_TRUE(pulled) << pulled.error().ToString();
  EXPECT_TRUE(pulled->converted_schema1);
  EXPECT_THAT(pulled->config.diff_ids, ElementsAre(base.diff_id));
  EXPECT_EQ(pulled->image_id, Digest::Sha256Of(Stored(pulled->image_id)));
  ExpectStored(base);
}

TEST_F(Schema1PullTest, ACorruptGzipLayerFailsThePull) {
  // A blob that starts like gzip but is not: its diffID cannot be computed.
  imagegen::Layer bogus;
  bogus.bytes = std::string("\x1f\x8b\x08\x00", 4) + "this is not deflate data";
  bogus.blob.digest = Digest::Sha256Of(bogus.bytes);
  bogus.blob.size = static_cast<int64_t>(bogus.bytes.size());
  imagegen::Layer real = MakeLayer("real", 1 << 10);
  imagegen::Schema1Spec spec{.name = std::string(kRepository), .tag = "bad"};
  spec.steps = {{.blob_sum = real.blob.digest}, {.blob_sum = bogus.blob.digest}};
  Result<std::string> manifest = imagegen::BuildSchema1Manifest(spec);
  ASSERT_TRUE(manifest);
  const std::string prefix = "/v2/" + std::string(kRepository);
  Result<std::unique_ptr<HttpServer>> server =
      HttpServer::Start([&](const HttpServerRequest& request) -> HttpServerResponse {
        if (request.path == "/v2/") return {.status = 200, .body = "{}"};
        if (request.path == prefix + "/manifests/bad") {
          return {.headers = {{"Content-Type", std::string(imagegen::kSchema1MediaType)}},
                  .body = *manifest};
        }
        for (const imagegen::Layer* layer : {&real, &bogus}) {
          if (request.path == prefix + "/blobs/" + layer->blob.digest.ToString()) {
            return {.body = layer->bytes};
          }
        }
        return {.status = 404};
      });
  ASSERT_TRUE(server) << server.error().ToString();

  Result<PulledImage> pulled = Pull((*server)->host() + "/" + std::string(kRepository) + ":bad");
  ASSERT_FALSE(pulled);
  EXPECT_THAT(pulled.error().ToString(), HasSubstr(bogus.blob.digest.ToString()));
}

}  // namespace
}  // namespace berth::pull
