// File: berth/config/units.h
//
// Parsers for the human-written quantities in berth's configuration: durations ("5m", "1m30s",
// the Go time.ParseDuration syntax containerd uses), byte sizes ("64GiB", "500MB") and byte
// rates ("100KiB/s").
//
// All three are pure functions over their argument; they return kInvalidArgument with a message
// that says what was wrong (it quotes the input, so never pass a secret to them) and what is
// accepted.
//
// Thread safety: pure functions, safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "berth/base/result.h"

namespace berth::config {

// Parses a duration in Go's time.ParseDuration syntax: an optional sign, then one or more
// "<number><unit>" parts, where a number may have a fraction ("1.5h") and a unit is one of
// h, m, s, ms, us (also µs), ns. "0" alone is zero. Examples: "5m", "30s", "1m30s", "250ms".
// Returns kInvalidArgument for an empty string, a missing or unknown unit, a malformed number
// or a value beyond ±292 years (the range of int64 nanoseconds).
Result<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// Parses a byte size: a non-negative number (optionally with a fraction), optional spaces, and
// an optional unit. Units are case-insensitive: B, KB/MB/GB/TB/PB (powers of 1000) and
// KiB/MiB/GiB/TiB/PiB (powers of 1024). No unit means bytes. A fraction is allowed only with a
// unit and the result is rounded down to whole bytes ("1.5KiB" is 1536).
// Examples: "10GiB" (10737418240), "500MB" (500000000), "4096" (4096).
// Returns kInvalidArgument for an empty or malformed string, an unknown unit, or a value that
// does not fit in 64 bits.
Result<uint64_t> ParseByteSize(std::string_view text);

// Parses a rate in bytes per second: a byte size as ParseByteSize() reads it followed by "/s"
// (case-insensitive), e.g. "100KiB/s" (102400), "1.5MB/s" (1500000); "0" alone is zero.
// Returns kInvalidArgument for a missing "/s" or an invalid size.
Result<uint64_t> ParseByteRate(std::string_view text);

}  // namespace berth::config
