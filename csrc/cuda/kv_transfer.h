// GPU <-> host copies of KV blocks between the layer-first GPU cache and the block-first
// host pool (see engine/flexkv_engine/layout.py), on CUDA streams of their own.
//
// GPU cache: [layer][k/v][block][token][head][dim], so block b is `layers * kv` chunks of
// `chunk_bytes`, chunk (l, k) at ((l * kv + k) * num_gpu_blocks + b) * chunk_bytes.
// Host pool: slot s is one run of `layers * kv * chunk_bytes` bytes at s * host_stride,
// chunk (l, k) at offset (l * kv + k) * chunk_bytes. The host memory must be pinned (it is
// then mapped into the GPU's address space) or registrable with cudaHostRegister.
//
// Two paths per direction:
//  - SM: one gather/scatter kernel that moves 16-byte vectors between GPU memory and the
//    mapped host memory; its grid is `sms` CTAs, each CTA moving whole chunks.
//  - CE (copy engine): a kernel gathers the job's blocks into a block-first staging buffer
//    in GPU memory (or scatters them out of it), and the copy engines move whole blocks:
//    one copy per run of consecutive host slots, all runs of a piece in one
//    cudaMemcpyBatchAsync where the runtime has it. Two staging halves alternate, so the
//    gather of one piece overlaps the copy of the previous one.
// H2D and D2H have their own streams, so both directions overlap. submit() only queues
// the job: an issuer thread per direction puts its work on the streams (a driver call
// that blocks, when a stream's queue is full, holds back neither the caller nor the other
// direction). Every job records a CUDA event; a waiter thread per direction turns
// finished jobs into completions that poll() returns. The streams are blocking streams:
// work the caller queued on the legacy default stream (torch's default) before submit()
// is seen by the job.
//
// The class holds no CUDA types, so the bindings compile without the CUDA headers. Its
// CUDA build: transfer_queue.cu (streams, threads, copy-engine path) launching the
// kernel of kv_kernels.cu; the bench's contiguous reference is in transfer_bench.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flexkv::cuda {

struct KVTransferOptions {
    int device = 0;
    std::uintptr_t gpu_base = 0;  // device pointer of the layer-first cache
    std::uint64_t num_gpu_blocks = 0;
    std::uintptr_t host_base = 0;  // host pointer of slot 0 of the block-first pool
    std::uint64_t host_stride = 0;
    std::uint64_t num_host_blocks = 0;
    std::uint32_t num_layers = 0;
    std::uint32_t kv = 2;  // 2: K and V, 1: MLA
    std::uint64_t chunk_bytes = 0;
    std::uint32_t sms_h2d = 8;  // CTAs of the SM kernel per direction
    std::uint32_t sms_d2h = 8;
    bool ce_h2d = false;  // default path per direction: copy engine instead of SM kernel
    bool ce_d2h = false;
    bool ce_batch = true;  // cudaMemcpyBatchAsync when the runtime has it
    std::uint32_t staging_blocks = 32;  // blocks per staging half (CE path)
    std::uint32_t threads = 512;        // threads per CTA of the SM kernel: 128..1024
    std::uint32_t chunks_per_iter = 2;  // chunks whose loads each thread keeps in flight: 1, 2, 4
    // SM kernel loads: 0 plain; 128 or 256: L2 prefetch size hint of each load; 1: the
    // TMA prefetches whole source chunks into L2 ahead of the loads (sm_90)
    std::uint32_t l2_prefetch = 0;
};

// How one job moves: the direction's default, or one path forced (benchmarks, tests).
enum class Mode : int { Default = 0, Sm = 1, Ce = 2, CePerCopy = 3 };

struct TransferCompletion {
    std::int64_t job_id = 0;
    bool ok = true;
    std::string error;
    std::uint64_t bytes = 0;
    double queue_s = 0.0;
    double transfer_s = 0.0;
};

class KVTransfer {
public:
    // Creates streams and events, maps the host pool into the GPU's address space
    // (registering it if it is not pinned yet) and starts the waiter threads.
    // std::invalid_argument for a bad layout, std::runtime_error for a CUDA failure.
    explicit KVTransfer(const KVTransferOptions& options);
    ~KVTransfer();
    KVTransfer(const KVTransfer&) = delete;
    KVTransfer& operator=(const KVTransfer&) = delete;

    // Queues one job, block gpu_ids[i] <-> host slot host_ids[i], and returns at once.
    // std::out_of_range names a bad id; std::invalid_argument a length mismatch or a bad
    // mode; std::runtime_error once closed. A CUDA error while issuing the job is
    // reported through its completion, not thrown.
    void submit(std::int64_t job_id, bool h2d, const std::vector<std::int64_t>& gpu_ids,
                const std::vector<std::int64_t>& host_ids, Mode mode = Mode::Default,
                std::uint32_t sms = 0);

    // Finished jobs, at most max_jobs (0: all); waits up to timeout_s (< 0: forever) for
    // the first one.
    std::vector<TransferCompletion> poll(std::size_t max_jobs, double timeout_s);

    // Waits for every submitted job, stops the waiters, frees buffers and events and
    // unregisters host memory registered here. Finished jobs can still be polled.
    void close();

    std::size_t pending_jobs() const;
    bool host_registered_here() const;  // the pool was not pinned, so we registered it
    bool batch_copies() const;          // CE path uses cudaMemcpyBatchAsync
    int sm_count() const;
    const KVTransferOptions& options() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace flexkv::cuda
