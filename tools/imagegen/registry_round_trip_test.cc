// Registry round trips: images built by the generator are pushed to a real registry
// (docker-registry 2.8 via berth::testing::TestRegistry), read back, and verified digest by
// digest, in every format, compression, auth and TLS mode the client supports.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/temp_dir.h"
#include "testing/test_registry.h"
#include "tools/imagegen/push.h"

namespace berth::imagegen {
namespace {

using berth::testing::TestRegistry;
using berth::testing::TestRegistryMode;
using berth::testing::TestRegistryOptions;

std::unique_ptr<TestRegistry> StartRegistry(TestRegistryOptions options = {}) {
  Result<std::unique_ptr<TestRegistry>> registry = TestRegistry::Start(std::move(options));
  EXPECT_TRUE(registry.has_value()) << registry.error().ToString();
  return registry ? std::move(*registry) : nullptr;
}

RegistryClientOptions OptionsFor(const TestRegistry& registry) {
  return {.base_url = registry.url(),
          .ca_file = registry.ca_file(),
          .client_certificate_file = registry.client_cert_file(),
          .client_key_file = registry.client_key_file(),
          .username = registry.username(),
          .password = registry.password()};
}

std::unique_ptr<RegistryClient> ClientFor(RegistryClientOptions options) {
  Result<std::unique_ptr<RegistryClient>> client = RegistryClient::Create(std::move(options));
  EXPECT_TRUE(client.has_value()) << client.error().ToString();
  return client ? std::move(*client) : nullptr;
}

// An image with one layer per compression, each with distinct content.
Image ThreeCompressionImage(ManifestFormat format, std::string_view flavor) {
  std::vector<Layer> layers;
  for (Compression compression : {Compression::kGzip, Compression::kZstd, Compression::kNone}) {
    FileTree tree;
    std::string name(CompressionName(compression));
    tree.AddDirectory(name).AddFile(name + "/data", fmt::format("{} {}\n", flavor, name),
                                    {.mode = 0600, .uid = 1000});
    if (compression == Compression::kZstd) tree.AddWhiteout("gzip/data");
    Result<Layer> layer = BuildLayer(tree, {.compression = compression});
    EXPECT_TRUE(layer.has_value());
    layers.push_back(std::move(*layer));
  }
  Result<Image> image = AssembleImage({.cmd = {"/bin/true"}}, std::move(layers), format);
  EXPECT_TRUE(image.has_value());
  return std::move(*image);
}

void ExpectRoundTrip(RegistryClient& client, const TestRegistry& registry, const Image& image,
                     std::string_view repository) {
  Result<PushedImage> pushed = PushImage(client, repository, "v1", image);
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString() << "\n" << registry.ReadLog();
  EXPECT_EQ(pushed->manifest.digest, image.manifest.digest);
  EXPECT_EQ(pushed->blobs_uploaded, static_cast<int>(image.layers.size()) + 1);
  Result<void> by_tag = VerifyImage(client, repository, "v1", image);
  EXPECT_TRUE(by_tag.has_value()) << by_tag.error().ToString();
  Result<void> by_digest = VerifyImage(client, repository, image.manifest.digest.ToString(), image);
  EXPECT_TRUE(by_digest.has_value()) << by_digest.error().ToString();
}

TEST(RegistryRoundTripTest, OciAndDockerImagesWithEveryCompression) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  ExpectRoundTrip(*client, *registry, ThreeCompressionImage(ManifestFormat::kOci, "oci"),
                  "imagegen/oci");
  ExpectRoundTrip(*client, *registry, ThreeCompressionImage(ManifestFormat::kDocker, "docker"),
                  "imagegen/docker");

  // The registry serves each blob back under its digest, byte for byte.
  Image image = ThreeCompressionImage(ManifestFormat::kOci, "oci");
  Result<std::string> layer = client->GetBlob("imagegen/oci", image.layers[1].blob.digest);
  ASSERT_TRUE(layer.has_value()) << layer.error().ToString();
  EXPECT_EQ(*layer, image.layers[1].bytes);
}

TEST(RegistryRoundTripTest, SecondPushSkipsBlobsTheRegistryHas) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  ASSERT_TRUE(PushImage(*client, "demo", "latest", *image).has_value());
  Result<PushedImage> again = PushImage(*client, "demo", "latest", *image);
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  EXPECT_EQ(again->blobs_uploaded, 0);
  EXPECT_EQ(again->blobs_skipped, 3);
}

TEST(RegistryRoundTripTest, MultiPlatformIndexAndManifestList) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  for (ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    std::vector<Image> images;
    for (Platform platform : {Platform{"amd64", "linux", ""}, Platform{"arm64", "linux", "v8"},
                              Platform{"arm", "linux", "v7"}}) {
      Result<Image> image = MakeDemoImage(format, platform);
      ASSERT_TRUE(image.has_value());
      images.push_back(std::move(*image));
    }
    Result<ImageIndex> index = AssembleIndex(std::move(images), format);
    ASSERT_TRUE(index.has_value());
    std::string repository = format == ManifestFormat::kOci ? "multi/oci" : "multi/docker";
    Result<PushedImage> pushed = PushImage(*client, repository, "latest", *index);
    ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString() << "\n" << registry->ReadLog();
    EXPECT_EQ(pushed->manifest.digest, index->descriptor.digest);
    Result<void> verified = VerifyImage(*client, repository, "latest", *index);
    EXPECT_TRUE(verified.has_value()) << verified.error().ToString();

    Result<FetchedManifest> fetched = client->GetManifest(repository, "latest");
    ASSERT_TRUE(fetched.has_value());
    EXPECT_EQ(fetched->media_type, index->descriptor.media_type);
    EXPECT_EQ(fetched->digest, index->descriptor.digest);
  }
}

TEST(RegistryRoundTripTest, LargeDirectoryLayerStreamsFromDiskInChunks) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  Result<berth::testing::TempDir> dir = berth::testing::TempDir::Create("imagegen-large");
  ASSERT_TRUE(dir.has_value());
  std::filesystem::path source = dir->Join("rootfs");
  std::filesystem::create_directories(source / "data");
  for (int i = 0; i < 3; ++i) {
    std::ofstream out(source / "data" / ("blob" + std::to_string(i)), std::ios::binary);
    std::string chunk(1 << 20, static_cast<char>('a' + i));
    for (int mb = 0; mb < 4; ++mb) {
      chunk[mb] = static_cast<char>(mb);  // Not all-equal, so the layer is not trivial.
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  DirectoryTree tree(source, {.uid = 0, .gid = 0, .mtime_seconds = 0});
  Result<Layer> layer =
      BuildLayerFile(tree, dir->Join("layer.tar"), {.compression = Compression::kNone});
  ASSERT_TRUE(layer.has_value()) << layer.error().ToString();
  ASSERT_GT(layer->blob.size, 12 << 20);
  Result<Image> image = AssembleImage({}, {*layer}, ManifestFormat::kOci);
  ASSERT_TRUE(image.has_value());

  RegistryClientOptions options = OptionsFor(*registry);
  options.upload_chunk_bytes = 5 << 20;  // Three PATCH requests.
  auto client = ClientFor(options);
  Result<PushedImage> pushed = PushImage(*client, "large", "v1", *image);
  ASSERT_TRUE(pushed.has_value()) << pushed.error().ToString() << "\n" << registry->ReadLog();
  Result<void> verified = VerifyImage(*client, "large", "v1", *image);
  EXPECT_TRUE(verified.has_value()) << verified.error().ToString();
}

TEST(RegistryRoundTripTest, CrossRepositoryMount) {
  auto registry = StartRegistry();
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  std::string blob = "shared layer bytes";
  Digest digest = Digest::Sha256Of(blob);
  ASSERT_TRUE(client->PushBlob("source/repo", digest, blob).has_value());
  EXPECT_FALSE(client->BlobExists("target/repo", digest).value());
  Result<bool> mounted = client->MountBlob("target/repo", digest, "source/repo");
  ASSERT_TRUE(mounted.has_value()) << mounted.error().ToString();
  EXPECT_TRUE(*mounted);
  EXPECT_TRUE(client->BlobExists("target/repo", digest).value());

  Result<bool> not_there =
      client->MountBlob("target/repo", Digest::Sha256Of("never pushed"), "source/repo");
  ASSERT_TRUE(not_there.has_value()) << not_there.error().ToString();
  EXPECT_FALSE(*not_there);
}

TEST(RegistryRoundTripTest, BasicAuth) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kBasicAuth});
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  Result<Image> image = MakeDemoImage(ManifestFormat::kDocker);
  ASSERT_TRUE(image.has_value());
  ExpectRoundTrip(*client, *registry, *image, "private/demo");

  RegistryClientOptions wrong = OptionsFor(*registry);
  wrong.password = Secret("definitely-wrong-password");
  auto intruder = ClientFor(wrong);
  Result<FetchedManifest> denied = intruder->GetManifest("private/demo", "v1");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(denied.error().ToString().find("definitely-wrong-password"), std::string::npos);
}

TEST(RegistryRoundTripTest, TokenAuthCachesTokensPerScope) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTokenAuth});
  ASSERT_NE(registry, nullptr);
  ASSERT_NE(registry->token_server(), nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  ExpectRoundTrip(*client, *registry, *image, "tokens/demo");
  // One token for push (pull,push) and one for pull, not one per request.
  EXPECT_EQ(registry->token_server()->stats().tokens_issued, 2u);

  RegistryClientOptions wrong = OptionsFor(*registry);
  wrong.password = Secret("not-the-token-password");
  auto intruder = ClientFor(wrong);
  Result<FetchedManifest> denied = intruder->GetManifest("tokens/demo", "v1");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_EQ(denied.error().ToString().find("not-the-token-password"), std::string::npos);
}

TEST(RegistryRoundTripTest, TlsWithCaFileOrInsecure) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTls});
  ASSERT_NE(registry, nullptr);
  ASSERT_EQ(registry->url().substr(0, 8), "https://");
  auto client = ClientFor(OptionsFor(*registry));
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  ExpectRoundTrip(*client, *registry, *image, "tls/demo");

  // Without the CA the certificate is not trusted…
  auto untrusting = ClientFor({.base_url = registry->url()});
  Result<bool> refused = untrusting->BlobExists("tls/demo", image->config.digest);
  ASSERT_FALSE(refused.has_value());
  EXPECT_TRUE(refused.error().code() == ErrorCode::kFailedPrecondition ||
              refused.error().code() == ErrorCode::kUnavailable)
      << refused.error().ToString();
  // …unless verification is off.
  auto insecure =
      ClientFor({.base_url = registry->url(), .tls_verification = TlsVerification::kSkip});
  Result<bool> exists = insecure->BlobExists("tls/demo", image->config.digest);
  ASSERT_TRUE(exists.has_value()) << exists.error().ToString();
  EXPECT_TRUE(*exists);
}

TEST(RegistryRoundTripTest, MutualTls) {
  auto registry = StartRegistry({.mode = TestRegistryMode::kTlsClientCert});
  ASSERT_NE(registry, nullptr);
  auto client = ClientFor(OptionsFor(*registry));
  Result<Image> image = MakeDemoImage();
  ASSERT_TRUE(image.has_value());
  ExpectRoundTrip(*client, *registry, *image, "mtls/demo");

  auto no_certificate = ClientFor({.base_url = registry->url(), .ca_file = registry->ca_file()});
  Result<bool> refused = no_certificate->BlobExists("mtls/demo", image->config.digest);
  EXPECT_FALSE(refused.has_value());
}

}  // namespace
}  // namespace berth::imagegen
