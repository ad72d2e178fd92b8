# Instruction sets: the target of the whole build, and the hot kernels compiled once per ISA.
#
# The library targets x86-64 (SSE2), so it runs on every 64-bit x86 CPU. The kernels that
# dominate a training step (the GEMM, the attention sweeps, the vector loops, the RNG) are
# compiled three times, for baseline x86-64, for x86-64-v3 (AVX2 + FMA, Haswell and Zen on)
# and for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL, Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4),
# each into its own namespace, and core/cpu.cpp picks one at run time from cpuid.

set(POLYAK_ISA_MARCH "")
if(POLYAK_NATIVE)
  set(POLYAK_ISA_MARCH native)
elseif(POLYAK_MARCH)
  set(POLYAK_ISA_MARCH ${POLYAK_MARCH})
endif()
set(POLYAK_MARCH_FLAG "")
if(POLYAK_ISA_MARCH)
  set(POLYAK_MARCH_FLAG -march=${POLYAK_ISA_MARCH})
  target_compile_options(polyak_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${POLYAK_MARCH_FLAG}>)
  message(STATUS "polyak: everything compiled with ${POLYAK_MARCH_FLAG}")
else()
  message(STATUS "polyak: x86-64, kernels for baseline, avx2 and avx512 chosen at run time")
endif()

# GCC 12.1 and 12.2 report a false -Wmaybe-uninitialized inside their own AVX-512 intrinsics
# (_mm512_undefined_ps and friends initialise a variable with itself; GCC bug 105593, fixed
# in 12.3) wherever such an intrinsic is inlined, for instance in Eigen's AVX-512 packet
# math. Only code compiled for AVX-512 by those compilers drops that one warning.
set(POLYAK_GCC_BUG_105593 OFF)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 12.3)
  set(POLYAK_GCC_BUG_105593 ON)
endif()
set(POLYAK_NO_FALSE_AVX512_WARNING $<$<BOOL:${POLYAK_GCC_BUG_105593}>:-Wno-maybe-uninitialized>)

if(POLYAK_ISA_MARCH AND POLYAK_GCC_BUG_105593)
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS -march=${POLYAK_ISA_MARCH})
  check_cxx_source_compiles("#ifndef __AVX512F__\n#error no AVX-512\n#endif\nint main() {}"
                            POLYAK_MARCH_HAS_AVX512)
  unset(CMAKE_REQUIRED_FLAGS)
  if(POLYAK_MARCH_HAS_AVX512)
    # Everything compiled with that -march: polyak's own sources, and the baseline kernels.
    list(APPEND POLYAK_MARCH_FLAG ${POLYAK_NO_FALSE_AVX512_WARNING})
    target_compile_options(polyak_flags INTERFACE
                           $<$<COMPILE_LANGUAGE:CXX>:${POLYAK_NO_FALSE_AVX512_WARNING}>)
  endif()
endif()

# The kernels' ISAs: name, the flags that compile for it. core/cpu.cpp checks at run time
# that the CPU has every feature these -march levels let the compiler use.
set(POLYAK_ISAS baseline avx2 avx512)
# The kernels pass 32-byte vectors (ops/attention/vec.h) by value between their own inline
# helpers; compiled without AVX, GCC notes that such calls would not match an AVX build's
# ABI (-Wpsabi). No call crosses compilations (each has its own namespace), so the note is
# dropped for the baseline compilation only.
set(POLYAK_ISA_FLAGS_baseline ${POLYAK_MARCH_FLAG} -Wno-psabi)
set(POLYAK_ISA_FLAGS_avx2 -march=x86-64-v3)
set(POLYAK_ISA_FLAGS_avx512 -march=x86-64-v4 ${POLYAK_NO_FALSE_AVX512_WARNING})

# polyak_isa_kernels(TARGET source... [LIBRARIES lib...] [INCLUDES dir...]): compiles the
# sources once per ISA, with POLYAK_KERNEL_ISA set to its name (see core/cpu.h), into TARGET.
# The kernels see the include folders of INCLUDES and of LIBRARIES only (a layer passes its
# own folder and the layers below it, as its target sees them).
function(polyak_isa_kernels target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "LIBRARIES;INCLUDES")
  foreach(isa IN LISTS POLYAK_ISAS)
    set(lib ${target}_kernels_${isa})
    add_library(${lib} OBJECT ${arg_UNPARSED_ARGUMENTS})
    target_include_directories(${lib} PRIVATE ${arg_INCLUDES})
    target_link_libraries(${lib} PRIVATE ${arg_LIBRARIES})
    set_target_properties(${lib} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_definitions(${lib} PRIVATE POLYAK_KERNEL_ISA=${isa})
    # -fno-weak: the inline functions and templates a kernel uses (std::vector<float>,
    # std::fill_n, …) become private copies of this compilation instead of weak symbols
    # that the linker could merge across ISAs. Without it an unoptimised build may run an
    # AVX-512 copy of std::fill_n from baseline code, or mix calling conventions of 32-byte
    # vectors between compilations; tests/isa checks that no kernel object exports one.
    target_compile_options(${lib} PRIVATE ${POLYAK_ISA_FLAGS_${isa}} -fno-weak)
    target_link_libraries(${lib} PRIVATE polyak_warnings OpenMP::OpenMP_CXX)
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:${lib}>)
  endforeach()
endfunction()
