// File: berth/base/abbreviate.h
//
// AbbreviateMiddle bounds text that may carry hostile input of any size (a megabyte image name
// echoed in an error, a log field) before it reaches a log line or a gRPC status, which must
// stay small: gRPC refuses status messages over its metadata limit (8 KiB by default) and a
// one-megabyte log line per request floods the log. The start (outer context) and the end (the
// innermost cause) are kept; the middle is replaced by a note of how much was cut.
//
// Thread safety: a pure function.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace berth {

// Returns `text` unchanged when it has at most `max_bytes` bytes; otherwise about max_bytes / 2
// bytes from each end around "…[N bytes cut]…", never splitting a UTF-8 sequence.
// REQUIRES: max_bytes >= 64.
inline std::string AbbreviateMiddle(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  auto is_continuation = [&](size_t at) {
    return at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80;
  };
  size_t head = max_bytes / 2 - 16;
  while (head > 0 && is_continuation(head)) --head;
  size_t tail_start = text.size() - (max_bytes / 2 - 16);
  while (tail_start < text.size() && is_continuation(tail_start)) ++tail_start;
  return fmt::format("{}…[{} bytes cut]…{}", text.substr(0, head), tail_start - head,
                     text.substr(tail_start));
}

}  // namespace berth
