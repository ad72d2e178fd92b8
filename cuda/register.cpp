// Registers the CUDA backend with core when the program starts.
//
// Nothing refers to this file's one object, so a static library would leave it out of a
// program (the linker takes an archive member only for a symbol that someone needs), and
// cuda tensors would then report a build without CUDA. CMakeLists.txt therefore links the
// polyak_cuda library whole (WHOLE_ARCHIVE) into whatever links polyak::polyak, and
// tests/core checks that a CUDA build has the backend registered.
#include "polyak/core/backend.h"
#include "polyak/cuda/cuda.h"

namespace polyak::cuda {
namespace {

[[maybe_unused]] const bool kRegistered = [] {
  register_device_backend(DeviceType::cuda, &device_backend());
  return true;
}();

}  // namespace
}  // namespace polyak::cuda
