// The memory check of a training run (see memory_check.h).
#include "cli/memory_check.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "polyak/core/error.h"
#include "polyak/models/memory.h"

namespace polyak::cli {

double parse_bytes(const char* flag, const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double number = std::strtod(begin, &end);
  std::string unit(end);
  for (const char* suffix : {"iB", "B"}) {
    const std::string s = suffix;
    if (unit.size() > s.size() && unit.compare(unit.size() - s.size(), s.size(), s) == 0) {
      unit.resize(unit.size() - s.size());
      break;
    }
  }
  double scale = 0;
  if (unit.empty())
    scale = 1;
  else if (unit == "K" || unit == "k")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    scale = 1024.0 * 1024 * 1024 * 1024;
  POLYAK_CHECK(end != begin && scale > 0 && number > 0 && std::isfinite(number * scale),
               "polyak: ", flag, " is '", text,
               "', expected a positive size such as 8G, 512MiB or 1073741824");
  return number * scale;
}

std::optional<double> max_memory_bytes(const TrainOptions& o) {
  if (o.max_memory.empty()) return std::nullopt;
  return parse_bytes("--max-memory", o.max_memory);
}

void check_training_memory(const TrainOptions& o, const TransformerConfig& config, Device device) {
  std::ostringstream flags;
  flags << "--model " << o.model << " --layers " << o.layers << " --d-model " << o.d_model
        << " --heads " << o.heads << " --ff " << o.ff << " --batch " << o.batch << " --length "
        << o.length;
  // The kind flags that set a field of this model's kinds (Performer's --features).
  const auto sets_a_field = [&](const std::string& flag) {
    for (const Params* params : {&config.attention_params, &config.connection_params})
      if (!params->empty())
        for (const ParamField& f : params->schema()->fields)
          if (f.flag == flag) return true;
    return false;
  };
  for (const auto& [flag, value] : o.kind_flags)
    if (sets_a_field(flag))
      std::visit([&, flag = flag](const auto& v) { flags << " " << flag << " " << v; }, value);
  check_memory(
      "polyak", estimate_training_memory(config, o.batch, o.length), device, max_memory_bytes(o),
      flags.str(),
      "make the model, the batch or the sequences smaller, or give --max-memory to try anyway");
}

}  // namespace polyak::cli
