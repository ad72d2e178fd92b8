// POLYAK_HD marks a function that runs on the host and, under nvcc, on a CUDA device too: the
// kernel bodies of cuda/kernels/ and the few core functions they call (Philox's rounds,
// core/philox.h). Plain C++17 either way.
#pragma once

#if defined(__CUDACC__)
#define POLYAK_HD __host__ __device__
#else
#define POLYAK_HD
#endif
