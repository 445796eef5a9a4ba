// File: berth/base/result.h
//
// Result<T> is either a T or a berth::Error; Result<void> is success or an Error. It is a thin
// [[nodiscard]] layer over tl::expected so that moving to std::expected is a change to this file.
// Code should stick to has_value()/value()/error()/*/->/and_then()/or_else()/map()/map_error().
//
//   Result<Manifest> ParseManifest(std::string_view json);
//   BERTH_ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(bytes));
//   BERTH_RETURN_IF_ERROR(store.Delete(digest));
//   return Fail(ErrorCode::kNotFound, "no such blob");
#pragma once

#include <string>
#include <tl/expected.hpp>
#include <utility>

#include "berth/base/error.h"

namespace berth {

template <typename T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using tl::expected<T, Error>::expected;
  Result(tl::expected<T, Error> other)  // NOLINT: implicit, so and_then() chains compose.
      : tl::expected<T, Error>(std::move(other)) {}
};

// The failure value: `return Fail(ErrorCode::kNotFound, "…");`
inline tl::unexpected<Error> Fail(ErrorCode code, std::string_view message) {
  return tl::unexpected<Error>(Error(code, message));
}
inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

// The success value of Result<void>: `return Ok();`
inline Result<void> Ok() { return {}; }

// Adds an outer context frame to a failed result; success passes through.
template <typename T>
Result<T> WithContext(Result<T> result, std::string frame) {
  if (!result) return Fail(std::move(result).error().WithContext(std::move(frame)));
  return result;
}

}  // namespace berth

#define BERTH_CONCAT_INNER_(a, b) a##b
#define BERTH_CONCAT_(a, b) BERTH_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result) from the enclosing function if it failed.
#define BERTH_RETURN_IF_ERROR(expr)                                              \
  do {                                                                           \
    if (auto berth_result_ = (expr); !berth_result_) {                           \
      return ::tl::unexpected<::berth::Error>(std::move(berth_result_).error()); \
    }                                                                            \
  } while (false)

// Evaluates `expr` (a Result<T>); on failure returns its error, else moves the value into `lhs`,
// which may be a declaration: BERTH_ASSIGN_OR_RETURN(auto blob, store.Read(digest));
// `lhs` and the temporary's name cannot be parenthesized (a declaration), hence the NOLINT.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define BERTH_ASSIGN_OR_RETURN(lhs, expr) \
  BERTH_ASSIGN_OR_RETURN_IMPL_(BERTH_CONCAT_(berth_result_, __LINE__), lhs, expr)
#define BERTH_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                         \
  auto tmp = (expr);                                                         \
  if (!tmp) return ::tl::unexpected<::berth::Error>(std::move(tmp).error()); \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
