// File: berth/base/check.h
//
// BERTH_CHECK(cond) << "why"; aborts the process with the message when `cond` is false. For
// invariants whose violation is a bug in berth, never for bad input or environment failures
// (those are Errors).
#pragma once

#include <sstream>
#include <string_view>

namespace berth::internal {

class CheckFailure {
 public:
  CheckFailure(std::string_view condition, std::string_view file, int line);
  [[noreturn]] ~CheckFailure();
  template <typename T>
  CheckFailure& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

}  // namespace berth::internal

#define BERTH_CHECK(cond) \
  if (cond) {             \
  } else                  \
    ::berth::internal::CheckFailure(#cond, __FILE__, __LINE__)
