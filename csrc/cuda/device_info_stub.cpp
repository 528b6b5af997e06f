// Build of device_info.h without CUDA: no devices.
#include "device_info.h"

namespace flexkv {

int cuda_device_count() noexcept { return 0; }

int cuda_runtime_version() noexcept { return 0; }

}  // namespace flexkv
