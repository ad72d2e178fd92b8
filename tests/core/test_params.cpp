// Parameter structs and their field tables (core/params.h).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <utility>

#include "testing.h"

using namespace polyak;
using polyak::testing::check_error;

namespace {

struct Toy {
  int64_t count = 3;
  double rate = 0.5;
  std::string mode = "fast";
  static const ParamSchema& schema() {
    static const ParamSchema s = make_schema<Toy>(
        "the toy", {param(&Toy::count, "count", "--count", "how many", positive_integer()),
                    param(&Toy::rate, "rate", "--rate", "how fast", number_in(0, 1, "(0, 1]")),
                    param(&Toy::mode, "mode", "--mode", "how", one_of({"fast", "slow"}))});
    return s;
  }
};

struct Other {
  static const ParamSchema& schema() {
    static const ParamSchema s = make_schema<Other>("the other", {});
    return s;
  }
};

}  // namespace

TEST_CASE("Params: fields by name, defaults from the struct, deep copies") {
  const ParamSchema& s = Toy::schema();
  REQUIRE(s.fields.size() == 3);
  CHECK(s.fields[0].default_value == ParamValue(int64_t{3}));
  CHECK(s.fields[1].default_value == ParamValue(0.5));
  CHECK(s.fields[2].default_value == ParamValue(std::string("fast")));
  CHECK(s.find("rate") == &s.fields[1]);
  CHECK(s.find("speed") == nullptr);

  Params p = Toy{.count = 7};
  CHECK(p.holds<Toy>());
  CHECK(!p.holds<Other>());
  CHECK(p.get("count") == ParamValue(int64_t{7}));
  p.set("rate", int64_t{1});  // an integer converts to a number field
  CHECK(p.as<Toy>().rate == 1.0);
  p.set("mode", std::string("slow"));
  Params copy = p;
  copy.as<Toy>().count = 9;  // a deep copy
  CHECK(p.as<Toy>().count == 7);
  CHECK(!(copy == p));
  copy.as<Toy>().count = 7;
  CHECK(copy == p);

  // Empty params read as the defaults, and become them when written.
  Params empty;
  CHECK(empty.empty());
  CHECK(std::as_const(empty).as<Toy>().count == 3);
  CHECK(empty.empty());
  empty.as<Toy>().count = 4;
  CHECK(empty.holds<Toy>());
  CHECK(Params::defaults(Toy::schema()) == Params(Toy{}));
  CHECK(Params() == Params());
  CHECK(!(Params() == Params(Toy{})));
}

TEST_CASE("Params: checks name the field, the value and the rule") {
  Params p = Toy{};
  p.validate("where");  // the defaults pass
  p.set("count", int64_t{0});
  check_error([&] { p.validate("where"); }, {"where: count = 0, expected a positive integer"});
  p = Toy{.rate = 0.0};
  check_error([&] { p.validate("where"); }, {"where: rate = 0, expected in (0, 1]"});
  p = Toy{.rate = 1.0};
  p.validate("where");  // ] closes the interval
  p = Toy{.rate = std::nan("")};
  check_error([&] { p.validate("where"); }, {"rate = nan", "in (0, 1]"});
  p = Toy{.mode = "medium"};
  check_error([&] { p.validate("where"); }, {"mode = 'medium'", "one of: fast, slow"});

  check_error([&] { p.set("speed", 1.0); },
              {"Params: the toy has no field 'speed'", "count, rate, mode"});
  check_error([&] { p.set("count", 1.5); },
              {"the toy count is 1.5 (a number), expected an integer"});
  check_error([&] { p.set("mode", int64_t{1}); }, {"mode is 1 (an integer), expected a string"});
  check_error([&] { (void)Params(Other{}).as<Toy>(); },
              {"the parameters of the other", "expected those of the toy"});
  check_error([] { (void)Params().get("count"); }, {"no parameters are set", "'count'"});
}

TEST_CASE("param checks: the shared rules") {
  CHECK(positive_integer().ok(int64_t{1}));
  CHECK(!positive_integer().ok(int64_t{0}));
  CHECK(!positive_integer().ok(1.0));
  CHECK(non_negative_integer("0: never").ok(int64_t{0}));
  CHECK(!non_negative_integer("0: never").ok(int64_t{-1}));
  CHECK(non_negative_integer("0: never").expected == "≥ 0 (0: never)");
  CHECK(number_in(0, 1, "[0, 1)").ok(0.0));
  CHECK(!number_in(0, 1, "[0, 1)").ok(1.0));
  CHECK(number_in(0, 1, "[0, 1)").ok(int64_t{0}));
  CHECK(!positive_number().ok(0.0));
  CHECK(!positive_number().ok(std::numeric_limits<double>::infinity()));
  CHECK(positive_number().ok(1e-300));
  CHECK(format_param(std::string("x")) == "'x'");
  CHECK(format_param(int64_t{-2}) == "-2");
  CHECK(format_param(0.25) == "0.25");
}
