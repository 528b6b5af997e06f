// CUDA build of device_info.h. The runtime is linked statically, so these calls load the
// driver (libcuda) only when made: the module imports on machines without a GPU.
#include <cuda_runtime.h>

#include "device_info.h"

namespace flexkv {

int cuda_device_count() noexcept {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error so later calls start clean
        return 0;
    }
    return count;
}

int cuda_runtime_version() noexcept { return CUDART_VERSION; }

}  // namespace flexkv
