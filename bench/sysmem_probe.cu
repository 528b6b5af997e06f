// Reads of host memory issued by the GPU's SMs: how close to a copy-engine copy can they get?
//
// 512 Llama-3-8B blocks (64 chunks of 32 KiB each, 1 GiB) gathered from a block-first
// host buffer into a layer-first GPU cache (H2D) and back (D2H), in random block order,
// against one contiguous cudaMemcpyAsync of the same bytes. Varies what could limit the
// SM path: the kind of host memory (cudaHostAlloc, write-combined, malloc + register with
// and without transparent huge pages), the load shape (per-warp ranges, interleaved
// chunks, an L2::256B read-size hint) and the TMA bulk engine (cp.async.bulk through
// shared memory, several stages). Prints each as a fraction of the contiguous copy.
//
//   nvcc -O3 -arch=sm_90 -std=c++17 -o sysmem_probe bench/sysmem_probe.cu && ./sysmem_probe
//
//   ./sysmem_probe tlp   reads of W-byte host segments spaced 2W apart, by the copy engine
//                        (cudaMemcpy2DAsync) and by the SMs, against a contiguous copy:
//                        how the bandwidth of host reads follows the size of each read
//
// Results and their reading: bench/RESULTS.md, "SM path: the host-read ceiling".
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <random>
#include <functional>
#include <string>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1);} } while (0)

constexpr size_t CHUNK = 32768, NCHUNK = 64, BLOCK = CHUNK * NCHUNK;
constexpr int NB = 512;

template <bool kToHost, int U, int kHint>
__global__ void __launch_bounds__(512) copyk(char* gpu, char* host, const int* gids, const int* hids, int nb, int gpu_blocks) {
    int warps = gridDim.x * (blockDim.x / 32);
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    int total = nb * NCHUNK;
    // contiguous range of chunks per warp
    int per = (total + warps - 1) / warps;
    for (int c = w * per; c < min(total, (w + 1) * per); ++c) {
        int i = c / NCHUNK, j = c % NCHUNK;
        uint4* g = (uint4*)(gpu + ((size_t)j * gpu_blocks + gids[i]) * CHUNK);
        uint4* h = (uint4*)(host + (size_t)hids[i] * BLOCK + (size_t)j * CHUNK);
        const uint4* src = kToHost ? g : h;
        uint4* dst = kToHost ? h : g;
        constexpr int N = CHUNK / 16 / 32;  // 64 per lane
#pragma unroll
        for (int k0 = 0; k0 < N; k0 += U) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const uint4* p = src + (k0 + u) * 32 + lane;
                if (kHint == 256) asm volatile("ld.global.nc.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(p));
                else if (kHint == 1) asm volatile("ld.global.cs.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w) : "l"(p));
                else v[u] = *p;
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                uint4* q = dst + (k0 + u) * 32 + lane;
                if (kToHost) asm volatile("st.global.cs.v4.u32 [%0], {%1,%2,%3,%4};" :: "l"(q), "r"(v[u].x), "r"(v[u].y), "r"(v[u].z), "r"(v[u].w));
                else *q = v[u];
            }
        }
    }
}

// Warp-per-chunk round robin variant (chunks interleaved across warps)
template <bool kToHost, int U>
__global__ void __launch_bounds__(512) copyrr(char* gpu, char* host, const int* gids, const int* hids, int nb, int gpu_blocks) {
    int warps = gridDim.x * (blockDim.x / 32);
    int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    int total = nb * NCHUNK;
    for (int c = w; c < total; c += warps) {
        int i = c / NCHUNK, j = c % NCHUNK;
        uint4* g = (uint4*)(gpu + ((size_t)j * gpu_blocks + gids[i]) * CHUNK);
        uint4* h = (uint4*)(host + (size_t)hids[i] * BLOCK + (size_t)j * CHUNK);
        const uint4* src = kToHost ? g : h;
        uint4* dst = kToHost ? h : g;
        constexpr int N = CHUNK / 16 / 32;
#pragma unroll
        for (int k0 = 0; k0 < N; k0 += U) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; ++u) v[u] = src[(k0 + u) * 32 + lane];
#pragma unroll
            for (int u = 0; u < U; ++u) dst[(k0 + u) * 32 + lane] = v[u];
        }
    }
}


__device__ __forceinline__ unsigned sa(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mb_wait(unsigned bar, unsigned parity) {
    asm volatile("{\n.reg .pred p;\nW: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra W;\n}" :: "r"(bar), "r"(parity) : "memory");
}
// One thread per CTA drives the TMA: bulk loads of whole chunks into shared memory,
// bulk stores out of it; S stages.
template <bool kToHost, int S, int CH>
__global__ void tmak(char* gpu, char* host, const int* gids, const int* hids, int nb, int gpu_blocks) {
    extern __shared__ __align__(128) char smem[];
    __shared__ __align__(8) unsigned long long bar[S];
    if (threadIdx.x != 0) return;
    constexpr int PER = CHUNK / CH;  // pieces per chunk
    int total = nb * NCHUNK * PER;
    int per = (total + gridDim.x - 1) / gridDim.x;
    int c0 = blockIdx.x * per, c1 = min(total, c0 + per), n = c1 - c0;
    if (n <= 0) return;
    for (int s = 0; s < S; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(sa(&bar[s])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    auto addr = [&](int c, char*& src, char*& dst) {
        int piece = c % PER, cc = c / PER;
        int i = cc / NCHUNK, j = cc % NCHUNK;
        char* g = gpu + ((size_t)j * gpu_blocks + gids[i]) * CHUNK + (size_t)piece * CH;
        char* h = host + (size_t)hids[i] * BLOCK + (size_t)j * CHUNK + (size_t)piece * CH;
        src = kToHost ? g : h; dst = kToHost ? h : g;
    };
    auto load = [&](int s, int c) {
        char *src, *dst; addr(c, src, dst);
        unsigned b = sa(&bar[s]);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(b), "r"(CH) : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     :: "r"(sa(smem + s * CH)), "l"(src), "r"(CH), "r"(b) : "memory");
    };
    for (int k = 0; k < S && k < n; ++k) load(k, c0 + k);
    unsigned phase = 0;  // bit s: parity of stage s
    for (int k = 0; k < n; ++k) {
        int s = k % S;
        mb_wait(sa(&bar[s]), (phase >> s) & 1);
        phase ^= 1u << s;
        char *src, *dst; addr(c0 + k, src, dst);
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" :: "l"(dst), "r"(sa(smem + s * CH)), "r"(CH) : "memory");
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
        if (k >= 1 && k - 1 + S < n) {
            asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
            load((k - 1) % S, c0 + k - 1 + S);
        }
    }
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}
typedef void (*K)(char*, char*, const int*, const int*, int, int);

float timeit(std::function<void()> f, int rep = 5) {
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    f(); cudaDeviceSynchronize();
    std::vector<float> ts;
    for (int r = 0; r < rep; ++r) { cudaEventRecord(a); f(); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms); }
    std::sort(ts.begin(), ts.end());
    return ts[rep / 2];
}

// SM reads of W-byte segments of host memory spaced 2W apart, packed into a GPU buffer.
__global__ void segk(char* dst, const char* src, size_t vecs, int w) {
    size_t per = w / 16, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < vecs; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            size_t j = i + u * stride;
            if (j < vecs) v[u] = *(const uint4*)(src + (j / per) * 2 * w + (j % per) * 16);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            size_t j = i + u * stride;
            if (j < vecs) *(uint4*)(dst + j * 16) = v[u];
        }
    }
}

int tlp_probe() {
    const size_t useful = (size_t)512 << 20;
    char *host, *hdev, *gpu;
    CK(cudaHostAlloc(&host, 2 * useful, cudaHostAllocMapped | cudaHostAllocPortable));
    CK(cudaHostGetDevicePointer((void**)&hdev, host, 0));
    CK(cudaMalloc(&gpu, useful));
    memset(host, 3, 2 * useful);
    auto contiguous = [&] { cudaMemcpyAsync(gpu, host, useful, cudaMemcpyHostToDevice); };
    printf("contiguous H2D %.1f GB/s\n", useful / timeit(contiguous) / 1e6);
    // each round times the contiguous copy beside both segment reads: the median of the
    // per-round ratios does not drift with the machine's load
    for (int w : {32, 64, 128, 256, 512, 4096, 1 << 20}) {
        std::vector<float> ce, sm;
        for (int r = 0; r < 9; ++r) {
            float mc = timeit(contiguous, 3);
            ce.push_back(mc / timeit([&] { cudaMemcpy2DAsync(gpu, w, host, 2 * w, w, useful / w, cudaMemcpyHostToDevice); }, 3));
            sm.push_back(mc / timeit([&] { segk<<<16, 512>>>(gpu, hdev, useful / 16, w); }, 3));
            CK(cudaGetLastError());
        }
        std::sort(ce.begin(), ce.end()); std::sort(sm.begin(), sm.end());
        printf("segments of %7d B  copy engine %.3f  SMs (16 x 512) %.3f  of contiguous (median of 9 rounds, range %.3f-%.3f / %.3f-%.3f)\n",
               w, ce[4], sm[4], ce[0], ce[8], sm[0], sm[8]);
    }
    return 0;
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "tlp") return tlp_probe();
    size_t bytes = (size_t)NB * BLOCK;
    int gpu_blocks = NB * 2;
    char* gpu; CK(cudaMalloc(&gpu, (size_t)gpu_blocks * BLOCK));
    char* gcont; CK(cudaMalloc(&gcont, bytes));
    std::vector<int> gid(NB), hid(NB);
    std::mt19937 rng(1);
    std::vector<int> pg(gpu_blocks); for (int i = 0; i < gpu_blocks; ++i) pg[i] = i; std::shuffle(pg.begin(), pg.end(), rng);
    std::vector<int> ph(NB); for (int i = 0; i < NB; ++i) ph[i] = i; std::shuffle(ph.begin(), ph.end(), rng);
    for (int i = 0; i < NB; ++i) { gid[i] = pg[i]; hid[i] = ph[i]; }
    int *dg, *dh; CK(cudaMalloc(&dg, NB * 4)); CK(cudaMalloc(&dh, NB * 4));
    CK(cudaMemcpy(dg, gid.data(), NB * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(dh, hid.data(), NB * 4, cudaMemcpyHostToDevice));
    const char* kinds[] = {"hostalloc", "wc", "register-thp", "register-4k"};
    for (int kind = 0; kind < 4; ++kind) {
        char* host = nullptr; char* hdev = nullptr;
        if (kind == 0) CK(cudaHostAlloc(&host, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
        else if (kind == 1) CK(cudaHostAlloc(&host, bytes, cudaHostAllocMapped | cudaHostAllocPortable | cudaHostAllocWriteCombined));
        else {
            host = (char*)aligned_alloc(1 << 21, bytes);
            madvise(host, bytes, kind == 2 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
            memset(host, 1, bytes);
            CK(cudaHostRegister(host, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable));
        }
        CK(cudaHostGetDevicePointer((void**)&hdev, host, 0));
        float mh = timeit([&] { cudaMemcpyAsync(gcont, host, bytes, cudaMemcpyHostToDevice); });
        float md = timeit([&] { cudaMemcpyAsync(host, gcont, bytes, cudaMemcpyDeviceToHost); });
        printf("%-13s contiguous H2D %.1f GB/s D2H %.1f GB/s\n", kinds[kind], bytes / mh / 1e6, bytes / md / 1e6);
        struct T { const char* n; K h2d; K d2h; int smem; } ts[] = {
            {"tma-4x32KiB", tmak<false, 4, 32768>, tmak<true, 4, 32768>, 4 * 32768},
            {"tma-16x8KiB", tmak<false, 16, 8192>, tmak<true, 16, 8192>, 16 * 8192},
        };
        for (auto& t : ts) {
            CK(cudaFuncSetAttribute(t.h2d, cudaFuncAttributeMaxDynamicSharedMemorySize, t.smem));
            CK(cudaFuncSetAttribute(t.d2h, cudaFuncAttributeMaxDynamicSharedMemorySize, t.smem));
            for (int grid : {4, 16}) {
                CK(cudaMemset(gpu, 0, (size_t)gpu_blocks * BLOCK));
                memset(host, 7, bytes);
                float th = timeit([&] { t.h2d<<<grid, 32, t.smem>>>(gpu, hdev, dg, dh, NB, gpu_blocks); });
                CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
                // one byte through both directions: the bulk copies really moved data
                char probe_v = 0; CK(cudaMemcpy(&probe_v, gpu + ((size_t)5 * gpu_blocks + gid[3]) * CHUNK + 100, 1, cudaMemcpyDeviceToHost));
                memset(host, 0, bytes);
                float td = timeit([&] { t.d2h<<<grid, 32, t.smem>>>(gpu, hdev, dg, dh, NB, gpu_blocks); });
                CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
                char back = host[(size_t)hid[3] * BLOCK + 5 * CHUNK + 100];
                printf("%-13s %-16s grid %2d  H2D %.3f  D2H %.3f  check %d %d\n", kinds[kind], t.n, grid, mh / th, md / td, probe_v, back);
            }
        }
        struct V { const char* n; K h2d; K d2h; } vs[] = {
            {"ld/st-range-x8", copyk<false, 8, 0>, copyk<true, 8, 0>},
            {"ld/st-L2::256B", copyk<false, 8, 256>, copyk<true, 8, 0>},
            {"ld/st-interleave", copyrr<false, 16>, copyrr<true, 16>},
        };
        for (auto& v : vs) {
            for (int grid : {4, 16}) {
                for (int thr : {256, 512}) {
                    float th = timeit([&] { v.h2d<<<grid, thr>>>(gpu, hdev, dg, dh, NB, gpu_blocks); });
                    float td = timeit([&] { v.d2h<<<grid, thr>>>(gpu, hdev, dg, dh, NB, gpu_blocks); });
                    CK(cudaGetLastError());
                    printf("%-13s %-16s grid %2d x %3d  H2D %.3f  D2H %.3f\n", kinds[kind], v.n, grid, thr, mh / th, md / td);
                }
            }
        }
        if (kind < 2) cudaFreeHost(host); else { cudaHostUnregister(host); free(host); }
    }
    return 0;
}
