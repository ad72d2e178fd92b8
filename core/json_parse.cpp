#include "polyak/core/json_parse.h"

#include <set>
#include <vector>

namespace polyak::detail {

StrictJson parse_strict_json(const std::string& text) {
  using json = nlohmann::json;
  StrictJson out;
  std::vector<std::set<std::string>> open_objects;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (out.too_deep) return false;
    const bool opens =
        event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= kMaxJsonNesting) {
      out.too_deep = true;
      return false;
    }
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !out.duplicate)
        out.duplicate.emplace(key, open_objects.size());
    }
    return true;
  };
  out.value = json::parse(text, cb);
  return out;
}

}  // namespace polyak::detail
