// File: berth/base/log.h
//
// Structured logging for berth's service boundaries (daemon requests, CLI commands, pull steps).
// Libraries return Errors rather than logging them.
//
// A line is an event name followed by key=value fields:
//   2026-11-24T10:00:00.123Z info pull.done ref=docker.io/library/busybox:latest ms=812
//
// Redaction happens twice, so a credential cannot reach a log sink:
//  1. a field whose key names a secret (IsSecretKey: password, token, auth, …) is written as
//     <redacted>, and a Secret value always formats as <redacted>;
//  2. every formatted line passes through RedactSecrets() in the sink, which also catches
//     Authorization values, URL userinfo and signed-URL query strings inside free text.
//
// Thread safety: all functions may be called from any thread. Before the first Init(), lines go
// to stderr at level info.
#pragma once

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "berth/base/redact.h"
#include "berth/base/result.h"

namespace berth::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace", "debug", "info", "warn" (also "warning"), "error", "off". kInvalidArgument
// otherwise.
Result<Level> ParseLevel(std::string_view name);

struct LogOptions {
  Level level = Level::kInfo;
  // When set, lines go to this file (appended) instead of stderr.
  std::string file;
};

// Installs the process-wide logger. Safe to call again: it replaces the previous logger, and
// with it any sink AddSinkForTest() added. kInvalidArgument when options.file cannot be opened.
Result<void> Init(const LogOptions& options);

// Adds a sink (tests use this to capture lines). The sink receives already-redacted lines.
void AddSinkForTest(std::shared_ptr<spdlog::sinks::sink> sink);

// One key=value field. The value is formatted with fmt, so Secret prints <redacted>.
struct Field {
  template <typename T>
  Field(std::string_view field_key, const T& field_value)
      : key(field_key), value(fmt::format("{}", field_value)) {}
  std::string_view key;
  std::string value;
};

// Formats one line: event, then fields as key=value, with secret-named keys (IsSecretKey)
// redacted. A value is cut to at most 4 KiB (AbbreviateMiddle) and quoted when it is empty or
// has a space, tab, newline, '"' or '='. Exposed for tests.
std::string FormatLine(std::string_view event, std::initializer_list<Field> fields);

void Write(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void Debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kDebug, event, fields);
}
inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kError, event, fields);
}
inline void Trace(std::string_view event, std::initializer_list<Field> fields = {}) {
  Write(Level::kTrace, event, fields);
}

// Whether a line at `level` would be written. Fields are formatted before Write() sees the
// level, so a caller with many or costly lines (per-entry traces) checks this first.
bool Enabled(Level level);

}  // namespace berth::log
