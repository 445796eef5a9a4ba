#include "berth/config/units.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

namespace berth::config {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

nanoseconds Duration(std::string_view text) {
  Result<nanoseconds> parsed = ParseDuration(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().ToString();
  return parsed.value_or(nanoseconds(-12345));
}

TEST(ParseDurationTest, SingleUnits) {
  EXPECT_EQ(Duration("5m"), minutes(5));
  EXPECT_EQ(Duration("30s"), seconds(30));
  EXPECT_EQ(Duration("2h"), hours(2));
  EXPECT_EQ(Duration("250ms"), milliseconds(250));
  EXPECT_EQ(Duration("10us"), microseconds(10));
  EXPECT_EQ(Duration("10\xC2\xB5s"), microseconds(10));  // micro sign
  EXPECT_EQ(Duration("10\xCE\xBCs"), microseconds(10));  // Greek mu
  EXPECT_EQ(Duration("7ns"), nanoseconds(7));
}

TEST(ParseDurationTest, CompoundAndFractions) {
  EXPECT_EQ(Duration("1m30s"), seconds(90));
  EXPECT_EQ(Duration("1h2m3s"), seconds(3723));
  EXPECT_EQ(Duration("4h0m0s"), hours(4));  // the form Go prints, as in containerd configs
  EXPECT_EQ(Duration("1.5h"), minutes(90));
  EXPECT_EQ(Duration(".5s"), milliseconds(500));
  EXPECT_EQ(Duration("1.000000001s"), nanoseconds(1'000'000'001));
}

TEST(ParseDurationTest, ZeroAndSigns) {
  EXPECT_EQ(Duration("0"), nanoseconds(0));
  EXPECT_EQ(Duration("0s"), nanoseconds(0));
  EXPECT_EQ(Duration("-5m"), -minutes(5));
  EXPECT_EQ(Duration("+5m"), minutes(5));
  EXPECT_EQ(Duration("-0"), nanoseconds(0));
}

TEST(ParseDurationTest, RejectsMalformed) {
  for (std::string_view bad : {"", "5", "m", "5x", "s5", "-", "1.5.2s", "5 m", "5M", "1d"}) {
    Result<nanoseconds> parsed = ParseDuration(bad);
    ASSERT_FALSE(parsed) << "accepted \"" << bad << "\"";
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(parsed.error().message(), HasSubstr("is not a valid duration"));
    EXPECT_THAT(parsed.error().message(), HasSubstr("units are h, m, s, ms, us, ns"));
  }
  EXPECT_THAT(ParseDuration("5x").error().message(), HasSubstr("unknown unit \"x\""));
  EXPECT_THAT(ParseDuration("5").error().message(), HasSubstr("missing its unit"));
}

TEST(ParseDurationTest, RejectsOverflowButKeepsTheInt64Range) {
  EXPECT_FALSE(ParseDuration("9999999999h"));
  EXPECT_FALSE(ParseDuration("99999999999999999999s"));
  EXPECT_FALSE(ParseDuration("9223372036854775808ns"));
  EXPECT_EQ(Duration("9223372036854775807ns").count(), INT64_MAX);
  EXPECT_EQ(Duration("-9223372036854775808ns").count(), INT64_MIN);
}

uint64_t Size(std::string_view text) {
  Result<uint64_t> parsed = ParseByteSize(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().ToString();
  return parsed.value_or(12345);
}

TEST(ParseByteSizeTest, PlainBytes) {
  EXPECT_EQ(Size("4096"), 4096u);
  EXPECT_EQ(Size("0"), 0u);
  EXPECT_EQ(Size("12B"), 12u);
  EXPECT_EQ(Size("18446744073709551615"), UINT64_MAX);
}

TEST(ParseByteSizeTest, BinaryAndDecimalUnits) {
  EXPECT_EQ(Size("1KiB"), 1024u);
  EXPECT_EQ(Size("512MiB"), 512ull << 20);
  EXPECT_EQ(Size("10GiB"), 10ull << 30);
  EXPECT_EQ(Size("64GiB"), 64ull << 30);
  EXPECT_EQ(Size("2TiB"), 2ull << 40);
  EXPECT_EQ(Size("1PiB"), 1ull << 50);
  EXPECT_EQ(Size("1KB"), 1000u);
  EXPECT_EQ(Size("500MB"), 500'000'000u);
  EXPECT_EQ(Size("3GB"), 3'000'000'000u);
  EXPECT_EQ(Size("1TB"), 1'000'000'000'000u);
}

TEST(ParseByteSizeTest, CaseSpacesAndFractions) {
  EXPECT_EQ(Size("10gib"), 10ull << 30);
  EXPECT_EQ(Size("10 GiB"), 10ull << 30);
  EXPECT_EQ(Size(" 1kb "), 1000u);
  EXPECT_EQ(Size("1.5KiB"), 1536u);
  EXPECT_EQ(Size("0.5GiB"), 512ull << 20);
  EXPECT_EQ(Size("1.0001KB"), 1000u);  // rounded down to whole bytes
}

TEST(ParseByteSizeTest, RejectsMalformedAndOverflow) {
  for (std::string_view bad : {"", "-1", "-1GiB", "10QB", "GiB", "1.5", "1,5GiB", "ten", "1 2GiB",
                               "20000PiB", "18446744073709551616", "17179869184GiB"}) {
    Result<uint64_t> parsed = ParseByteSize(bad);
    ASSERT_FALSE(parsed) << "accepted \"" << bad << "\" as " << *parsed;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(parsed.error().message(), HasSubstr("is not a valid size"));
  }
  EXPECT_THAT(ParseByteSize("10QB").error().message(), HasSubstr("unknown unit \"QB\""));
  EXPECT_THAT(ParseByteSize("20000PiB").error().message(), HasSubstr("does not fit in 64 bits"));
}

TEST(ParseByteRateTest, SizePerSecond) {
  EXPECT_EQ(ParseByteRate("100KiB/s").value(), 102400u);
  EXPECT_EQ(ParseByteRate("1.5MB/s").value(), 1500000u);
  EXPECT_EQ(ParseByteRate(" 512 b/S ").value(), 512u);
  EXPECT_EQ(ParseByteRate("0").value(), 0u);
  EXPECT_EQ(ParseByteRate("0/s").value(), 0u);
}

TEST(ParseByteRateTest, RejectsSizesWithoutPerSecondAndBadSizes) {
  for (std::string_view bad : {"", "100KiB", "/s", "-1KiB/s", "10QB/s", "KiB/s", "5/m"}) {
    Result<uint64_t> parsed = ParseByteRate(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.error().message(), HasSubstr("is not a valid rate")) << bad;
  }
  EXPECT_THAT(ParseByteRate("100KiB").error().message(), HasSubstr("it must end in \"/s\""));
  EXPECT_THAT(ParseByteRate("10QB/s").error().message(), HasSubstr("unknown unit \"QB\""));
}

}  // namespace
}  // namespace berth::config
