// The gather/scatter kernel of the SM path, and of the copy-engine path's staging step:
// launch arguments and one host-side launch entry point (include from CUDA sources only).
// The kernel templates themselves stay in kv_kernels.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace flexkv::cuda {

constexpr int kMaxThreads = 512;  // __launch_bounds__ of the kernel: threads per CTA

struct CopyArgs {
    char* gpu;                  // layer-first cache (device pointer)
    char* host;                 // block-first slots (mapped host memory or staging)
    const std::int32_t* gpu_ids;
    const std::int32_t* host_ids;  // nullptr: slot i of the job (staging)
    std::uint32_t num_blocks;      // blocks of this launch
    std::uint32_t lk;              // layers * kv: chunks per block
    std::uint32_t chunk_vecs;      // vectors per chunk
    std::uint64_t chunk_bytes;
    std::uint64_t gpu_lk_stride;   // bytes between chunk (l,k) and (l,k)+1 of one block
    std::uint64_t host_stride;
};

// Launches the kernel on `stream`: `grid` CTAs of `threads` threads move a.num_blocks
// blocks GPU -> host (to_host) or host -> GPU in vectors of vec_size bytes (16, 4, else
// 1); chunks_per_iter (1, 2, 4) and l2_prefetch (0, 1, 128, 256) as in KVTransferOptions.
// Returns the launch's error (cudaGetLastError).
cudaError_t launch_kv_copy(const CopyArgs& a, bool to_host, unsigned vec_size, unsigned grid,
                           unsigned threads, unsigned chunks_per_iter, unsigned l2_prefetch,
                           cudaStream_t stream);

}  // namespace flexkv::cuda
