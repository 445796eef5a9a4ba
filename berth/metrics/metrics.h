// File: berth/metrics/metrics.h
//
// A small Prometheus client: counters, gauges and histograms, each a family of series told apart
// by label values, kept in a Registry that renders them in Prometheus' text exposition format
// (version 0.0.4), the format berthd serves on metrics_address (http_server.h).
//
//   metrics::Registry registry;
//   metrics::CounterFamily& pulls = registry.AddCounter(
//       "berth_pulls_total", "Image pulls by outcome.", {"code"});
//   pulls.WithLabels({"OK"}).Increment();
//   std::string text = registry.Render();
//
// Vocabulary. A family has a name, a help text and label names fixed when it is registered; a
// series is one combination of label values, created on first use and kept for the registry's
// life (cardinality is the caller's to bound: label values must come from small sets, such as
// gRPC code names or registry hosts, never references or anything carrying credentials).
//
// Rendering. Render() runs the registered collectors (which refresh gauges computed from state,
// such as disk usage), then writes each family that has at least one series, in name order:
// `# HELP` (backslash and newline escaped), `# TYPE`, then its series in label-value order. Label
// values escape backslash, double quote and newline. Numbers are written in the shortest form
// that reads back to the same double, and as +Inf, -Inf and NaN. A histogram series is written
// as cumulative `_bucket{le="…"}` lines ending with le="+Inf", then `_sum` and `_count`.
//
// Names are checked when a family is registered (BERTH_CHECK: a bad name is a bug, not an
// input): metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and
// do not start with "__", a histogram has no label "le", and no name is registered twice.
//
// Thread safety: every method may be called from any thread. Updating a series is a few atomic
// operations; WithLabels() takes its family's mutex, so a hot path may look its series up once
// and keep the reference, which stays valid for the registry's life.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace berth::metrics {

// A value that only goes up (reset only when the process restarts).
class Counter {
 public:
  // REQUIRES: amount >= 0 (a negative amount is ignored).
  void Increment(double amount = 1);
  // For a collector mirroring a counter kept elsewhere (the kernel's CPU time of the process):
  // sets the value outright. REQUIRES: the source only goes up.
  void Mirror(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in buckets by upper bound, with their sum and count.
class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, strictly increasing, without +Inf (always added).
  explicit Histogram(const std::vector<double>& bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf last
    double sum = 0;
    uint64_t count = 0;  // == cumulative.back()
  };
  // A consistent-enough copy: count is the +Inf bucket's, so the two always agree even while
  // other threads observe (sum may then lag one observation behind).
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // not cumulative; bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// Bucket bounds: `count` bounds from `start`, each `factor` times the previous.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// One family's series. T is Counter, Gauge or Histogram.
template <typename T>
class Family {
 public:
  // The series with these label values (one per label name, in order), created on first use.
  // REQUIRES: as many values as the family has label names (BERTH_CHECK).
  T& WithLabels(std::initializer_list<std::string_view> values);
  T& WithLabels(const std::vector<std::string>& values);

  const std::string& name() const { return name_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        make_(std::move(make)) {}

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class Registry {
 public:
  Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  // Register a family; the reference is valid for the registry's life. A family without label
  // names has its one series from the start (rendered as 0 before any update).
  CounterFamily& AddCounter(std::string name, std::string help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(std::string name, std::string help,
                        std::vector<std::string> label_names = {});
  HistogramFamily& AddHistogram(std::string name, std::string help,
                                std::vector<std::string> label_names,
                                const std::vector<double>& bounds);

  // `collect` runs at the start of every Render(), one Render at a time, to set gauges from
  // state measured then (it may block: disk usage). It must outlive the registry's renders.
  void AddCollector(std::function<void()> collect);

  // The exposition (see the file comment). Blocks while the collectors run.
  std::string Render() const;

 private:
  struct Entry;
  void CheckNewName(const std::string& name, MetricType type,
                    const std::vector<std::string>& label_names);

  mutable std::mutex mutex_;         // families_ and collectors_
  mutable std::mutex render_mutex_;  // one Render at a time
  std::vector<std::unique_ptr<Entry>> families_;
  std::vector<std::function<void()>> collectors_;
};

// The exposition's spellings, exposed for tests: a number ("1.5", "+Inf", "NaN"), a label value
// inside its quotes, and a HELP text.
std::string FormatValue(double value);
std::string EscapeLabelValue(std::string_view value);
std::string EscapeHelp(std::string_view help);

// The Content-Type of Render()'s text.
inline constexpr std::string_view kExpositionContentType =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace berth::metrics
