#include "berth/reference/reference_json.h"

#include <nlohmann/json.hpp>

namespace berth {

std::string ReferenceToJson(const Reference& reference) {
  nlohmann::json out = nlohmann::json::object();
  out["domain"] = reference.domain();
  out["path"] = reference.path();
  out["tag"] = reference.has_tag() ? nlohmann::json(reference.tag()) : nlohmann::json(nullptr);
  out["digest"] =
      reference.digest() ? nlohmann::json(reference.digest()->ToString()) : nlohmann::json(nullptr);
  out["familiar"] = reference.FamiliarString();
  // Every value is ASCII (the grammar allows nothing else), so dump() cannot throw on
  // invalid UTF-8.
  return out.dump();
}

}  // namespace berth
