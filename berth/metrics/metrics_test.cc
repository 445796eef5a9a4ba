#include "berth/metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace berth::metrics {
namespace {

using ::testing::HasSubstr;

TEST(FormatValueTest, ShortestRoundTripAndSpecials) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(-2.5), "-2.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(123456789012), "123456789012");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(std::stod(FormatValue(0.1 + 0.2)), 0.1 + 0.2);
}

TEST(EscapeTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabelValue("plain value"), "plain value");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeLabelValue("tab\tstays"), "tab\tstays");
}

TEST(EscapeTest, HelpEscapesBackslashAndNewlineButNotQuotes) {
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\nthere"), "say \"hi\"\\\\\\nthere");
}

TEST(RegistryTest, RendersCounterWithHelpTypeAndEscapedLabels) {
  Registry registry;
  CounterFamily& requests =
      registry.AddCounter("berth_requests_total", "Requests\nby \\ host.", {"host", "status"});
  requests.WithLabels({"r.local", "200"}).Increment();
  requests.WithLabels({"r.local", "200"}).Increment(2);
  requests.WithLabels({"we\"ird\\\n", "404"}).Increment(0.5);
  requests.WithLabels({"r.local", "200"}).Increment(-4);  // ignored: counters only go up
  EXPECT_EQ(registry.Render(),
            "# HELP berth_requests_total Requests\\nby \\\\ host.\n"
            "# TYPE berth_requests_total counter\n"
            "berth_requests_total{host=\"r.local\",status=\"200\"} 3\n"
            "berth_requests_total{host=\"we\\\"ird\\\\\\n\",status=\"404\"} 0.5\n");
}

TEST(RegistryTest, UnlabeledFamiliesRenderZeroAtOnceAndLabeledOnesOnlyOnceUsed) {
  Registry registry;
  registry.AddGauge("berth_b_bytes", "B.");
  registry.AddCounter("berth_a_total", "A.", {"code"});
  EXPECT_EQ(registry.Render(),
            "# HELP berth_b_bytes B.\n"
            "# TYPE berth_b_bytes gauge\n"
            "berth_b_bytes 0\n");
}

TEST(RegistryTest, FamiliesInNameOrder) {
  Registry registry;
  registry.AddGauge("berth_z", "Z.").WithLabels({}).Set(-1.25);
  registry.AddGauge("berth_a", "A.").WithLabels({}).Add(2);
  const std::string text = registry.Render();
  EXPECT_LT(text.find("berth_a 2\n"), text.find("berth_z -1.25\n"));
}

TEST(HistogramTest, CumulativeBucketsWithInclusiveBoundsInfSumAndCount) {
  Registry registry;
  HistogramFamily& durations = registry.AddHistogram("berth_pull_duration_seconds", "Pull time.",
                                                     {"snapshotter"}, {0.5, 1, 2.5});
  Histogram& overlay = durations.WithLabels({"overlayfs"});
  for (double value : {0.1, 0.5, 0.75, 2.5, 7.0}) overlay.Observe(value);
  EXPECT_EQ(registry.Render(),
            "# HELP berth_pull_duration_seconds Pull time.\n"
            "# TYPE berth_pull_duration_seconds histogram\n"
            "berth_pull_duration_seconds_bucket{snapshotter=\"overlayfs\",le=\"0.5\"} 2\n"
            "berth_pull_duration_seconds_bucket{snapshotter=\"overlayfs\",le=\"1\"} 3\n"
            "berth_pull_duration_seconds_bucket{snapshotter=\"overlayfs\",le=\"2.5\"} 4\n"
            "berth_pull_duration_seconds_bucket{snapshotter=\"overlayfs\",le=\"+Inf\"} 5\n"
            "berth_pull_duration_seconds_sum{snapshotter=\"overlayfs\"} 10.85\n"
            "berth_pull_duration_seconds_count{snapshotter=\"overlayfs\"} 5\n");
}

TEST(HistogramTest, UnlabeledHistogramPutsLeAlone) {
  Registry registry;
  registry.AddHistogram("berth_x_seconds", "X.", {}, {1});
  EXPECT_THAT(registry.Render(), HasSubstr("berth_x_seconds_bucket{le=\"1\"} 0\n"
                                           "berth_x_seconds_bucket{le=\"+Inf\"} 0\n"
                                           "berth_x_seconds_sum 0\n"
                                           "berth_x_seconds_count 0\n"));
}

TEST(HistogramTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(0.5, 2, 4), (std::vector<double>{0.5, 1, 2, 4}));
}

TEST(RegistryTest, CollectorsRunBeforeEachRender) {
  Registry registry;
  Gauge& images = registry.AddGauge("berth_images", "Images.").WithLabels({});
  int runs = 0;
  registry.AddCollector([&] { images.Set(++runs * 10); });
  EXPECT_THAT(registry.Render(), HasSubstr("berth_images 10\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("berth_images 20\n"));
}

TEST(RegistryTest, ConcurrentUpdatesAreAllCounted) {
  Registry registry;
  CounterFamily& counter = registry.AddCounter("berth_c_total", "C.", {"worker"});
  HistogramFamily& histogram = registry.AddHistogram("berth_h_seconds", "H.", {}, {0.5});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.WithLabels({"shared"}).Increment();
        counter.WithLabels({std::to_string(t % 2)}).Increment();
        histogram.WithLabels({}).Observe(i % 2 == 0 ? 0.25 : 1);
      }
    });
  }
  // Renders while they run: every render is well formed (the +Inf bucket equals _count).
  for (int i = 0; i < 20; ++i) {
    const std::string text = registry.Render();
    const size_t inf = text.find("berth_h_seconds_bucket{le=\"+Inf\"} ");
    const size_t count = text.find("berth_h_seconds_count ");
    ASSERT_NE(inf, std::string::npos);
    ASSERT_NE(count, std::string::npos);
    const std::string inf_value = text.substr(inf + 34, text.find('\n', inf) - inf - 34);
    const std::string count_value = text.substr(count + 22, text.find('\n', count) - count - 22);
    EXPECT_EQ(inf_value, count_value);
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter.WithLabels({"shared"}).value(), kThreads * kPerThread);
  EXPECT_EQ(counter.WithLabels({"0"}).value(), kThreads / 2 * kPerThread);
  const Histogram::Snapshot snapshot = histogram.WithLabels({}).Read();
  EXPECT_EQ(snapshot.count, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(snapshot.cumulative[0], uint64_t{kThreads} * kPerThread / 2);
  EXPECT_DOUBLE_EQ(snapshot.sum, kThreads * kPerThread * 0.625);
}

TEST(RegistryDeathTest, BadNamesAreBugs) {
  Registry registry;
  EXPECT_DEATH(registry.AddCounter("9lives", "x"), "bad metric name");
  EXPECT_DEATH(registry.AddCounter("berth_x_total", "x", {"__reserved"}), "bad label name");
  EXPECT_DEATH(registry.AddHistogram("berth_h", "x", {"le"}, {1}), "label le");
  registry.AddGauge("berth_once", "x");
  EXPECT_DEATH(registry.AddGauge("berth_once", "x"), "twice");
  EXPECT_DEATH(registry.AddCounter("berth_y_total", "x", {"a"}).WithLabels({"1", "2"}),
               "takes 1 label values");
  EXPECT_DEATH(registry.AddHistogram("berth_h2", "x", {}, {2, 1}), "must increase");
}

}  // namespace
}  // namespace berth::metrics
