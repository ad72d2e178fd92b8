// Eigen inside a kernel compiled once per ISA (internal to ops/): include this instead of
// <Eigen/Core>. Eigen picks its vector width from the compiler's flags, and its templates
// would carry the same names in every compilation, so that the linker could keep an
// AVX-512 copy for a baseline caller; here Eigen's namespace is renamed per compilation
// (polyak_eigen_avx2, …) and the code still writes Eigen::.
#pragma once

#include "polyak/core/cpu.h"

#if defined(Eigen) || defined(EIGEN_CORE_H)
#error "ops/eigen_isa.h must come before any other Eigen include"
#endif
#define Eigen POLYAK_ISA_CONCAT(polyak_eigen_, POLYAK_KERNEL_ISA)
#include <Eigen/Core>
