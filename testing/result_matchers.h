// File: testing/result_matchers.h
//
// GoogleTest assertions and matchers for berth::Result, so a failed expectation prints the
// error (code, context and message) instead of a byte dump, and tests need not repeat
// `<< result.error().ToString()` after every check. Header-only; include it from tests (they
// link GoogleTest and GoogleMock).
//
//   auto store = Store::Open(options);
//   ASSERT_OK(store);                                      // prints the error on failure
//   ASSERT_OK_AND_ASSIGN(Manifest manifest, ParseManifest(bytes));
//   EXPECT_OK(db->DeleteImages(names));
//   EXPECT_THAT(Reference::Parse("library/UPPER"),
//               FailsWith(ErrorCode::kInvalidArgument, "lowercase"));
//   EXPECT_THAT(store->ReadBlob(digest, 1 << 20), FailsWith(ErrorCode::kNotFound));
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <utility>

#include "berth/base/error.h"
#include "berth/base/result.h"

namespace berth {

// Printers found by argument-dependent lookup, so GoogleTest shows errors and codes by name.
inline void PrintTo(ErrorCode code, std::ostream* out) { *out << ErrorCodeName(code); }

inline void PrintTo(const Error& error, std::ostream* out) {
  *out << ErrorCodeName(error.code()) << ": " << error.ToString();
}

template <typename T>
void PrintTo(const Result<T>& result, std::ostream* out) {
  if (result) {
    *out << "ok";
  } else {
    *out << "error ";
    PrintTo(result.error(), out);
  }
}

namespace testing {

// The predicate behind EXPECT_OK/ASSERT_OK: success, or a failure naming the expression and
// its error.
template <typename T>
::testing::AssertionResult ResultIsOk(const char* expression, const Result<T>& result) {
  if (result) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << expression << " failed with " << ErrorCodeName(result.error().code()) << ": "
         << result.error().ToString();
}

// Matches a failed Result whose error has `code` and whose ToString() (context included)
// contains `phrase` (any text when `phrase` is empty).
MATCHER_P2(FailsWithMatcher, code, phrase, "") {
  if (arg) {
    *result_listener << "succeeded";
    return false;
  }
  const Error& error = arg.error();
  const std::string text = error.ToString();
  if (error.code() != code) {
    *result_listener << "failed with " << ErrorCodeName(error.code()) << " instead of "
                     << ErrorCodeName(code) << ": " << text;
    return false;
  }
  if (text.find(phrase) == std::string::npos) {
    *result_listener << "failed with the right code but without \"" << phrase << "\" in: " << text;
    return false;
  }
  return true;
}

inline auto FailsWith(ErrorCode code, std::string phrase = "") {
  return FailsWithMatcher(code, std::move(phrase));
}

}  // namespace testing
}  // namespace berth

// Non-fatal and fatal checks that a Result succeeded; on failure they print its error.
#define EXPECT_OK(expression) EXPECT_PRED_FORMAT1(::berth::testing::ResultIsOk, expression)
#define ASSERT_OK(expression) ASSERT_PRED_FORMAT1(::berth::testing::ResultIsOk, expression)

// Evaluates `expression` (a Result<T>), fails the test (returning from it) if it failed, else
// moves the value into `lhs`, which may be a declaration:
//   ASSERT_OK_AND_ASSIGN(auto store, Store::Open(options));
#define ASSERT_OK_AND_ASSIGN(lhs, expression) \
  BERTH_ASSERT_OK_AND_ASSIGN_IMPL_(BERTH_CONCAT_(berth_assert_result_, __LINE__), lhs, expression)
#define BERTH_ASSERT_OK_AND_ASSIGN_IMPL_(result, lhs, expression) \
  auto result = (expression);                                     \
  ASSERT_OK(result);                                              \
  lhs = std::move(result).value()
