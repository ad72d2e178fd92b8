// Compiled against polyak_core alone by the CTest test layers.upward_include_does_not_compile,
// which passes only when this include is not found: core must not see the layers above it.
#include "polyak/ops/elementwise.h"
