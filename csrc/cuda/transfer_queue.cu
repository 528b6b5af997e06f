// CUDA build of kv_transfer.h: the per-direction streams, events, issuer and waiter
// threads, and the copy-engine path with its staging buffer; the kernels it launches are
// in kv_kernels.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda/cuda_check.cuh"
#include "cuda/kv_kernels.cuh"
#include "cuda/kv_transfer.h"

namespace flexkv::cuda {

namespace {

double now_s() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// ---- pools of per-job resources ------------------------------------------------------------
struct IdBuffer {
    std::int32_t* host = nullptr;  // pinned: [gpu ids | host ids] of one job
    std::int32_t* dev = nullptr;
    std::size_t cap = 0;  // ids per side
};

// A job accepted by submit(), waiting for its direction's issuer thread.
struct Todo {
    std::int64_t job_id = 0;
    Mode mode = Mode::Sm;
    unsigned grid = 0;
    double submitted = 0.0;
    std::vector<std::int64_t> gpu_ids;
    std::vector<std::int64_t> host_ids;
};

// A job on the streams, waiting for its direction's waiter thread.
struct Pending {
    std::int64_t job_id = 0;
    std::uint64_t bytes = 0;
    double submitted = 0.0;
    cudaEvent_t start = nullptr;
    cudaEvent_t end = nullptr;
    IdBuffer ids;
    std::string error;  // set when queueing failed (part-way, or before any stream work)
};

}  // namespace

// ---- the engine ----------------------------------------------------------------------------
struct KVTransfer::Impl {
    struct Direction {
        bool h2d = false;
        cudaStream_t kstream = nullptr;  // kernels (and the id upload)
        cudaStream_t cstream = nullptr;  // copy-engine copies
        char* staging = nullptr;         // two halves of staging_blocks slots each
        cudaEvent_t ready[2] = {nullptr, nullptr};
        cudaEvent_t freed[2] = {nullptr, nullptr};
        int next_half = 0;           // issuer thread only
        std::deque<Todo> todo;       // guarded by Impl::mu
        std::deque<Pending> pending;  // guarded by Impl::mu; stream order
        bool issuer_done = false;     // guarded by Impl::mu
        std::condition_variable todo_cv;
        std::condition_variable work_cv;
        std::thread issuer;
        std::thread waiter;
    };

    KVTransferOptions opt;
    std::uint64_t block_bytes = 0;
    char* host_dev = nullptr;  // host pool as the GPU addresses it
    bool registered_here = false;
    std::atomic<bool> batch{false};
    int sms = 0;
    unsigned vec_size = 16;
    std::size_t staging_half_bytes = 0;
    Direction dirs[2];  // [0]: D2H, [1]: H2D

    mutable std::mutex mu;
    std::condition_variable done_cv;
    std::deque<TransferCompletion> done;
    std::vector<IdBuffer> free_ids;
    std::vector<cudaEvent_t> free_events;
    bool closed = false;
    bool stopping = false;

    explicit Impl(const KVTransferOptions& o) : opt(o) {}

    void set_device() const { check(cudaSetDevice(opt.device), "cudaSetDevice"); }

    cudaEvent_t take_event() {
        {
            std::lock_guard<std::mutex> lk(mu);
            if (!free_events.empty()) {
                cudaEvent_t e = free_events.back();
                free_events.pop_back();
                return e;
            }
        }
        cudaEvent_t e = nullptr;
        check(cudaEventCreateWithFlags(&e, cudaEventBlockingSync), "cudaEventCreate");
        return e;
    }

    IdBuffer take_ids(std::size_t n) {
        {
            std::lock_guard<std::mutex> lk(mu);
            auto best = free_ids.end();
            for (auto it = free_ids.begin(); it != free_ids.end(); ++it) {
                if (it->cap >= n && (best == free_ids.end() || it->cap < best->cap)) {
                    best = it;
                }
            }
            if (best != free_ids.end()) {
                IdBuffer b = *best;
                free_ids.erase(best);
                return b;
            }
        }
        IdBuffer b;
        b.cap = std::max<std::size_t>(4096, std::size_t(1) << (64 - __builtin_clzll(n)));
        check(cudaHostAlloc(reinterpret_cast<void**>(&b.host), 2 * b.cap * sizeof(std::int32_t),
                            cudaHostAllocDefault),
              "cudaHostAlloc (job ids)");
        cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&b.dev),
                                     2 * b.cap * sizeof(std::int32_t));
        if (err != cudaSuccess) {
            cudaFreeHost(b.host);
            check(err, "cudaMalloc (job ids)");
        }
        return b;
    }

    void ensure_staging(Direction& d) {
        if (d.staging == nullptr) {
            check(cudaMalloc(reinterpret_cast<void**>(&d.staging), 2 * staging_half_bytes),
                  "cudaMalloc (staging buffer)");
        }
    }

    cudaError_t launch(const CopyArgs& a, bool to_host, unsigned grid, cudaStream_t s) const {
        return launch_kv_copy(a, to_host, vec_size, grid, opt.threads, opt.chunks_per_iter,
                              opt.l2_prefetch, s);
    }

    // Launch arguments for blocks [offset, offset + n) of a job of `total` blocks, whose
    // ids sit on the device as [gpu ids | host ids]. identity: slot i of `host` (staging).
    CopyArgs args(const IdBuffer& ids, std::size_t total, std::size_t n, std::size_t offset,
                  char* host, bool identity) const {
        CopyArgs a{};
        a.gpu = reinterpret_cast<char*>(opt.gpu_base);
        a.host = host;
        a.gpu_ids = ids.dev + offset;
        a.host_ids = identity ? nullptr : ids.dev + total + offset;
        a.num_blocks = static_cast<std::uint32_t>(n);
        a.lk = opt.num_layers * opt.kv;
        a.chunk_vecs = static_cast<std::uint32_t>(opt.chunk_bytes / vec_size);
        a.chunk_bytes = opt.chunk_bytes;
        a.gpu_lk_stride = opt.num_gpu_blocks * opt.chunk_bytes;
        a.host_stride = opt.host_stride;
        return a;
    }

    // Copy-engine copies of slots [p0, p1) of the job between a staging half and the host
    // pool: one copy per run of consecutive host slots.
    cudaError_t ce_copies(Direction& d, const std::vector<std::int64_t>& host_ids,
                          std::size_t p0, std::size_t p1, char* half, bool per_copy) {
        std::vector<void*> dsts;
        std::vector<const void*> srcs;
        std::vector<std::size_t> sizes;
        char* host = reinterpret_cast<char*>(opt.host_base);
        for (std::size_t i = p0; i < p1;) {
            std::size_t j = i + 1;
            while (j < p1 && host_ids[j] == host_ids[j - 1] + 1) {
                ++j;
            }
            char* st = half + (i - p0) * opt.host_stride;
            char* hp = host + std::uint64_t(host_ids[i]) * opt.host_stride;
            const std::size_t bytes = (j - i - 1) * opt.host_stride + block_bytes;
            dsts.push_back(d.h2d ? st : hp);
            srcs.push_back(d.h2d ? hp : st);
            sizes.push_back(bytes);
            i = j;
        }
#if CUDART_VERSION >= 12080
        if (batch && !per_copy) {
            cudaMemcpyAttributes attr{};
            attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
            attr.srcLocHint.type = d.h2d ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
            attr.srcLocHint.id = d.h2d ? 0 : opt.device;
            attr.dstLocHint.type = d.h2d ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost;
            attr.dstLocHint.id = d.h2d ? opt.device : 0;
            std::size_t attr_idx = 0;
#if CUDART_VERSION >= 13000
            cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(),
                                                   dsts.size(), &attr, &attr_idx, 1, d.cstream);
#else
            std::size_t fail_idx = 0;
            cudaError_t err = cudaMemcpyBatchAsync(
                dsts.data(), const_cast<void**>(srcs.data()), sizes.data(), dsts.size(), &attr,
                &attr_idx, 1, &fail_idx, d.cstream);
#endif
            if (err != cudaErrorNotSupported && err != cudaErrorInvalidValue) {
                return err;
            }
            cudaGetLastError();  // not usable here: per-copy from now on
            batch = false;
        }
#endif
        for (std::size_t k = 0; k < dsts.size(); ++k) {
            cudaError_t err =
                cudaMemcpyAsync(dsts[k], srcs[k], sizes[k], cudaMemcpyDefault, d.cstream);
            if (err != cudaSuccess) {
                return err;
            }
        }
        return cudaSuccess;
    }

    // Queues the stream work of one job; returns the first error (work queued before it
    // stays queued). `p.end` is recorded last, on the stream that finishes the job.
    cudaError_t enqueue(Direction& d, Pending& p, const std::vector<std::int64_t>& host_ids,
                        std::size_t n, Mode mode, unsigned grid) {
        cudaError_t err;
        const bool ce = mode == Mode::Ce || mode == Mode::CePerCopy;
        cudaStream_t first = (ce && d.h2d) ? d.cstream : d.kstream;
        if ((err = cudaEventRecord(p.start, first)) != cudaSuccess) return err;
        if ((err = cudaMemcpyAsync(p.ids.dev, p.ids.host, 2 * n * sizeof(std::int32_t),
                                   cudaMemcpyHostToDevice, d.kstream)) != cudaSuccess) {
            return err;
        }
        if (!ce) {
            if ((err = launch(args(p.ids, n, n, 0, host_dev, false), !d.h2d, grid, d.kstream)) !=
                cudaSuccess) {
                return err;
            }
            return cudaEventRecord(p.end, d.kstream);
        }
        const unsigned staging_grid = static_cast<unsigned>(sms) * 2;
        for (std::size_t p0 = 0; p0 < n; p0 += opt.staging_blocks) {
            const std::size_t p1 = std::min<std::size_t>(n, p0 + opt.staging_blocks);
            const int h = d.next_half;
            d.next_half ^= 1;
            char* half = d.staging + h * staging_half_bytes;
            const CopyArgs a = args(p.ids, n, p1 - p0, p0, half, true);
            if (d.h2d) {  // host -> staging (copy engines), staging -> cache (kernel)
                if ((err = cudaStreamWaitEvent(d.cstream, d.freed[h], 0)) != cudaSuccess ||
                    (err = ce_copies(d, host_ids, p0, p1, half, mode == Mode::CePerCopy)) !=
                        cudaSuccess ||
                    (err = cudaEventRecord(d.ready[h], d.cstream)) != cudaSuccess ||
                    (err = cudaStreamWaitEvent(d.kstream, d.ready[h], 0)) != cudaSuccess ||
                    (err = launch(a, false, staging_grid, d.kstream)) != cudaSuccess ||
                    (err = cudaEventRecord(d.freed[h], d.kstream)) != cudaSuccess) {
                    return err;
                }
            } else {  // cache -> staging (kernel), staging -> host (copy engines)
                if ((err = cudaStreamWaitEvent(d.kstream, d.freed[h], 0)) != cudaSuccess ||
                    (err = launch(a, true, staging_grid, d.kstream)) != cudaSuccess ||
                    (err = cudaEventRecord(d.ready[h], d.kstream)) != cudaSuccess ||
                    (err = cudaStreamWaitEvent(d.cstream, d.ready[h], 0)) != cudaSuccess ||
                    (err = ce_copies(d, host_ids, p0, p1, half, mode == Mode::CePerCopy)) !=
                        cudaSuccess ||
                    (err = cudaEventRecord(d.freed[h], d.cstream)) != cudaSuccess) {
                    return err;
                }
            }
        }
        return cudaEventRecord(p.end, d.h2d ? d.kstream : d.cstream);
    }

    // Puts one job's work on the streams. Runs on the direction's issuer thread, so a
    // call that blocks (the driver's queue of a stream can fill up) holds back neither
    // the caller of submit() nor the other direction.
    Pending issue(Direction& d, const Todo& t) {
        Pending p;
        p.job_id = t.job_id;
        p.submitted = t.submitted;
        const std::size_t n = t.gpu_ids.size();
        p.bytes = n * block_bytes;
        try {
            set_device();
            if (t.mode != Mode::Sm) {
                ensure_staging(d);
            }
            p.start = take_event();
            p.end = take_event();
            p.ids = take_ids(n);
        } catch (const std::exception& e) {
            p.error = e.what();
            return p;
        }
        for (std::size_t i = 0; i < n; ++i) {
            p.ids.host[i] = static_cast<std::int32_t>(t.gpu_ids[i]);
            p.ids.host[n + i] = static_cast<std::int32_t>(t.host_ids[i]);
        }
        const cudaError_t err = enqueue(d, p, t.host_ids, n, t.mode, t.grid);
        if (err != cudaSuccess) {
            p.error = cuda_message(d.h2d ? "queueing H2D job" : "queueing D2H job", err);
        }
        return p;
    }

    void issue_loop(Direction& d) {
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            d.todo_cv.wait(lk, [&] { return stopping || !d.todo.empty(); });
            if (d.todo.empty()) {
                break;
            }
            Todo t = std::move(d.todo.front());
            d.todo.pop_front();
            lk.unlock();
            Pending p = issue(d, t);
            lk.lock();
            d.pending.push_back(std::move(p));
            d.work_cv.notify_one();
        }
        d.issuer_done = true;
        d.work_cv.notify_one();
    }

    void wait_loop(Direction& d) {
        cudaSetDevice(opt.device);
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            d.work_cv.wait(lk, [&] { return d.issuer_done || !d.pending.empty(); });
            if (d.pending.empty()) {
                return;
            }
            Pending p = d.pending.front();
            lk.unlock();
            TransferCompletion c;
            c.job_id = p.job_id;
            c.bytes = p.bytes;
            cudaError_t err = cudaSuccess;
            if (p.error.empty()) {
                err = cudaEventSynchronize(p.end);
            } else if (p.end != nullptr) {  // queueing failed part-way: wait for what was queued
                cudaStreamSynchronize(d.kstream);
                cudaStreamSynchronize(d.cstream);
                cudaGetLastError();
            }
            const double finished = now_s();
            float ms = 0.0f;
            if (p.error.empty() && err == cudaSuccess) {
                if (cudaEventElapsedTime(&ms, p.start, p.end) != cudaSuccess) {
                    cudaGetLastError();
                    ms = 0.0f;
                }
            }
            c.transfer_s = ms * 1e-3;
            c.queue_s = std::max(0.0, finished - p.submitted - c.transfer_s);
            if (!p.error.empty()) {
                c.ok = false;
                c.error = p.error;
            } else if (err != cudaSuccess) {
                c.ok = false;
                c.error = cuda_message(d.h2d ? "H2D job" : "D2H job", err);
            }
            lk.lock();
            d.pending.pop_front();
            done.push_back(std::move(c));
            if (p.ids.host != nullptr) free_ids.push_back(p.ids);
            if (p.start != nullptr) free_events.push_back(p.start);
            if (p.end != nullptr) free_events.push_back(p.end);
            done_cv.notify_all();
        }
    }
};

KVTransfer::KVTransfer(const KVTransferOptions& options) : impl_(std::make_unique<Impl>(options)) {
    Impl& m = *impl_;
    const KVTransferOptions& o = m.opt;
    if (o.num_layers == 0 || (o.kv != 1 && o.kv != 2) || o.chunk_bytes == 0) {
        throw std::invalid_argument("layout needs num_layers > 0, kv in {1, 2}, chunk_bytes > 0");
    }
    if (o.chunk_bytes > 0xFFFFFFFFull) {
        throw std::invalid_argument("chunk_bytes must be under 4 GiB");
    }
    m.block_bytes = std::uint64_t(o.num_layers) * o.kv * o.chunk_bytes;
    if (o.host_stride < m.block_bytes) {
        throw std::invalid_argument("host_stride " + std::to_string(o.host_stride) +
                                    " is smaller than a block (" +
                                    std::to_string(m.block_bytes) + " bytes)");
    }
    if (o.num_gpu_blocks == 0 || o.num_host_blocks == 0 || o.num_gpu_blocks > 0x7FFFFFFF ||
        o.num_host_blocks > 0x7FFFFFFF) {
        throw std::invalid_argument("num_gpu_blocks and num_host_blocks must be in 1..2^31-1");
    }
    if (o.gpu_base == 0 || o.host_base == 0) {
        throw std::invalid_argument("gpu_base and host_base must not be null");
    }
    if (o.sms_h2d == 0 || o.sms_d2h == 0 || o.staging_blocks == 0) {
        throw std::invalid_argument("sms_h2d, sms_d2h and staging_blocks must be >= 1");
    }
    if (o.threads < 32 || o.threads > kMaxThreads || o.threads % 32 != 0) {
        throw std::invalid_argument("threads must be a multiple of 32 in 32..512");
    }
    if (o.chunks_per_iter != 1 && o.chunks_per_iter != 2 && o.chunks_per_iter != 4) {
        throw std::invalid_argument("chunks_per_iter must be 1, 2 or 4");
    }
    if (o.l2_prefetch > 1 && o.l2_prefetch != 128 && o.l2_prefetch != 256) {
        throw std::invalid_argument("l2_prefetch must be 0, 1 (bulk), 128 or 256");
    }
    m.set_device();
    check(cudaDeviceGetAttribute(&m.sms, cudaDevAttrMultiProcessorCount, o.device),
          "cudaDeviceGetAttribute");

    cudaPointerAttributes gattr{};
    check(cudaPointerGetAttributes(&gattr, reinterpret_cast<void*>(o.gpu_base)),
          "cudaPointerGetAttributes (gpu_base)");
    if (gattr.type != cudaMemoryTypeDevice || gattr.device != o.device) {
        throw std::invalid_argument("gpu_base is not device memory of device " +
                                    std::to_string(o.device));
    }

    // Map the host pool into the GPU's address space: pinned memory already is (its
    // device pointer is the host pointer under unified addressing); pageable memory is
    // registered here, mapped.
    void* host = reinterpret_cast<void*>(o.host_base);
    const std::size_t host_bytes = o.num_host_blocks * o.host_stride;
    cudaPointerAttributes hattr{};
    if (cudaPointerGetAttributes(&hattr, host) != cudaSuccess) {
        cudaGetLastError();
        hattr.type = cudaMemoryTypeUnregistered;
    }
    if (hattr.type == cudaMemoryTypeUnregistered) {
        check(cudaHostRegister(host, host_bytes, cudaHostRegisterMapped | cudaHostRegisterPortable),
              "cudaHostRegister (host pool)");
        m.registered_here = true;
    } else if (hattr.type != cudaMemoryTypeHost) {
        throw std::invalid_argument("host_base is device or managed memory, not host memory");
    }
    void* dev = m.registered_here ? nullptr : hattr.devicePointer;
    cudaError_t err = dev != nullptr ? cudaSuccess : cudaHostGetDevicePointer(&dev, host, 0);
    if (err != cudaSuccess) {
        if (m.registered_here) {
            cudaHostUnregister(host);
        }
        check(err, "cudaHostGetDevicePointer (host pool)");
    }
    m.host_dev = static_cast<char*>(dev);

    // 16-byte vectors when every address the kernel forms is 16-byte aligned.
    const std::uint64_t align_of = o.chunk_bytes | o.host_stride | o.gpu_base |
                                   reinterpret_cast<std::uintptr_t>(m.host_dev) | o.host_base;
    m.vec_size = (align_of % 16 == 0) ? 16 : (align_of % 4 == 0) ? 4 : 1;
    m.staging_half_bytes = std::size_t(o.staging_blocks) * o.host_stride;
#if CUDART_VERSION >= 12080
    m.batch = o.ce_batch;
#endif

    for (int i = 0; i < 2; ++i) {
        Impl::Direction& d = m.dirs[i];
        d.h2d = i == 1;
        // Blocking streams: they wait for work queued earlier on the legacy default stream.
        check(cudaStreamCreate(&d.kstream), "cudaStreamCreate");
        check(cudaStreamCreate(&d.cstream), "cudaStreamCreate");
        for (int h = 0; h < 2; ++h) {
            check(cudaEventCreateWithFlags(&d.ready[h], cudaEventDisableTiming), "cudaEventCreate");
            check(cudaEventCreateWithFlags(&d.freed[h], cudaEventDisableTiming), "cudaEventCreate");
        }
        if (d.h2d ? o.ce_h2d : o.ce_d2h) {
            m.ensure_staging(d);
        }
    }
    for (Impl::Direction& d : m.dirs) {
        d.waiter = std::thread([&m, &d] { m.wait_loop(d); });
        d.issuer = std::thread([&m, &d] { m.issue_loop(d); });
    }
}

KVTransfer::~KVTransfer() {
    try {
        close();
    } catch (...) {  // destructors never throw; close() reports nothing worth raising here
    }
}

void KVTransfer::submit(std::int64_t job_id, bool h2d, const std::vector<std::int64_t>& gpu_ids,
                        const std::vector<std::int64_t>& host_ids, Mode mode, std::uint32_t sms) {
    Impl& m = *impl_;
    const KVTransferOptions& o = m.opt;
    if (gpu_ids.size() != host_ids.size()) {
        throw std::invalid_argument("job " + std::to_string(job_id) + ": " +
                                    std::to_string(gpu_ids.size()) + " GPU ids but " +
                                    std::to_string(host_ids.size()) + " host ids");
    }
    for (std::size_t i = 0; i < gpu_ids.size(); ++i) {
        if (gpu_ids[i] < 0 || std::uint64_t(gpu_ids[i]) >= o.num_gpu_blocks) {
            throw std::out_of_range("job " + std::to_string(job_id) + ": GPU block id " +
                                    std::to_string(gpu_ids[i]) + " outside 0.." +
                                    std::to_string(o.num_gpu_blocks - 1));
        }
        if (host_ids[i] < 0 || std::uint64_t(host_ids[i]) >= o.num_host_blocks) {
            throw std::out_of_range("job " + std::to_string(job_id) + ": host block id " +
                                    std::to_string(host_ids[i]) + " outside 0.." +
                                    std::to_string(o.num_host_blocks - 1));
        }
    }
    const int mi = static_cast<int>(mode);
    if (mi < 0 || mi > 3) {
        throw std::invalid_argument("mode must be 0 (default), 1 (sm), 2 (ce) or 3 (ce per copy)");
    }
    if (mode == Mode::Default) {
        mode = (h2d ? o.ce_h2d : o.ce_d2h) ? (o.ce_batch ? Mode::Ce : Mode::CePerCopy) : Mode::Sm;
    }
    Todo t;
    t.job_id = job_id;
    t.mode = mode;
    t.grid = sms ? sms : (h2d ? o.sms_h2d : o.sms_d2h);
    t.submitted = now_s();
    t.gpu_ids = gpu_ids;
    t.host_ids = host_ids;
    Impl::Direction& d = m.dirs[h2d ? 1 : 0];
    std::lock_guard<std::mutex> lk(m.mu);
    if (m.closed) {
        throw std::runtime_error("KVTransfer is closed");
    }
    if (t.gpu_ids.empty()) {
        TransferCompletion c;
        c.job_id = job_id;
        m.done.push_back(std::move(c));
        m.done_cv.notify_all();
        return;
    }
    d.todo.push_back(std::move(t));
    d.todo_cv.notify_one();
}

std::vector<TransferCompletion> KVTransfer::poll(std::size_t max_jobs, double timeout_s) {
    Impl& m = *impl_;
    std::unique_lock<std::mutex> lk(m.mu);
    auto ready = [&] { return !m.done.empty(); };
    if (timeout_s < 0) {
        m.done_cv.wait(lk, ready);
    } else if (timeout_s > 0) {
        m.done_cv.wait_for(lk, std::chrono::duration<double>(timeout_s), ready);
    }
    std::vector<TransferCompletion> out;
    while (!m.done.empty() && (max_jobs == 0 || out.size() < max_jobs)) {
        out.push_back(std::move(m.done.front()));
        m.done.pop_front();
    }
    return out;
}

void KVTransfer::close() {
    Impl& m = *impl_;
    {
        std::lock_guard<std::mutex> lk(m.mu);
        if (m.stopping) {
            return;
        }
        m.closed = true;  // no new jobs; the issuers queue what is left, the waiters drain
        m.stopping = true;
    }
    for (Impl::Direction& d : m.dirs) {
        d.todo_cv.notify_all();
    }
    for (Impl::Direction& d : m.dirs) {
        if (d.issuer.joinable()) d.issuer.join();
        if (d.waiter.joinable()) d.waiter.join();
    }
    cudaSetDevice(m.opt.device);
    for (Impl::Direction& d : m.dirs) {
        for (cudaStream_t s : {d.kstream, d.cstream}) {
            if (s != nullptr) {
                cudaStreamSynchronize(s);
                cudaStreamDestroy(s);
            }
        }
        for (int h = 0; h < 2; ++h) {
            if (d.ready[h] != nullptr) cudaEventDestroy(d.ready[h]);
            if (d.freed[h] != nullptr) cudaEventDestroy(d.freed[h]);
        }
        if (d.staging != nullptr) cudaFree(d.staging);
        d.kstream = d.cstream = nullptr;
        d.ready[0] = d.ready[1] = d.freed[0] = d.freed[1] = nullptr;
        d.staging = nullptr;
    }
    std::lock_guard<std::mutex> lk(m.mu);
    for (IdBuffer& b : m.free_ids) {
        cudaFreeHost(b.host);
        cudaFree(b.dev);
    }
    m.free_ids.clear();
    for (cudaEvent_t e : m.free_events) {
        cudaEventDestroy(e);
    }
    m.free_events.clear();
    if (m.registered_here) {
        cudaHostUnregister(reinterpret_cast<void*>(m.opt.host_base));
        m.registered_here = false;
    }
    cudaGetLastError();
}

std::size_t KVTransfer::pending_jobs() const {
    std::lock_guard<std::mutex> lk(impl_->mu);
    std::size_t n = impl_->done.size();
    for (const Impl::Direction& d : impl_->dirs) {
        n += d.todo.size() + d.pending.size();
    }
    return n;
}

bool KVTransfer::host_registered_here() const { return impl_->registered_here; }

bool KVTransfer::batch_copies() const { return impl_->batch.load(); }

int KVTransfer::sm_count() const { return impl_->sms; }

const KVTransferOptions& KVTransfer::options() const { return impl_->opt; }

}  // namespace flexkv::cuda
