#include "polyak/core/params.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

namespace polyak {

std::string format_param(const ParamValue& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return "'" + *s + "'";
  std::ostringstream os;
  std::visit([&](const auto& v) { os << v; }, value);
  return os.str();
}

const char* param_type_name(const ParamValue& value) {
  static const char* const names[] = {"an integer", "a number", "a string"};
  return names[value.index()];
}

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::optional<double> as_number(const ParamValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

}  // namespace

ParamCheck positive_integer() {
  return {[](const ParamValue& v) {
            const auto* i = std::get_if<int64_t>(&v);
            return i && *i >= 1;
          },
          "a positive integer"};
}

ParamCheck non_negative_integer(const std::string& note) {
  return {[](const ParamValue& v) {
            const auto* i = std::get_if<int64_t>(&v);
            return i && *i >= 0;
          },
          "≥ 0 (" + note + ")"};
}

ParamCheck number_in(double lo, double hi, const std::string& interval) {
  const bool lo_closed = !interval.empty() && interval.front() == '[';
  const bool hi_closed = !interval.empty() && interval.back() == ']';
  return {[=](const ParamValue& v) {
            const std::optional<double> x = as_number(v);
            if (!x || !std::isfinite(*x)) return false;
            return (lo_closed ? *x >= lo : *x > lo) && (hi_closed ? *x <= hi : *x < hi);
          },
          "in " + interval};
}

ParamCheck positive_number() {
  return {[](const ParamValue& v) {
            const std::optional<double> x = as_number(v);
            return x && std::isfinite(*x) && *x > 0;
          },
          "a finite value > 0"};
}

ParamCheck one_of(std::vector<std::string> choices) {
  std::string expected = "one of: " + join(choices);
  return {[choices = std::move(choices)](const ParamValue& v) {
            const auto* s = std::get_if<std::string>(&v);
            return s && std::find(choices.begin(), choices.end(), *s) != choices.end();
          },
          std::move(expected)};
}

const ParamField* ParamSchema::find(const std::string& field) const {
  for (const ParamField& f : fields)
    if (f.name == field) return &f;
  return nullptr;
}

Params::Params(const Params& other)
    : schema_(other.schema_),
      value_(other.empty() ? nullptr : schema_->clone(other.value_.get())) {}

Params& Params::operator=(const Params& other) {
  if (this != &other) *this = Params(other);
  return *this;
}

Params Params::defaults(const ParamSchema& schema) {
  Params p;
  p.schema_ = &schema;
  p.value_ = schema.clone(nullptr);
  return p;
}

void Params::check_type(const ParamSchema& wanted) const {
  POLYAK_CHECK(schema_->type == wanted.type, "Params: these are the parameters of ", schema_->name,
               ", expected those of ", wanted.name);
}

const ParamField& Params::field(const std::string& name) const {
  POLYAK_CHECK(schema_ != nullptr, "Params: no parameters are set, so there is no field '", name,
               "'");
  const ParamField* f = schema_->find(name);
  if (!f) {
    std::vector<std::string> names;
    for (const ParamField& candidate : schema_->fields) names.push_back(candidate.name);
    fail("Params: ", schema_->name, " has no field '", name,
         "', expected one of: ", names.empty() ? "(none)" : join(names));
  }
  return *f;
}

ParamValue Params::get(const std::string& name) const {
  return field(name).get(value_.get());
}

void Params::set(const std::string& name, const ParamValue& value) {
  const ParamField& f = field(name);
  f.set(value_.get(), convert_param(value, f.default_value, schema_->name + " " + name));
}

void Params::validate(const std::string& where) const {
  if (empty()) return;
  for (const ParamField& f : schema_->fields) {
    const ParamValue v = f.get(value_.get());
    POLYAK_CHECK(f.check.ok(v), where, ": ", f.name, " = ", format_param(v), ", expected ",
                 f.check.expected);
  }
}

bool Params::operator==(const Params& other) const {
  if (schema_ != other.schema_) return false;
  if (empty()) return true;
  for (const ParamField& f : schema_->fields)
    if (f.get(value_.get()) != f.get(other.value_.get())) return false;
  return true;
}

ParamValue convert_param(const ParamValue& value, const ParamValue& like,
                         const std::string& where) {
  if (value.index() == like.index()) return value;
  if (std::holds_alternative<double>(like))
    if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  fail(where, " is ", format_param(value), " (", param_type_name(value), "), expected ",
       param_type_name(like));
}

}  // namespace polyak
