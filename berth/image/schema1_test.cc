#include "berth/image/schema1.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "berth/image/manifest.h"
#include "berth/image/media_types.h"

namespace berth::image {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const Digest kBase = Digest::Sha256Of("base layer");
const Digest kApp = Digest::Sha256Of("app layer");
const Digest kEmpty = Digest::Sha256Of("empty layer");

// A step as the document lists it (newest first).
struct Step {
  Digest blob;
  json v1;
};

std::string Schema1Document(const std::vector<Step>& newest_first, bool signatures = false) {
  json document{{"schemaVersion", 1},      {"name", "library/demo"},    {"tag", "latest"},
                {"architecture", "amd64"}, {"fsLayers", json::array()}, {"history", json::array()}};
  for (const Step& step : newest_first) {
    document["fsLayers"].push_back({{"blobSum", step.blob.ToString()}});
    document["history"].push_back({{"v1Compatibility", step.v1.dump()}});
  }
  if (signatures) {
    document["signatures"] = json::array(
        {{{"header", {{"alg", "ES256"}}}, {"signature", "c2ln"}, {"protected", "cHJvdA"}}});
  }
  return document.dump(3);
}

// Three steps, newest first: a throwaway CMD, an app layer, the base layer.
std::vector<Step> ThreeSteps() {
  return {
      {kEmpty,
       {{"id", "c3"},
        {"parent", "b2"},
        {"created", "2016-03-03T00:00:00Z"},
        {"author", "someone"},
        {"architecture", "amd64"},
        {"os", "linux"},
        {"docker_version", "1.10.0"},
        {"config", {{"Cmd", {"/bin/sh"}}, {"Env", {"PATH=/bin"}}}},
        {"container_config", {{"Cmd", {"/bin/sh", "-c", "#(nop) CMD [\"/bin/sh\"]"}}}},
        {"throwaway", true}}},
      {kApp,
       {{"id", "b2"},
        {"parent", "a1"},
        {"created", "2016-02-02T00:00:00Z"},
        {"comment", "app"},
        {"container_config", {{"Cmd", {"/bin/sh", "-c", "make install"}}}},
        {"Size", 1234}}},
      {kBase,
       {{"id", "a1"},
        {"created", "2016-01-01T00:00:00Z"},
        {"container_config", {{"Cmd", {"/bin/sh", "-c", "#(nop) ADD file:abc in /"}}}}}},
  };
}

TEST(Schema1ParseTest, KeepsLayersOldestFirst) {
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(Schema1Document(ThreeSteps()));
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_EQ(manifest->name, "library/demo");
  EXPECT_EQ(manifest->tag, "latest");
  EXPECT_EQ(manifest->architecture, "amd64");
  EXPECT_FALSE(manifest->has_signatures);
  ASSERT_EQ(manifest->layers.size(), 3u);
  EXPECT_EQ(manifest->layers[0].blob_sum, kBase);
  EXPECT_EQ(manifest->layers[1].blob_sum, kApp);
  EXPECT_EQ(manifest->layers[2].blob_sum, kEmpty);
  EXPECT_EQ(manifest->layers[0].created_by, "/bin/sh -c #(nop) ADD file:abc in /");
  EXPECT_EQ(manifest->layers[1].created, "2016-02-02T00:00:00Z");
  EXPECT_EQ(manifest->layers[1].comment, "app");
  EXPECT_EQ(manifest->layers[2].author, "someone");
  EXPECT_THAT(manifest->layers[2].v1_compatibility, HasSubstr("\"docker_version\""));
}

TEST(Schema1ParseTest, ThrowawayAndZeroSizeStepsAreEmpty) {
  std::vector<Step> steps = ThreeSteps();
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(Schema1Document(steps));
  ASSERT_TRUE(manifest);
  EXPECT_FALSE(manifest->layers[0].empty);  // neither field: a real layer
  EXPECT_FALSE(manifest->layers[1].empty);  // Size 1234
  EXPECT_TRUE(manifest->layers[2].empty);   // throwaway
  EXPECT_THAT(NonEmptyLayers(*manifest), ElementsAre(&manifest->layers[0], &manifest->layers[1]));

  // Older Docker wrote no "throwaway", only "Size"; "throwaway" decides when both are there.
  steps[1].v1["Size"] = 0;
  steps[0].v1["throwaway"] = false;
  steps[0].v1["Size"] = 0;
  manifest = ParseSchema1Manifest(Schema1Document(steps));
  ASSERT_TRUE(manifest);
  EXPECT_TRUE(manifest->layers[1].empty);
  EXPECT_FALSE(manifest->layers[2].empty);
}

TEST(Schema1ParseTest, NotesSignatures) {
  Result<Schema1Manifest> manifest =
      ParseSchema1Manifest(Schema1Document(ThreeSteps(), /*signatures=*/true));
  ASSERT_TRUE(manifest) << manifest.error().ToString();
  EXPECT_TRUE(manifest->has_signatures);
}

void ExpectInvalid(const std::string& document, std::string_view message,
                   ErrorCode code = ErrorCode::kInvalidArgument) {
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(document);
  ASSERT_FALSE(manifest) << document.substr(0, 200);
  EXPECT_EQ(manifest.error().code(), code) << manifest.error().ToString();
  EXPECT_THAT(manifest.error().ToString(), HasSubstr(message));
}

TEST(Schema1ParseTest, RefusesMalformedDocuments) {
  ExpectInvalid("not json", "not valid JSON");
  ExpectInvalid("[]", "not a JSON object");
  ExpectInvalid(R"({"schemaVersion":2,"fsLayers":[],"history":[]})", "schemaVersion");
  ExpectInvalid(R"({"schemaVersion":1,"fsLayers":[],"history":[]})", "fsLayers");
  json document = json::parse(Schema1Document(ThreeSteps()));
  json short_history = document;
  short_history["history"].erase(0);
  ExpectInvalid(short_history.dump(), "3 fsLayers but 2 history entries");
  json bad_digest = document;
  bad_digest["fsLayers"][1]["blobSum"] = "sha256:nothex";
  ExpectInvalid(bad_digest.dump(), "fsLayers[1].blobSum");
  json not_object = document;
  not_object["history"][2]["v1Compatibility"] = "[1]";
  ExpectInvalid(not_object.dump(), "history[2].v1Compatibility is not a JSON object");
  json not_string = document;
  not_string["history"][0]["v1Compatibility"] = json::object();
  ExpectInvalid(not_string.dump(), "history[0] has no \"v1Compatibility\" string");
  json bad_throwaway = document;
  bad_throwaway["history"][0]["v1Compatibility"] = R"({"throwaway":"yes"})";
  ExpectInvalid(bad_throwaway.dump(), "\"throwaway\" is not a boolean");
  json bad_cmd = document;
  bad_cmd["history"][0]["v1Compatibility"] = R"({"container_config":{"Cmd":"sh"}})";
  ExpectInvalid(bad_cmd.dump(), "container_config.Cmd is not an array");
}

TEST(Schema1ParseTest, RefusesHostileDocuments) {
  // Too many layers.
  std::vector<Step> many(kMaxLayers + 1, Step{kBase, json::object()});
  ExpectInvalid(Schema1Document(many), "over the limit", ErrorCode::kResourceExhausted);
  // Too large.
  ExpectInvalid(std::string(kMaxManifestBytes + 1, ' '), "byte limit",
                ErrorCode::kResourceExhausted);
  // Nested too deeply, in the document and inside a v1Compatibility string.
  std::string deep = std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']');
  ExpectInvalid(R"({"schemaVersion":1,"x":)" + deep + "}", "nested deeper");
  json document = json::parse(Schema1Document(ThreeSteps()));
  document["history"][1]["v1Compatibility"] = R"({"a":)" + deep + "}";
  ExpectInvalid(document.dump(), "history[1].v1Compatibility");
}

TEST(Schema1ConfigTest, BuildsADockerConfigFromTheNewestStep) {
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(Schema1Document(ThreeSteps()));
  ASSERT_TRUE(manifest);
  const Digest base_diff = Digest::Sha256Of("base tar");
  const Digest app_diff = Digest::Sha256Of("app tar");
  Result<std::string> config = BuildSchema1Config(*manifest, std::vector{base_diff, app_diff});
  ASSERT_TRUE(config) << config.error().ToString();
  json parsed = json::parse(*config);

  // v1 bookkeeping is gone; the rest of the newest v1Compatibility stays.
  for (const char* key : {"id", "parent", "Size", "parent_id", "layer_id", "throwaway"}) {
    EXPECT_FALSE(parsed.contains(key)) << key;
  }
  EXPECT_EQ(parsed["architecture"], "amd64");
  EXPECT_EQ(parsed["os"], "linux");
  EXPECT_EQ(parsed["created"], "2016-03-03T00:00:00Z");
  EXPECT_EQ(parsed["docker_version"], "1.10.0");
  EXPECT_EQ(parsed["config"]["Cmd"], json::array({"/bin/sh"}));

  // rootfs: the non-empty layers' diffIDs, oldest first.
  EXPECT_EQ(parsed["rootfs"]["type"], "layers");
  EXPECT_EQ(parsed["rootfs"]["diff_ids"], json::array({base_diff.ToString(), app_diff.ToString()}));

  // history: every step, oldest first; the throwaway one marked empty.
  ASSERT_EQ(parsed["history"].size(), 3u);
  EXPECT_EQ(parsed["history"][0], json({{"created", "2016-01-01T00:00:00Z"},
                                        {"created_by", "/bin/sh -c #(nop) ADD file:abc in /"}}));
  EXPECT_EQ(parsed["history"][1], json({{"created", "2016-02-02T00:00:00Z"},
                                        {"created_by", "/bin/sh -c make install"},
                                        {"comment", "app"}}));
  EXPECT_EQ(parsed["history"][2], json({{"created", "2016-03-03T00:00:00Z"},
                                        {"created_by", "/bin/sh -c #(nop) CMD [\"/bin/sh\"]"},
                                        {"author", "someone"},
                                        {"empty_layer", true}}));

  // berth's own config decoder reads it, and the same input gives the same bytes (image ID).
  Result<ImageConfig> decoded = ParseImageConfig(*config);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_THAT(decoded->diff_ids, ElementsAre(base_diff, app_diff));
  EXPECT_THAT(decoded->cmd, ElementsAre("/bin/sh"));
  EXPECT_THAT(decoded->env, ElementsAre("PATH=/bin"));
  EXPECT_EQ(*BuildSchema1Config(*manifest, std::vector{base_diff, app_diff}), *config);
}

TEST(Schema1ConfigTest, TakesTheArchitectureFromTheManifestWhenMissing) {
  std::vector<Step> steps = ThreeSteps();
  steps[0].v1.erase("architecture");
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(Schema1Document(steps));
  ASSERT_TRUE(manifest);
  Result<std::string> config =
      BuildSchema1Config(*manifest, std::vector{Digest::Sha256Of("1"), Digest::Sha256Of("2")});
  ASSERT_TRUE(config);
  EXPECT_EQ(json::parse(*config)["architecture"], "amd64");
}

TEST(Schema1ConfigTest, RefusesTheWrongNumberOfDiffIds) {
  Result<Schema1Manifest> manifest = ParseSchema1Manifest(Schema1Document(ThreeSteps()));
  ASSERT_TRUE(manifest);
  Result<std::string> config = BuildSchema1Config(*manifest, std::vector{Digest::Sha256Of("1")});
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(config.error().ToString(), HasSubstr("1 diff_ids for 2 non-empty layers"));
}

TEST(Schema1ConfigTest, DockerManifestNamesConfigAndLayersInOrder) {
  Descriptor config{.media_type = std::string(media_types::kDockerConfig),
                    .digest = Digest::Sha256Of("config"),
                    .size = 6};
  std::vector<Descriptor> layers = {
      {.media_type = std::string(media_types::kDockerLayerGzip), .digest = kBase, .size = 10},
      {.media_type = std::string(media_types::kDockerLayerGzip), .digest = kApp, .size = 20}};
  std::string document = BuildDockerManifest(config, layers);
  Result<ManifestKind> kind = DetectKind("", document);
  ASSERT_TRUE(kind);
  EXPECT_EQ(*kind, ManifestKind::kDockerManifest);
  Result<Manifest> parsed = ParseManifest(document);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->kind, ManifestKind::kDockerManifest);
  EXPECT_EQ(parsed->config, config);
  EXPECT_EQ(parsed->layers, layers);
}

}  // namespace
}  // namespace berth::image
