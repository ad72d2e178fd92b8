// PNG grids of 8-bit grayscale images (the pixel task's samples).
#pragma once

#include <cstdint>
#include <string>

#include "polyak/core/tensor.h"

namespace polyak::cli {

// Writes images [n, height·width] (integers 0..255) as one PNG of ⌈n / columns⌉ rows of
// `columns` images, each scaled up `scale` times and framed by a 1-pixel gray line; written
// atomically. Values outside 0..255, a shape that does not match, or a file that cannot be
// written are a polyak::Error naming `path`.
void write_png_grid(const std::string& path, const Tensor& images, int64_t height, int64_t width,
                    int64_t columns, int64_t scale = 2);

}  // namespace polyak::cli
