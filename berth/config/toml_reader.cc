#include "berth/config/toml_reader.h"

#include <algorithm>
#include <exception>

namespace berth::config::internal {

namespace {

bool IsBareKey(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string KeySegment(std::string_view key) {
  if (IsBareKey(key)) return std::string(key);
  std::string out = "\"";
  for (char c : key) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string ChildPath(std::string_view parent, std::string_view key) {
  if (parent.empty()) return KeySegment(key);
  return fmt::format("{}.{}", parent, KeySegment(key));
}

std::string_view TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

Result<toml::table> ParseToml(std::string_view text, std::string_view source_name) {
  Reader reader(source_name);
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& error) {
    // toml++ describes the problem ("cannot redefine existing table 'x'") and where it is.
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: {}", reader.Site(error.source()), error.description()));
  } catch (const std::exception& error) {
    return Fail(ErrorCode::kInternal,
                fmt::format("{}: parsing TOML failed: {}", source_name, error.what()));
  }
}

std::string Reader::Site(const Entry& entry) const {
  const toml::source_region& key_region = entry.key.source();
  if (key_region.begin.line > 0) return Site(key_region);
  return Site(entry.node.source());
}

std::string Reader::Site(const toml::source_region& region) const {
  if (region.begin.line == 0) return source_;
  return fmt::format("{}:{}:{}", source_, region.begin.line, region.begin.column);
}

Error Reader::Problem(const Entry& entry, std::string_view problem) const {
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{}: {} {}", Site(entry), entry.path, problem));
}

Error Reader::WrongType(const Entry& entry, std::string_view expected) const {
  return Problem(entry, fmt::format("must be {}, got {}", expected, TypeName(entry.node)));
}

Error Reader::UnknownKey(const Entry& entry, std::string_view table_name,
                         std::span<const std::string_view> known) const {
  std::string_view name = entry.key.str();
  std::string_view closest;
  size_t best = 3;  // suggest only near misses: up to two edits
  for (std::string_view candidate : known) {
    size_t distance = EditDistance(name, candidate);
    if (distance < best) {
      best = distance;
      closest = candidate;
    }
  }
  std::string hint;
  if (!closest.empty()) {
    hint = fmt::format("did you mean {}?", closest);
  } else {
    hint = fmt::format("the keys of {} are {}", table_name, fmt::join(known, ", "));
  }
  return Error(ErrorCode::kInvalidArgument,
               fmt::format("{}: unknown key {} ({})", Site(entry), entry.path, hint));
}

Result<const toml::table*> Reader::Table(const Entry& entry) const {
  const toml::table* table = entry.node.as_table();
  if (table == nullptr) return Fail(WrongType(entry, "a table"));
  return table;
}

Result<std::string> Reader::String(const Entry& entry) const {
  const toml::value<std::string>* value = entry.node.as_string();
  if (value == nullptr) return Fail(WrongType(entry, "a string"));
  return value->get();
}

Result<bool> Reader::Bool(const Entry& entry) const {
  const toml::value<bool>* value = entry.node.as_boolean();
  if (value == nullptr) return Fail(WrongType(entry, "a boolean (true or false)"));
  return value->get();
}

Result<int64_t> Reader::Integer(const Entry& entry) const {
  const toml::value<int64_t>* value = entry.node.as_integer();
  if (value == nullptr) return Fail(WrongType(entry, "an integer"));
  return value->get();
}

Result<std::vector<std::string>> Reader::StringArray(const Entry& entry,
                                                     bool allow_empty_strings) const {
  const toml::array* array = entry.node.as_array();
  if (array == nullptr) return Fail(WrongType(entry, "an array of strings"));
  std::vector<std::string> out;
  out.reserve(array->size());
  for (size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    const toml::value<std::string>* value = element.as_string();
    std::string element_path = fmt::format("{}[{}]", entry.path, i);
    if (value == nullptr) {
      return Fail(Error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: {} must be a string, got {}", Site(element.source()),
                                    element_path, TypeName(element))));
    }
    if (!allow_empty_strings && value->get().empty()) {
      return Fail(
          Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: {} must not be empty", Site(element.source()), element_path)));
    }
    out.push_back(value->get());
  }
  return out;
}

}  // namespace berth::config::internal
