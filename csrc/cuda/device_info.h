// Facts about the CUDA runtime and devices. Built from device_info.cu when CMake finds
// nvcc, otherwise from device_info_stub.cpp; callers never need an #ifdef.
#pragma once

namespace flexkv {

// Number of visible CUDA devices; 0 without CUDA support, driver or GPU. Never throws.
int cuda_device_count() noexcept;

// CUDA runtime version the module was compiled against (e.g. 13000), 0 without CUDA.
int cuda_runtime_version() noexcept;

}  // namespace flexkv
