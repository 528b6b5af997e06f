// CUDA build of transfer_bench.h: the contiguous-copy reference of `flexkv-run bench gpu`.
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/transfer_bench.h"

namespace flexkv::cuda {

std::vector<double> time_contiguous_copies(int device, const std::vector<std::uintptr_t>& dsts,
                                           const std::vector<std::uintptr_t>& srcs,
                                           const std::vector<std::uint64_t>& sizes,
                                           int repeats) {
    if (dsts.size() != srcs.size() || dsts.size() != sizes.size() || dsts.empty()) {
        throw std::invalid_argument("dsts, srcs and sizes must have the same, non-zero length");
    }
    check(cudaSetDevice(device), "cudaSetDevice");
    const std::size_t k = dsts.size();
    std::vector<cudaStream_t> streams(k, nullptr);
    std::vector<cudaEvent_t> ends(k, nullptr);
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
    std::vector<double> out;
    cudaError_t err = cudaSuccess;
    auto step = [&](cudaError_t e) {
        if (err == cudaSuccess) err = e;
        return err == cudaSuccess;
    };
    for (std::size_t i = 0; i < k && err == cudaSuccess; ++i) {
        step(cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking));
        step(cudaEventCreateWithFlags(&ends[i], cudaEventDisableTiming));
    }
    step(cudaEventCreate(&start));
    step(cudaEventCreate(&stop));
    for (int r = -1; r < repeats && err == cudaSuccess; ++r) {  // round -1: warm-up
        step(cudaEventRecord(start, streams[0]));
        for (std::size_t i = 0; i < k; ++i) {
            if (i > 0) step(cudaStreamWaitEvent(streams[i], start, 0));
            step(cudaMemcpyAsync(reinterpret_cast<void*>(dsts[i]),
                                 reinterpret_cast<const void*>(srcs[i]), sizes[i],
                                 cudaMemcpyDefault, streams[i]));
            step(cudaEventRecord(ends[i], streams[i]));
            step(cudaStreamWaitEvent(streams[0], ends[i], 0));
        }
        step(cudaEventRecord(stop, streams[0]));
        if (step(cudaEventSynchronize(stop))) {
            float ms = 0.0f;
            step(cudaEventElapsedTime(&ms, start, stop));
            if (r >= 0) out.push_back(ms * 1e-3);
        }
    }
    for (std::size_t i = 0; i < k; ++i) {
        if (streams[i] != nullptr) cudaStreamDestroy(streams[i]);
        if (ends[i] != nullptr) cudaEventDestroy(ends[i]);
    }
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    check(err, "contiguous copy");
    return out;
}

}  // namespace flexkv::cuda
