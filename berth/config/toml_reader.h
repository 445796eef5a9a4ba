// File: berth/config/toml_reader.h
//
// Internal to berth/config: the helpers that config.cc and hosts_dir.cc share to read a parsed
// toml++ document strictly and to word their errors the same way. Not part of the module's
// public API; other modules include config.h or hosts_dir.h instead.
//
// Every error built here is kInvalidArgument and reads
//   <source>:<line>:<column>: <key path> <problem>
// The problem follows the key path after a space, never after a colon, because Error runs
// RedactSecrets() and would blank the text after "…password:". Values are only quoted by the
// helpers that say so (Choice), so secrets never reach a message through the others.
//
// Thread safety: Reader is an immutable value; the functions are pure.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "berth/base/error.h"
#include "berth/base/result.h"

namespace berth::config::internal {

// One segment of a key path as it would be written in TOML: bare if it can be, else quoted
// ("docker.io" → "\"docker.io\"").
std::string KeySegment(std::string_view key);

// `parent` + "." + KeySegment(key), or just the segment when `parent` is empty.
std::string ChildPath(std::string_view parent, std::string_view key);

// "a string", "an integer", "a table", … for messages.
std::string_view TypeName(const toml::node& node);

// Parses `text` as TOML. A syntax error (duplicate keys included) is kInvalidArgument reading
// "<source_name>:<line>:<column>: <toml++'s description>".
Result<toml::table> ParseToml(std::string_view text, std::string_view source_name);

// A key/value pair being read, with its full key path for messages. Refers into a document
// that must outlive it.
struct Entry {
  const toml::key& key;
  const toml::node& node;
  std::string path;
};

// Reads typed values out of entries and builds located errors; see the file comment.
class Reader {
 public:
  explicit Reader(std::string_view source_name) : source_(source_name) {}

  const std::string& source() const { return source_; }

  // "file:line:column" of the place a key was written (or of its value, when toml++ did not
  // record the key's place); just "file" when neither is known.
  std::string Site(const Entry& entry) const;
  std::string Site(const toml::source_region& region) const;

  // "<site>: <path> <problem>".
  Error Problem(const Entry& entry, std::string_view problem) const;
  // "<site>: <path> must be <expected>, got <type>".
  Error WrongType(const Entry& entry, std::string_view expected) const;
  // "<site>: unknown key <path> (did you mean <key>?)", or listing `known` when nothing is close.
  Error UnknownKey(const Entry& entry, std::string_view table_name,
                   std::span<const std::string_view> known) const;
  Error UnknownKey(const Entry& entry, std::string_view table_name,
                   std::initializer_list<std::string_view> known) const {
    return UnknownKey(entry, table_name, std::span(known.begin(), known.size()));
  }

  Result<const toml::table*> Table(const Entry& entry) const;
  Result<std::string> String(const Entry& entry) const;
  Result<bool> Bool(const Entry& entry) const;
  Result<int64_t> Integer(const Entry& entry) const;

  // An array of strings. `allow_empty_strings` false rejects "" elements. Elements are never
  // quoted in errors.
  Result<std::vector<std::string>> StringArray(const Entry& entry,
                                               bool allow_empty_strings = false) const;

  // A string that must be one of `choices`; the value is quoted in the error (never use this
  // for secrets).
  template <typename Enum>
  Result<Enum> Choice(const Entry& entry,
                      std::initializer_list<std::pair<std::string_view, Enum>> choices) const {
    BERTH_ASSIGN_OR_RETURN(std::string text, String(entry));
    for (const auto& [name, value] : choices) {
      if (text == name) return value;
    }
    std::vector<std::string> names;
    for (const auto& choice : choices) names.push_back(fmt::format("\"{}\"", choice.first));
    return Fail(
        Problem(entry, fmt::format("must be one of {}; got \"{}\"", fmt::join(names, ", "), text)));
  }

 private:
  std::string source_;
};

}  // namespace berth::config::internal
