// write_png_grid (cli/images.h) through stb_image_write (Debian's libstb).
#include "cli/images.h"

#include <stb/stb_image_write.h>

#include <string_view>
#include <vector>

#include "polyak/core/error.h"
#include "polyak/core/files.h"

namespace polyak::cli {

void write_png_grid(const std::string& path, const Tensor& images, int64_t height, int64_t width,
                    int64_t columns, int64_t scale) {
  const char* fn = "write_png_grid";
  check_defined(fn, "images", images);
  POLYAK_CHECK(images.dim() == 2 && images.size(1) == height * width && images.size(0) > 0, fn,
               ": ", path, ": images has shape ", images.shape(), ", expected [n, ", height * width,
               "] (n images of ", height, "×", width, ")");
  POLYAK_CHECK(columns > 0 && scale > 0, fn, ": ", path, ": columns = ", columns,
               ", scale = ", scale, ", expected both > 0");
  const std::vector<double> v = images.to_vector();
  const int64_t n = images.size(0), rows = (n + columns - 1) / columns;
  const int64_t cell_h = height * scale + 1, cell_w = width * scale + 1;
  const int64_t H = rows * cell_h + 1, W = columns * cell_w + 1;
  std::vector<uint8_t> canvas(static_cast<size_t>(H * W), 128);  // gray frames
  for (int64_t i = 0; i < n; ++i) {
    const int64_t top = (i / columns) * cell_h + 1, left = (i % columns) * cell_w + 1;
    for (int64_t y = 0; y < height * scale; ++y)
      for (int64_t x = 0; x < width * scale; ++x) {
        const double p =
            v[static_cast<size_t>(i * height * width + (y / scale) * width + x / scale)];
        POLYAK_CHECK(p >= 0 && p <= 255, fn, ": ", path, ": image ", i, " holds ", p,
                     ", expected intensities 0..255");
        canvas[static_cast<size_t>((top + y) * W + left + x)] = static_cast<uint8_t>(p);
      }
  }
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                               static_cast<size_t>(size));
  };
  const int ok = stbi_write_png_to_func(append, &png, static_cast<int>(W), static_cast<int>(H), 1,
                                        canvas.data(), static_cast<int>(W));
  POLYAK_CHECK(ok != 0 && !png.empty(), fn, ": ", path, ": the PNG encoder failed");
  write_file_atomically(path, {std::string_view(png)}, fn);
}

}  // namespace polyak::cli
