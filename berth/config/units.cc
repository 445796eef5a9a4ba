#include "berth/config/units.h"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>

namespace berth::config {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A decimal number "123", "1.5" or ".5" read from the front of a string.
struct Decimal {
  uint64_t whole = 0;
  // The fraction as fraction_digits / fraction_scale. Digits beyond 18 are dropped, which is
  // far below a nanosecond or a byte for every unit accepted here.
  uint64_t fraction_digits = 0;
  uint64_t fraction_scale = 1;
  bool has_fraction = false;
};

// Consumes a decimal number from the front of `text`. Returns nullopt if there is none or if the
// whole part does not fit in 64 bits (`overflow` tells which).
std::optional<Decimal> ConsumeDecimal(std::string_view& text, bool& overflow) {
  overflow = false;
  Decimal number;
  size_t i = 0;
  bool any_digit = false;
  while (i < text.size() && IsDigit(text[i])) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (__builtin_mul_overflow(number.whole, 10, &number.whole) ||
        __builtin_add_overflow(number.whole, digit, &number.whole)) {
      overflow = true;
      return std::nullopt;
    }
    any_digit = true;
    ++i;
  }
  if (i < text.size() && text[i] == '.') {
    number.has_fraction = true;
    ++i;
    while (i < text.size() && IsDigit(text[i])) {
      if (number.fraction_scale < 1'000'000'000'000'000'000ULL) {
        number.fraction_digits = number.fraction_digits * 10 + static_cast<uint64_t>(text[i] - '0');
        number.fraction_scale *= 10;
      }
      any_digit = true;
      ++i;
    }
  }
  if (!any_digit) return std::nullopt;
  text.remove_prefix(i);
  return number;
}

// Returns number * unit, rounded down, or nullopt on overflow.
std::optional<uint64_t> Scale(const Decimal& number, uint64_t unit) {
  uint64_t value = 0;
  if (__builtin_mul_overflow(number.whole, unit, &value)) return std::nullopt;
  if (number.fraction_digits != 0) {
    // unit / scale in floating point, as Go does; exact enough for nanoseconds and bytes.
    long double part =
        static_cast<long double>(number.fraction_digits) *
        (static_cast<long double>(unit) / static_cast<long double>(number.fraction_scale));
    if (__builtin_add_overflow(value, static_cast<uint64_t>(part), &value)) return std::nullopt;
  }
  return value;
}

struct Unit {
  std::string_view name;
  uint64_t factor;
};

constexpr std::array<Unit, 8> kDurationUnits = {{
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // U+00B5 MICRO SIGN
    {"\xCE\xBCs", 1'000},  // U+03BC GREEK SMALL LETTER MU
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
}};

constexpr uint64_t kKilo = 1000;
constexpr uint64_t kKibi = 1024;
constexpr std::array<Unit, 11> kSizeUnits = {{
    {"b", 1},
    {"kb", kKilo},
    {"mb", kKilo* kKilo},
    {"gb", kKilo* kKilo* kKilo},
    {"tb", kKilo* kKilo* kKilo* kKilo},
    {"pb", kKilo* kKilo* kKilo* kKilo* kKilo},
    {"kib", kKibi},
    {"mib", kKibi* kKibi},
    {"gib", kKibi* kKibi* kKibi},
    {"tib", kKibi* kKibi* kKibi* kKibi},
    {"pib", kKibi* kKibi* kKibi* kKibi* kKibi},
}};

}  // namespace

Result<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  const std::string_view original = text;
  auto invalid = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("\"{}\" is not a valid duration: {} (write it like \"30s\", \"5m\" or "
                            "\"1h30m\"; units are h, m, s, ms, us, ns)",
                            original, why));
  };
  if (text.empty()) return invalid("it is empty");
  bool negative = false;
  if (text.front() == '-' || text.front() == '+') {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return std::chrono::nanoseconds(0);
  if (text.empty()) return invalid("a sign must be followed by a number");

  uint64_t total = 0;
  while (!text.empty()) {
    bool overflow = false;
    std::optional<Decimal> number = ConsumeDecimal(text, overflow);
    if (overflow) return invalid("it is too large");
    if (!number) return invalid("expected a number");
    size_t unit_length = 0;
    while (unit_length < text.size() && text[unit_length] != '.' && !IsDigit(text[unit_length])) {
      ++unit_length;
    }
    std::string_view unit_name = text.substr(0, unit_length);
    text.remove_prefix(unit_length);
    if (unit_name.empty()) return invalid("a number is missing its unit");
    const Unit* unit = nullptr;
    for (const Unit& candidate : kDurationUnits) {
      if (candidate.name == unit_name) unit = &candidate;
    }
    if (unit == nullptr) return invalid(fmt::format("unknown unit \"{}\"", unit_name));
    std::optional<uint64_t> part = Scale(*number, unit->factor);
    if (!part || __builtin_add_overflow(total, *part, &total)) return invalid("it is too large");
  }
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (total > kMax + (negative ? 1 : 0)) return invalid("it is too large");
  if (negative) {
    // -(2^63) is representable; negate in unsigned arithmetic to avoid signed overflow.
    return std::chrono::nanoseconds(static_cast<int64_t>(~total + 1));
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

Result<uint64_t> ParseByteSize(std::string_view text) {
  const std::string_view original = text;
  auto invalid = [&](std::string_view why) {
    return Fail(
        ErrorCode::kInvalidArgument,
        fmt::format("\"{}\" is not a valid size: {} (write it like \"512MiB\", \"10GiB\" or "
                    "\"500MB\"; units are B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, "
                    "PiB)",
                    original, why));
  };
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return invalid("it is empty");
  if (text.front() == '-') return invalid("it is negative");
  bool overflow = false;
  std::optional<Decimal> number = ConsumeDecimal(text, overflow);
  if (overflow) return invalid("it does not fit in 64 bits");
  if (!number) return invalid("expected a number");
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.empty()) {
    if (number->has_fraction) return invalid("a fraction of a byte needs a unit");
    return number->whole;
  }
  std::string unit_name = Lowercase(text);
  for (const Unit& unit : kSizeUnits) {
    if (unit.name == unit_name) {
      std::optional<uint64_t> bytes = Scale(*number, unit.factor);
      if (!bytes) return invalid("it does not fit in 64 bits");
      return *bytes;
    }
  }
  return invalid(fmt::format("unknown unit \"{}\"", text));
}

Result<uint64_t> ParseByteRate(std::string_view text) {
  const std::string_view original = text;
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text == "0") return uint64_t{0};
  auto invalid = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("\"{}\" is not a valid rate: {} (write it like \"100KiB/s\" or "
                            "\"1MB/s\", or \"0\" for none)",
                            original, why));
  };
  if (text.size() < 2 || Lowercase(text.substr(text.size() - 2)) != "/s") {
    return invalid("it must end in \"/s\"");
  }
  text.remove_suffix(2);
  Result<uint64_t> bytes = ParseByteSize(text);
  if (!bytes) {
    // ParseByteSize's message quotes the size without "/s"; keep only its reason.
    std::string why = bytes.error().message();
    size_t colon = why.find(": ");
    size_t paren = why.rfind(" (");
    if (colon != std::string::npos && paren != std::string::npos && paren > colon) {
      why = why.substr(colon + 2, paren - colon - 2);
    }
    return invalid(why);
  }
  return *bytes;
}

}  // namespace berth::config
