// CUDA error handling shared by the .cu files of csrc/cuda (include from CUDA sources only).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace flexkv::cuda {

inline std::string cuda_message(const char* what, cudaError_t err) {
    return std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
           ")";
}

// Throws std::runtime_error naming `what` and the error unless err is cudaSuccess.
inline void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) {
        throw std::runtime_error(cuda_message(what, err));
    }
}

}  // namespace flexkv::cuda
