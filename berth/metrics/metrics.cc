#include "berth/metrics/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <variant>

#include "berth/base/check.h"

namespace berth::metrics {
namespace {

bool IsMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool IsLabelName(std::string_view name) {
  return IsMetricName(name) && name.find(':') == std::string_view::npos && !name.starts_with("__");
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` for the names and values, with `extra` (le="…") last; "" when there are none.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     std::string_view extra = {}) {
  if (names.empty() && extra.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += fmt::format("{}=\"{}\"", names[i], EscapeLabelValue(values[i]));
  }
  if (!extra.empty()) {
    if (!names.empty()) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void AddDouble(std::atomic<double>& target, double amount) {
  target.fetch_add(amount, std::memory_order_relaxed);
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // The shortest text that reads back as the same double: "3", "0.25", "1e+21".
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  BERTH_CHECK(error == std::errc());
  return std::string(buffer, end);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Counter::Increment(double amount) {
  if (amount > 0) AddDouble(value_, amount);
}

void Gauge::Add(double amount) { AddDouble(value_, amount); }

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i + 1 < bounds_.size(); ++i) {
    BERTH_CHECK(bounds_[i] < bounds_[i + 1]) << "histogram bounds must increase";
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // The first bucket whose upper bound holds the value (le is inclusive); +Inf past the last.
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  AddDouble(sum_, value);
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot snapshot;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  snapshot.count = running;
  return snapshot;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  BERTH_CHECK(start > 0 && factor > 1 && count > 0);
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& values) {
  BERTH_CHECK(values.size() == label_names_.size())
      << name_ << " takes " << label_names_.size() << " label values, got " << values.size();
  std::lock_guard lock(mutex_);
  std::unique_ptr<T>& series = series_[values];
  if (!series) series = make_();
  return *series;
}

template <typename T>
T& Family<T>::WithLabels(std::initializer_list<std::string_view> values) {
  return WithLabels(std::vector<std::string>(values.begin(), values.end()));
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  MetricType type;
  std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
               std::unique_ptr<HistogramFamily>>
      family;
};

Registry::Registry() = default;
Registry::~Registry() = default;

void Registry::CheckNewName(const std::string& name, MetricType type,
                            const std::vector<std::string>& label_names) {
  BERTH_CHECK(IsMetricName(name)) << "bad metric name " << name;
  for (const std::string& label : label_names) {
    BERTH_CHECK(IsLabelName(label)) << name << ": bad label name " << label;
    BERTH_CHECK(type != MetricType::kHistogram || label != "le") << name << ": label le";
  }
  for (const auto& entry : families_) {
    std::visit([&](const auto& family) { BERTH_CHECK(family->name() != name) << name << " twice"; },
               entry->family);
  }
}

CounterFamily& Registry::AddCounter(std::string name, std::string help,
                                    std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kCounter, label_names);
  const bool single = label_names.empty();
  std::unique_ptr<CounterFamily> family(
      new CounterFamily(std::move(name), std::move(help), std::move(label_names),
                        [] { return std::make_unique<Counter>(); }));
  CounterFamily& result = *family;
  if (single) result.WithLabels(std::vector<std::string>{});
  families_.push_back(std::make_unique<Entry>(Entry{MetricType::kCounter, std::move(family)}));
  return result;
}

GaugeFamily& Registry::AddGauge(std::string name, std::string help,
                                std::vector<std::string> label_names) {
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kGauge, label_names);
  const bool single = label_names.empty();
  std::unique_ptr<GaugeFamily> family(new GaugeFamily(std::move(name), std::move(help),
                                                      std::move(label_names),
                                                      [] { return std::make_unique<Gauge>(); }));
  GaugeFamily& result = *family;
  if (single) result.WithLabels(std::vector<std::string>{});
  families_.push_back(std::make_unique<Entry>(Entry{MetricType::kGauge, std::move(family)}));
  return result;
}

HistogramFamily& Registry::AddHistogram(std::string name, std::string help,
                                        std::vector<std::string> label_names,
                                        const std::vector<double>& bounds) {
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kHistogram, label_names);
  // Checks the bounds now rather than at the first observation.
  Histogram check(bounds);
  const bool single = label_names.empty();
  std::unique_ptr<HistogramFamily> family(
      new HistogramFamily(std::move(name), std::move(help), std::move(label_names),
                          [bounds] { return std::make_unique<Histogram>(bounds); }));
  HistogramFamily& result = *family;
  if (single) result.WithLabels(std::vector<std::string>{});
  families_.push_back(std::make_unique<Entry>(Entry{MetricType::kHistogram, std::move(family)}));
  return result;
}

void Registry::AddCollector(std::function<void()> collect) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collect));
}

namespace {

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Counter& counter) {
  out += fmt::format("{}{} {}\n", name, LabelSet(names, values), FormatValue(counter.value()));
}

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Gauge& gauge) {
  out += fmt::format("{}{} {}\n", name, LabelSet(names, values), FormatValue(gauge.value()));
}

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Histogram& histogram) {
  const Histogram::Snapshot snapshot = histogram.Read();
  const std::vector<double>& bounds = histogram.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    const std::string le = i < bounds.size() ? FormatValue(bounds[i]) : "+Inf";
    out += fmt::format("{}_bucket{} {}\n", name, LabelSet(names, values, "le=\"" + le + "\""),
                       snapshot.cumulative[i]);
  }
  out += fmt::format("{}_sum{} {}\n", name, LabelSet(names, values), FormatValue(snapshot.sum));
  out += fmt::format("{}_count{} {}\n", name, LabelSet(names, values), snapshot.count);
}

}  // namespace

std::string Registry::Render() const {
  std::lock_guard render_lock(render_mutex_);
  std::vector<std::function<void()>> collectors;
  std::vector<const Entry*> entries;
  {
    std::lock_guard lock(mutex_);
    collectors = collectors_;
    for (const auto& entry : families_) entries.push_back(entry.get());
  }
  for (const auto& collect : collectors) collect();

  auto name_of = [](const Entry* entry) {
    return std::visit([](const auto& family) -> const std::string& { return family->name(); },
                      entry->family);
  };
  std::sort(entries.begin(), entries.end(),
            [&](const Entry* a, const Entry* b) { return name_of(a) < name_of(b); });
  std::string out;
  for (const Entry* entry : entries) {
    std::visit(
        [&](const auto& family) {
          std::lock_guard lock(family->mutex_);
          if (family->series_.empty()) return;
          out += fmt::format("# HELP {} {}\n", family->name_, EscapeHelp(family->help_));
          out += fmt::format("# TYPE {} {}\n", family->name_, TypeName(entry->type));
          for (const auto& [values, series] : family->series_) {
            RenderSeries(out, family->name_, family->label_names_, values, *series);
          }
        },
        entry->family);
  }
  return out;
}

}  // namespace berth::metrics
