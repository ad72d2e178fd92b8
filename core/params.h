// Parameter structs and their field tables: how a kind (an attention, a connection) declares
// its settings once, so that configs, command-line flags, checkpoints, messages and help are
// all generated from one table.
//
//   struct MomentumParams {
//     double beta = 0.1;
//     double gamma = 0.6;
//     static const ParamSchema& schema();  // the field table, defined next to the module
//   };
//   const ParamSchema& MomentumParams::schema() {
//     static const ParamSchema s = make_schema<MomentumParams>(
//         "momentum attention",
//         {param(&MomentumParams::beta, "beta", "--beta", "β, the momentum", number_in(0, 1, "[0,
//         1)")),
//          param(&MomentumParams::gamma, "gamma", "--gamma", "γ, the step size",
//          positive_number())});
//     return s;
//   }
//
// `Params` holds any such struct behind one type (configs store it), and reads or writes
// its fields by name for generic code; a module reads its own struct with `as<P>()`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <typeindex>
#include <variant>
#include <vector>

#include "polyak/core/error.h"

namespace polyak {

// A field's value, for code that does not know the struct: integer, number or string.
using ParamValue = std::variant<int64_t, double, std::string>;

// 3, 0.1 or 'exact': how messages show a value.
std::string format_param(const ParamValue& value);
// "an integer", "a number", "a string".
const char* param_type_name(const ParamValue& value);

// A rule on one field's value: `ok` decides; `expected` finishes the message
// "<name> = <value>, expected <expected>".
struct ParamCheck {
  std::function<bool(const ParamValue&)> ok;
  std::string expected;
};
// Integers ≥ 1.
ParamCheck positive_integer();
// Integers ≥ 0; `note` says what 0 means ("0: never").
ParamCheck non_negative_integer(const std::string& note);
// Finite numbers in (lo, hi), [lo, hi), … as `interval` writes it ("[0, 1)"): the ends are
// included where the interval's bracket says so. NaN fails.
ParamCheck number_in(double lo, double hi, const std::string& interval);
// Finite numbers > 0.
ParamCheck positive_number();
// One of `choices`.
ParamCheck one_of(std::vector<std::string> choices);

// One field of a parameter struct.
struct ParamField {
  std::string name;  // in configs and checkpoints: "beta"
  std::string flag;  // on the command line: "--beta"
  std::string help;
  ParamValue default_value;
  ParamCheck check;
  std::function<ParamValue(const void*)> get;
  std::function<void(void*, const ParamValue&)> set;  // the value has the field's type
};

// A parameter struct's table.
struct ParamSchema {
  std::string name;  // for messages: "momentum attention"
  std::type_index type;
  std::vector<ParamField> fields;
  std::function<std::shared_ptr<void>(const void*)> clone;  // nullptr: a default struct

  const ParamField* find(const std::string& field) const;  // nullptr when absent
};

// The field `member` of P, named `name` in configs and `flag` on the command line.
template <class P, class T>
ParamField param(T P::*member, std::string name, std::string flag, std::string help,
                 ParamCheck check) {
  static_assert(
      std::is_same_v<T, int64_t> || std::is_same_v<T, double> || std::is_same_v<T, std::string>,
      "parameter fields are int64_t, double or std::string");
  ParamField f;
  f.name = std::move(name);
  f.flag = std::move(flag);
  f.help = std::move(help);
  f.default_value = ParamValue(P{}.*member);
  f.check = std::move(check);
  f.get = [member](const void* p) { return ParamValue(static_cast<const P*>(p)->*member); };
  f.set = [member](void* p, const ParamValue& v) { static_cast<P*>(p)->*member = std::get<T>(v); };
  return f;
}

template <class P>
ParamSchema make_schema(std::string name, std::vector<ParamField> fields) {
  return ParamSchema{std::move(name), std::type_index(typeid(P)), std::move(fields),
                     [](const void* p) -> std::shared_ptr<void> {
                       return p ? std::make_shared<P>(*static_cast<const P*>(p))
                                : std::make_shared<P>();
                     }};
}

// The parameters of one kind: any struct with a `static const ParamSchema& schema()`, or
// nothing (empty), which stands for the kind's defaults.
class Params {
 public:
  Params() = default;
  template <class P>
  requires requires { P::schema(); }
  Params(const P& value)  // NOLINT: a struct converts to its Params
      : schema_(&P::schema()), value_(schema_->clone(&value)) {}
  Params(const Params& other);
  Params& operator=(const Params& other);
  Params(Params&&) = default;
  Params& operator=(Params&&) = default;

  // The defaults of `schema`'s struct (not empty).
  static Params defaults(const ParamSchema& schema);

  bool empty() const { return schema_ == nullptr; }
  const ParamSchema* schema() const { return schema_; }
  template <class P>
  bool holds() const {
    return schema_ && schema_->type == std::type_index(typeid(P));
  }

  // The struct. Empty params read as P's defaults (the const form) or become them (the
  // other); params of another struct are a polyak::Error naming both.
  template <class P>
  const P& as() const {
    static const P defaults{};
    if (empty()) return defaults;
    check_type(P::schema());
    return *static_cast<const P*>(value_.get());
  }
  template <class P>
  P& as() {
    if (empty()) *this = Params(P{});
    check_type(P::schema());
    return *static_cast<P*>(value_.get());
  }

  // A field by name; an unknown name is a polyak::Error listing the fields.
  ParamValue get(const std::string& field) const;
  // Sets a field by name. An integer converts to a number field; any other mismatch is a
  // polyak::Error naming the field, the value and the type expected. Not checked against
  // the field's rule: validate() does that.
  void set(const std::string& field, const ParamValue& value);
  // Throws polyak::Error "<where>: <name> = <value>, expected <...>" for the first field
  // whose value breaks its rule.
  void validate(const std::string& where) const;

  // Same struct and the same values (two empty params are equal).
  bool operator==(const Params& other) const;

 private:
  void check_type(const ParamSchema& wanted) const;
  const ParamField& field(const std::string& name) const;

  const ParamSchema* schema_ = nullptr;
  std::shared_ptr<void> value_;
};

// `value` in the type of `like` (an integer converts to a number). Any other mismatch is a
// polyak::Error "<where> is <value> (<its type>), expected <like's type>".
ParamValue convert_param(const ParamValue& value, const ParamValue& like, const std::string& where);

}  // namespace polyak
