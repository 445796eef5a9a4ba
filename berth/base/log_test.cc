#include "berth/base/log.h"

#include <mutex>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

namespace berth::log {
namespace {

TEST(LogTest, FormatsKeyValueFields) {
  EXPECT_EQ(FormatLine("pull.done", {{"ref", "docker.io/library/busybox:latest"}, {"ms", 812}}),
            "pull.done ref=docker.io/library/busybox:latest ms=812");
  EXPECT_EQ(FormatLine("e", {{"msg", "two words"}, {"empty", ""}}),
            R"(e msg="two words" empty="")");
}

TEST(LogTest, SecretFieldsAreRedacted) {
  std::string line = FormatLine("auth", {{"user", "bob"}, {"password", "hunter2"},
                                         {"creds", Secret("s3cret")}});
  EXPECT_EQ(line, "auth user=bob password=<redacted> creds=<redacted>");
}

TEST(LogTest, SinkRedactsFreeText) {
  std::ostringstream captured;
  AddSinkForTest(std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
  Info("http.request", {{"header", "Authorization: Bearer abc.def"},
                        {"url", "https://u:pw123@h/x?sig=1"}});
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
