#include "berth/base/check.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace berth::internal {

CheckFailure::CheckFailure(std::string_view condition, std::string_view file, int line) {
  stream_ << "CHECK failed at " << file << ":" << line << ": " << condition << " ";
}

CheckFailure::~CheckFailure() {
  std::string text = stream_.str();
  std::fprintf(stderr, "%s\n", text.c_str());
  std::abort();
}

}  // namespace berth::internal
