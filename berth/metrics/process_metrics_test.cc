#include "berth/metrics/process_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <regex>
#include <string>

namespace berth::metrics {
namespace {

TEST(ProcessStatTest, ParsesFieldsAfterACommandWithSpacesAndParentheses) {
  // Fields as proc(5) numbers them: 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss.
  const std::string stat =
      "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 4 0 12345 "
      "104857600 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  ProcessStat parsed;
  ASSERT_TRUE(ParseProcessStat(stat, 100, parsed));
  EXPECT_DOUBLE_EQ(parsed.cpu_seconds, 4.0);
  EXPECT_DOUBLE_EQ(parsed.start_seconds_after_boot, 123.45);
  EXPECT_DOUBLE_EQ(parsed.virtual_bytes, 104857600);
  EXPECT_DOUBLE_EQ(parsed.resident_pages, 2048);
  EXPECT_FALSE(ParseProcessStat("4242 (short) S 1 2 3", 100, parsed));
  EXPECT_FALSE(ParseProcessStat("no parenthesis", 100, parsed));
}

// The value of the unlabeled series `name` in `text`, or -1.
double ValueOf(const std::string& text, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(text, match, std::regex("\n" + name + " ([^\n]+)\n"))) return -1;
  return std::stod(match[1]);
}

TEST(ProcessMetricsTest, ThisProcessMeasuresItself) {
  Registry registry;
  AddProcessMetrics(registry);
  const std::string text = "\n" + registry.Render();
  EXPECT_GT(ValueOf(text, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(ValueOf(text, "process_virtual_memory_bytes"),
            ValueOf(text, "process_resident_memory_bytes"));
  EXPECT_GE(ValueOf(text, "process_open_fds"), 3);  // stdin, stdout, stderr at least
  EXPECT_GT(ValueOf(text, "process_max_fds"), ValueOf(text, "process_open_fds"));
  EXPECT_GE(ValueOf(text, "process_cpu_seconds_total"), 0);
  const double started = ValueOf(text, "process_start_time_seconds");
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(started, now + 1);
  EXPECT_GT(started, now - 3600);  // a test process started less than an hour ago
  EXPECT_THAT(text, ::testing::HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
}

}  // namespace
}  // namespace berth::metrics
