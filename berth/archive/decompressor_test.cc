#include "berth/archive/decompressor.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "berth/archive/test_util.h"
#include "berth/image/media_types.h"
#include "testing/result_matchers.h"

namespace berth::archive {
namespace {

using ::berth::testing::FailsWith;

using testing::Compress;

class StringChunkSink final : public ChunkSink {
 public:
  Result<void> Write(std::string_view data) override {
    out.append(data);
    ++chunks;
    return Ok();
  }
  std::string out;
  size_t chunks = 0;
};

std::string Payload(size_t size) {
  // Half compressible text, half noise, so both compressors do real work.
  std::mt19937 random(42);
  std::string data;
  data.reserve(size);
  while (data.size() < size) {
    if ((data.size() / 4096) % 2 == 0) {
      data += "the quick brown fox jumps over the lazy dog ";
    } else {
      data.push_back(static_cast<char>(random() & 0xff));
    }
  }
  data.resize(size);
  return data;
}

Result<std::string> DecodeAll(Compression compression, std::string_view blob, size_t step,
                              DecompressorOptions options = {}) {
  StringChunkSink sink;
  BERTH_ASSIGN_OR_RETURN(auto decoder, MakeDecompressor(compression, sink, options));
  for (size_t at = 0; at < blob.size(); at += step) {
    BERTH_RETURN_IF_ERROR(decoder->Write(blob.substr(at, step)));
  }
  BERTH_RETURN_IF_ERROR(decoder->Finish());
  EXPECT_EQ(decoder->uncompressed_bytes(), sink.out.size());
  EXPECT_EQ(decoder->compressed_bytes(), blob.size());
  return sink.out;
}

TEST(CompressionForMediaTypeTest, MapsOciAndDockerLayerTypes) {
  namespace mt = berth::media_types;
  EXPECT_EQ(*CompressionForMediaType(mt::kOciLayer), Compression::kNone);
  EXPECT_EQ(*CompressionForMediaType(mt::kOciLayerGzip), Compression::kGzip);
  EXPECT_EQ(*CompressionForMediaType(mt::kOciLayerZstd), Compression::kZstd);
  EXPECT_EQ(*CompressionForMediaType(mt::kOciLayerNondistributableGzip), Compression::kGzip);
  EXPECT_EQ(*CompressionForMediaType(mt::kDockerLayerGzip), Compression::kGzip);
  EXPECT_EQ(*CompressionForMediaType(mt::kDockerLayerForeignGzip), Compression::kGzip);
  EXPECT_EQ(*CompressionForMediaType(mt::kDockerLayerZstd), Compression::kZstd);
  EXPECT_EQ(*CompressionForMediaType("application/vnd.docker.image.rootfs.diff.tar"),
            Compression::kNone);
  auto unknown = CompressionForMediaType("application/vnd.oci.image.layer.v1.tar+bzip2");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kUnimplemented);
  EXPECT_NE(unknown.error().message().find("bzip2"), std::string::npos);
}

struct Case {
  Compression compression;
  GzipBackend backend;
  imagegen::Compression generator;
};

class RoundTripTest : public ::testing::TestWithParam<Case> {};

TEST_P(RoundTripTest, DecodesWhateverTheChunking) {
  std::string payload = Payload(3 << 20);
  std::string blob = Compress(payload, GetParam().generator);
  for (size_t step : {size_t{1} << 20, size_t{4099}, size_t{3}}) {
    if (step == 3 && GetParam().compression != Compression::kNone) {
      // Byte-at-a-time on 3 MB is slow; use a prefix-sized payload for tiny steps.
      std::string small = payload.substr(0, 100'000);
      auto decoded = DecodeAll(GetParam().compression, Compress(small, GetParam().generator), step,
                               {.gzip_backend = GetParam().backend});
      ASSERT_OK(decoded);
      EXPECT_EQ(*decoded, small);
      continue;
    }
    auto decoded =
        DecodeAll(GetParam().compression, blob, step, {.gzip_backend = GetParam().backend});
    ASSERT_OK(decoded);
    EXPECT_EQ(decoded->size(), payload.size());
    EXPECT_TRUE(*decoded == payload) << "step " << step;
  }
}

TEST_P(RoundTripTest, TruncatedStreamIsDataLoss) {
  if (GetParam().compression == Compression::kNone) GTEST_SKIP() << "no framing to truncate";
  std::string blob = Compress(Payload(1 << 20), GetParam().generator);
  for (size_t keep : {blob.size() - 1, blob.size() / 2, size_t{3}, size_t{0}}) {
    auto decoded = DecodeAll(GetParam().compression, std::string_view(blob).substr(0, keep), 65536,
                             {.gzip_backend = GetParam().backend});
    ASSERT_FALSE(decoded.has_value()) << "kept " << keep;
    EXPECT_THAT(decoded, FailsWith(ErrorCode::kDataLoss));
    EXPECT_NE(decoded.error().message().find("truncated"), std::string::npos);
  }
}

TEST_P(RoundTripTest, BombLimitIsResourceExhausted) {
  std::string zeros(8 << 20, '\0');
  std::string blob = Compress(zeros, GetParam().generator);
  auto decoded = DecodeAll(GetParam().compression, blob, 1 << 20,
                           {.max_uncompressed_bytes = 1 << 20, .gzip_backend = GetParam().backend});
  ASSERT_FALSE(decoded.has_value());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kResourceExhausted);
  // Exactly at the limit is fine.
  auto at_limit =
      DecodeAll(GetParam().compression, blob, 1 << 20,
                {.max_uncompressed_bytes = 8 << 20, .gzip_backend = GetParam().backend});
  EXPECT_TRUE(at_limit.has_value());
}

INSTANTIATE_TEST_SUITE_P(
    All, RoundTripTest,
    ::testing::Values(Case{Compression::kGzip, GzipBackend::kIsal, imagegen::Compression::kGzip},
                      Case{Compression::kGzip, GzipBackend::kZlib, imagegen::Compression::kGzip},
                      Case{Compression::kZstd, GzipBackend::kIsal, imagegen::Compression::kZstd},
                      Case{Compression::kNone, GzipBackend::kIsal, imagegen::Compression::kNone}),
    [](const auto& param_info) {
      return std::string(CompressionName(param_info.param.compression)) +
             (param_info.param.backend == GzipBackend::kZlib ? "_zlib" : "");
    });

class GzipBackendTest : public ::testing::TestWithParam<GzipBackend> {};

TEST_P(GzipBackendTest, DecodesMultiMemberStreams) {
  std::string a = Payload(300'000);
  std::string b = "second member";
  std::string blob = Compress(a, imagegen::Compression::kGzip) +
                     Compress(b, imagegen::Compression::kGzip) +
                     Compress("", imagegen::Compression::kGzip);
  for (size_t step : {size_t{1} << 20, size_t{7}}) {
    auto decoded = DecodeAll(Compression::kGzip, blob, step, {.gzip_backend = GetParam()});
    ASSERT_OK(decoded);
    EXPECT_TRUE(*decoded == a + b);
  }
}

TEST_P(GzipBackendTest, CorruptCrcIsDataLoss) {
  std::string blob = Compress(Payload(10'000), imagegen::Compression::kGzip);
  blob[blob.size() - 6] ^= 0x55;  // Inside the CRC-32 of the trailer.
  auto decoded = DecodeAll(Compression::kGzip, blob, 4096, {.gzip_backend = GetParam()});
  ASSERT_FALSE(decoded.has_value());
  EXPECT_THAT(decoded, FailsWith(ErrorCode::kDataLoss));
}

TEST_P(GzipBackendTest, TrailingGarbageIsInvalid) {
  std::string blob = Compress("data", imagegen::Compression::kGzip) + "garbage!";
  auto decoded = DecodeAll(Compression::kGzip, blob, 4096, {.gzip_backend = GetParam()});
  ASSERT_FALSE(decoded.has_value());
  EXPECT_THAT(decoded, FailsWith(ErrorCode::kInvalidArgument));
}

TEST_P(GzipBackendTest, CorruptDeflateDataIsInvalid) {
  std::string blob = Compress(Payload(100'000), imagegen::Compression::kGzip);
  for (size_t i = 20; i < 60; ++i) blob[i] = static_cast<char>(0xff);
  auto decoded = DecodeAll(Compression::kGzip, blob, 4096, {.gzip_backend = GetParam()});
  ASSERT_FALSE(decoded.has_value());
  EXPECT_TRUE(decoded.error().code() == ErrorCode::kInvalidArgument ||
              decoded.error().code() == ErrorCode::kDataLoss)
      << decoded.error().ToString();
}

INSTANTIATE_TEST_SUITE_P(Backends, GzipBackendTest,
                         ::testing::Values(GzipBackend::kIsal, GzipBackend::kZlib),
                         [](const auto& param_info) {
                           return param_info.param == GzipBackend::kIsal ? "isal" : "zlib";
                         });

TEST(DecompressorMagicTest, MismatchNamesBothFormats) {
  std::string gzip = Compress("hello", imagegen::Compression::kGzip);
  std::string zstd = Compress("hello", imagegen::Compression::kZstd);

  auto zstd_as_gzip = DecodeAll(Compression::kGzip, zstd, 2);
  ASSERT_FALSE(zstd_as_gzip.has_value());
  EXPECT_EQ(zstd_as_gzip.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(zstd_as_gzip.error().message().find("media type says gzip but the data starts with "
                                                "zstd magic"),
            std::string::npos)
      << zstd_as_gzip.error().message();

  auto gzip_as_zstd = DecodeAll(Compression::kZstd, gzip, 4096);
  ASSERT_FALSE(gzip_as_zstd.has_value());
  EXPECT_NE(gzip_as_zstd.error().message().find("says zstd but the data starts with gzip magic"),
            std::string::npos)
      << gzip_as_zstd.error().message();

  auto gzip_as_tar = DecodeAll(Compression::kNone, gzip, 4096);
  ASSERT_FALSE(gzip_as_tar.has_value());
  EXPECT_EQ(gzip_as_tar.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(gzip_as_tar.error().message().find("uncompressed tar"), std::string::npos);

  auto tar_as_gzip = DecodeAll(Compression::kGzip, std::string(1024, 'a'), 4096);
  ASSERT_FALSE(tar_as_gzip.has_value());
  EXPECT_NE(tar_as_gzip.error().message().find("neither gzip nor zstd"), std::string::npos);
}

TEST(DecompressorMagicTest, ErrorsAreSticky) {
  StringChunkSink sink;
  auto decoder = MakeDecompressor(Compression::kGzip, sink);
  ASSERT_TRUE(decoder.has_value());
  EXPECT_FALSE((*decoder)->Write("not gzip at all").has_value());
  auto again = (*decoder)->Write(Compress("x", imagegen::Compression::kGzip));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(sink.out.empty());
}

}  // namespace
}  // namespace berth::archive
