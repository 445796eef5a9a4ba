// File: fuzz/fuzz_check.h
//
// FUZZ_CHECK(condition, message): the invariant a fuzz target asserts about a parser's result.
// When it does not hold, the target prints the condition and `message` and aborts, which
// libFuzzer reports as a crash and saves the input (crash-<sha1>) for reproduction.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace berth::fuzz {

[[noreturn]] inline void InvariantFailed(const char* condition, std::string_view message,
                                         const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s: %.*s\n", file, line, condition,
               static_cast<int>(message.size()), message.data());
  std::abort();
}

}  // namespace berth::fuzz

#define FUZZ_CHECK(condition, message)                                                           \
  do {                                                                                           \
    if (!(condition)) ::berth::fuzz::InvariantFailed(#condition, (message), __FILE__, __LINE__); \
  } while (0)
