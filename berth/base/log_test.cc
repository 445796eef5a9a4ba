#include "berth/base/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <mutex>

namespace berth::log {
namespace {

TEST(LogTest, FormatsKeyValueFields) {
  EXPECT_EQ(FormatLine("pull.done", {{"ref", "docker.io/library/busybox:latest"}, {"ms", 812}}),
            "pull.done ref=docker.io/library/busybox:latest ms=812");
  EXPECT_EQ(FormatLine("e", {{"msg", "two words"}, {"empty", ""}}),
            R"(e msg="two words" empty="")");
}

TEST(LogTest, HugeFieldValuesAreCutInTheMiddle) {
  // A megabyte image name sent by a CRI client must not become a megabyte log line.
  std::string ref = "example.com/" + std::string(1 << 20, 'a') + ":tail";
  std::string line = FormatLine("cri.request", {{"ref", ref}, {"code", "INVALID_ARGUMENT"}});
  EXPECT_LT(line.size(), 4200u);
  EXPECT_NE(line.find("ref=\"example.com/aaa"), std::string::npos) << line.substr(0, 100);
  EXPECT_NE(line.find("bytes cut"), std::string::npos);
  EXPECT_NE(line.find("aaa:tail\" code=INVALID_ARGUMENT"), std::string::npos);
}

TEST(LogTest, SecretFieldsAreRedacted) {
  std::string line =
      FormatLine("auth", {{"user", "bob"}, {"password", "hunter2"}, {"creds", Secret("s3cret")}});
  EXPECT_EQ(line, "auth user=bob password=<redacted> creds=<redacted>");
}

TEST(LogTest, SinkRedactsFreeText) {
  std::ostringstream captured;
  AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  Info("http.request",
       {{"header", "Authorization: Bearer abc.def"}, {"url", "https://u:pw123@h/x?sig=1"}});
  std::string out = captured.str();
  EXPECT_NE(out.find("http.request"), std::string::npos) << out;
  EXPECT_EQ(out.find("abc.def"), std::string::npos) << out;
  EXPECT_EQ(out.find("pw123"), std::string::npos) << out;
}

TEST(LogTest, ParseLevel) {
  EXPECT_EQ(ParseLevel("debug").value(), Level::kDebug);
  EXPECT_EQ(ParseLevel("off").value(), Level::kOff);
  EXPECT_EQ(ParseLevel("loud").error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::log
