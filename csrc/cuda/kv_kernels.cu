// The SM gather/scatter kernel (kv_kernels.cuh): 16-, 4- or 1-byte vectors, G chunks in
// flight per thread, optional L2 prefetch hints or TMA bulk prefetch.
#include "cuda/kv_kernels.cuh"

namespace flexkv::cuda {

namespace {

constexpr int kUnroll = 4;  // vectors of one chunk per thread per pass

// kPrefetch (16-byte vectors only): 0, or 128/256 to ask L2 to fetch that many bytes
// around each load (PTX .L2::128B / .L2::256B), which sets the size of the reads that go
// out to host memory.
template <int kPrefetch, typename V>
__device__ __forceinline__ V load_stream(const V* p) {
    return __ldcs(p);
}
template <int kPrefetch>
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    if constexpr (kPrefetch == 256) {
        asm volatile("ld.global.cs.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    } else if constexpr (kPrefetch == 128) {
        asm volatile("ld.global.cs.L2::128B.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    } else {
        v = __ldcs(p);
    }
    return v;
}
template <int kPrefetch>
__device__ __forceinline__ unsigned char load_stream(const unsigned char* p) {
    return *p;
}
template <typename V>
__device__ __forceinline__ void store_stream(V* p, V v) {
    __stcs(p, v);
}
template <>
__device__ __forceinline__ void store_stream(unsigned char* p, unsigned char v) {
    *p = v;
}

constexpr int kBulkPrefetch = 1;  // kPrefetch value: TMA bulk prefetch of whole chunks
constexpr int kBulkAhead = 2;     // ... this many chunk groups ahead of the loads

// Where chunk c = (block i of the job, chunk j of the block), i = c / lk, lives on the GPU
// (gp) and in the host slot or staging slot (hp).
__device__ __forceinline__ void chunk_ptrs(const CopyArgs& a, std::uint64_t c, char** gp,
                                           char** hp) {
    const std::uint32_t i = static_cast<std::uint32_t>(c / a.lk);
    const std::uint32_t j = static_cast<std::uint32_t>(c - std::uint64_t(i) * a.lk);
    const std::uint64_t slot = a.host_ids ? std::uint64_t(a.host_ids[i]) : i;
    *gp = a.gpu + j * a.gpu_lk_stride + std::uint64_t(a.gpu_ids[i]) * a.chunk_bytes;
    *hp = a.host + slot * a.host_stride + j * a.chunk_bytes;
}

// Asks the TMA unit to bring a source chunk into L2 (sm_90), so that the loads that
// follow hit L2 and the reads that cross PCIe are the TMA's.
template <bool kToHost>
__device__ __forceinline__ void bulk_prefetch(const CopyArgs& a, std::uint64_t c) {
    char* gp;
    char* hp;
    chunk_ptrs(a, c, &gp, &hp);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(kToHost ? gp : hp),
                 "r"(static_cast<std::uint32_t>(a.chunk_bytes))
                 : "memory");
}

// Chunk c = (block i of the job, chunk j of the block), i = c / lk. Each CTA moves a
// contiguous range of whole chunks (so a CTA writes whole runs of a host slot); each
// thread keeps the loads of G chunks x kUnroll vectors in flight before it stores.
template <typename V, bool kToHost, int G, int kPrefetch>
__global__ void __launch_bounds__(kMaxThreads) kv_copy_kernel(CopyArgs a) {
    const std::uint64_t total = std::uint64_t(a.num_blocks) * a.lk;
    const std::uint64_t c0 = total * blockIdx.x / gridDim.x;
    const std::uint64_t c1 = total * (blockIdx.x + 1) / gridDim.x;
    const std::uint32_t step = blockDim.x * kUnroll;
    if constexpr (kPrefetch == kBulkPrefetch) {
        if (threadIdx.x == 0) {
            for (std::uint64_t k = c0; k < c1 && k < c0 + kBulkAhead * G; ++k) {
                bulk_prefetch<kToHost>(a, k);
            }
        }
    }
    for (std::uint64_t c = c0; c < c1; c += G) {
        if constexpr (kPrefetch == kBulkPrefetch) {
            if (threadIdx.x == 0) {
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const std::uint64_t k = c + kBulkAhead * G + g;
                    if (k < c1) bulk_prefetch<kToHost>(a, k);
                }
            }
        }
        const V* src[G];
        V* dst[G];
        bool have[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
            have[g] = c + g < c1;
            char* gp;
            char* hp;
            chunk_ptrs(a, have[g] ? c + g : c, &gp, &hp);
            src[g] = reinterpret_cast<const V*>(kToHost ? gp : hp);
            dst[g] = reinterpret_cast<V*>(kToHost ? hp : gp);
        }
        for (std::uint32_t v = threadIdx.x; v < a.chunk_vecs; v += step) {
            V r[G][kUnroll];
#pragma unroll
            for (int g = 0; g < G; ++g) {
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const std::uint32_t idx = v + u * blockDim.x;
                    if (have[g] && idx < a.chunk_vecs) {
                        r[g][u] = load_stream<kPrefetch>(src[g] + idx);
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < G; ++g) {
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const std::uint32_t idx = v + u * blockDim.x;
                    if (have[g] && idx < a.chunk_vecs) {
                        store_stream(dst[g] + idx, r[g][u]);
                    }
                }
            }
        }
    }
}

template <typename V, bool kToHost, int kPf>
cudaError_t launch_g(const CopyArgs& a, unsigned grid, unsigned threads, unsigned g,
                     cudaStream_t stream) {
    switch (g) {
        case 1: kv_copy_kernel<V, kToHost, 1, kPf><<<grid, threads, 0, stream>>>(a); break;
        case 2: kv_copy_kernel<V, kToHost, 2, kPf><<<grid, threads, 0, stream>>>(a); break;
        default: kv_copy_kernel<V, kToHost, 4, kPf><<<grid, threads, 0, stream>>>(a); break;
    }
    return cudaGetLastError();
}

template <typename V, bool kToHost>
cudaError_t launch_p(const CopyArgs& a, unsigned grid, unsigned threads, unsigned g,
                     unsigned prefetch, cudaStream_t stream) {
    if constexpr (sizeof(V) == 16) {
        if (prefetch == kBulkPrefetch) {
            return launch_g<V, kToHost, kBulkPrefetch>(a, grid, threads, g, stream);
        }
        if (prefetch == 256) return launch_g<V, kToHost, 256>(a, grid, threads, g, stream);
        if (prefetch == 128) return launch_g<V, kToHost, 128>(a, grid, threads, g, stream);
    }
    return launch_g<V, kToHost, 0>(a, grid, threads, g, stream);
}

template <typename V>
cudaError_t launch_v(const CopyArgs& a, bool to_host, unsigned grid, unsigned threads,
                     unsigned g, unsigned prefetch, cudaStream_t stream) {
    return to_host ? launch_p<V, true>(a, grid, threads, g, prefetch, stream)
                   : launch_p<V, false>(a, grid, threads, g, prefetch, stream);
}

}  // namespace

cudaError_t launch_kv_copy(const CopyArgs& a, bool to_host, unsigned vec_size, unsigned grid,
                           unsigned threads, unsigned chunks_per_iter, unsigned l2_prefetch,
                           cudaStream_t stream) {
    const unsigned g = chunks_per_iter;
    const unsigned pf = l2_prefetch;
    switch (vec_size) {
        case 16: return launch_v<uint4>(a, to_host, grid, threads, g, pf, stream);
        case 4: return launch_v<unsigned int>(a, to_host, grid, threads, g, pf, stream);
        default: return launch_v<unsigned char>(a, to_host, grid, threads, g, pf, stream);
    }
}

}  // namespace flexkv::cuda
