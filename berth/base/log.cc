#include "berth/base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "berth/base/abbreviate.h"

namespace berth::log {
namespace {

constexpr char kLoggerName[] = "berth";
constexpr char kPattern[] = "%Y-%m-%dT%H:%M:%S.%eZ %l %v";
constexpr size_t kMaxFieldBytes = 4096;

// Wraps the real sinks: every line is scrubbed by RedactSecrets before it is written anywhere.
class RedactingSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void Add(std::shared_ptr<spdlog::sinks::sink> target) {
    std::lock_guard lock(mutex_);
    target->set_formatter(
        std::make_unique<spdlog::pattern_formatter>(kPattern, spdlog::pattern_time_type::utc));
    targets_.push_back(std::move(target));
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string clean = RedactSecrets(std::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg copy = msg;
    copy.payload = clean;
    for (auto& target : targets_) {
      if (target->should_log(copy.level)) target->log(copy);
    }
  }
  void flush_() override {
    for (auto& target : targets_) target->flush();
  }

 private:
  std::vector<std::shared_ptr<spdlog::sinks::sink>> targets_;
};

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::mutex g_mutex;
std::shared_ptr<RedactingSink> g_sink;
std::shared_ptr<spdlog::logger> g_logger;

std::shared_ptr<spdlog::logger> Logger() {
  std::lock_guard lock(g_mutex);
  if (!g_logger) {
    g_sink = std::make_shared<RedactingSink>();
    g_sink->Add(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    g_logger = std::make_shared<spdlog::logger>(kLoggerName, g_sink);
    g_logger->set_pattern(kPattern, spdlog::pattern_time_type::utc);
    g_logger->set_level(spdlog::level::info);
  }
  return g_logger;
}

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\t' || c == '\n') return true;
  }
  return false;
}

void AppendQuoted(std::string& out, std::string_view value) {
  out.push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace

Result<Level> ParseLevel(std::string_view name) {
  if (name == "trace") return Level::kTrace;
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return Fail(
      ErrorCode::kInvalidArgument,
      fmt::format("unknown log level \"{}\" (use trace, debug, info, warn, error or off)", name));
}

Result<void> Init(const LogOptions& options) {
  std::shared_ptr<spdlog::sinks::sink> target;
  if (options.file.empty()) {
    target = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      target = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
    } catch (const spdlog::spdlog_ex& e) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("cannot open log file {}: {}", options.file, e.what()));
    }
  }
  auto sink = std::make_shared<RedactingSink>();
  sink->Add(std::move(target));
  auto logger = std::make_shared<spdlog::logger>(kLoggerName, sink);
  logger->set_pattern(kPattern, spdlog::pattern_time_type::utc);
  logger->set_level(ToSpd(options.level));
  logger->flush_on(spdlog::level::warn);
  std::lock_guard lock(g_mutex);
  g_sink = std::move(sink);
  g_logger = std::move(logger);
  return Ok();
}

void AddSinkForTest(std::shared_ptr<spdlog::sinks::sink> sink) {
  Logger();  // make sure the default exists
  std::lock_guard lock(g_mutex);
  g_sink->Add(std::move(sink));
}

std::string FormatLine(std::string_view event, std::initializer_list<Field> fields) {
  std::string line(event);
  for (const Field& field : fields) {
    line.push_back(' ');
    line.append(field.key);
    line.push_back('=');
    // Values may echo hostile input of any size (a megabyte image name): keep lines short.
    std::string bounded = AbbreviateMiddle(field.value, kMaxFieldBytes);
    std::string_view value = IsSecretKey(field.key) ? kRedacted : std::string_view(bounded);
    if (NeedsQuotes(value)) {
      AppendQuoted(line, value);
    } else {
      line.append(value);
    }
  }
  return line;
}

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  auto logger = Logger();
  spdlog::level::level_enum spd_level = ToSpd(level);
  if (!logger->should_log(spd_level)) return;
  logger->log(spd_level, "{}", FormatLine(event, fields));
}

bool Enabled(Level level) { return Logger()->should_log(ToSpd(level)); }

}  // namespace berth::log
