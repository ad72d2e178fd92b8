#include "polyak/core/autocast.h"

namespace polyak {
namespace {
thread_local Precision current = Precision::f32;
}  // namespace

const char* name(Precision p) {
  return p == Precision::bf16 ? "bf16" : "f32";
}

Precision autocast_precision() {
  return current;
}

Autocast::Autocast(Precision p) : previous_(current) {
  current = p;
}
Autocast::~Autocast() {
  current = previous_;
}

}  // namespace polyak
