// Python bindings of the GPU <-> host transfer engine: `_native.KVTransfer` and
// `_native.time_contiguous_copies` (see cuda/kv_transfer.h and cuda/transfer_bench.h).
//
// Compiled whether or not CUDA was found; without it neither exists, and
// `_native.build_info()["cuda"]` is False (the engine then uses its torch mover).
#include "cuda/bind_transfer.h"

#include <nanobind/stl/optional.h>
#include "bind_poll.h"
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <vector>

#ifdef FLEXKV_WITH_CUDA
#include "cuda/kv_transfer.h"
#include "cuda/transfer_bench.h"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace flexkv::cuda {

void bind_transfer([[maybe_unused]] nb::module_& m) {
#ifdef FLEXKV_WITH_CUDA
    nb::class_<KVTransfer>(m, "KVTransfer",
                           "GPU <-> host copies of KV blocks between the layer-first GPU cache "
                           "and the block-first host pool: SM gather/scatter kernel or copy "
                           "engines, one stream set per direction, completions through poll() "
                           "(see flexkv_engine.transfer.cuda_copy).")
        .def(
            "__init__",
            [](KVTransfer* self, int device, std::uintptr_t gpu_base,
               std::uint64_t num_gpu_blocks, std::uintptr_t host_base,
               std::uint64_t host_stride, std::uint64_t num_host_blocks,
               std::uint32_t num_layers, std::uint32_t kv, std::uint64_t chunk_bytes,
               std::uint32_t sms_h2d, std::uint32_t sms_d2h, bool ce_h2d, bool ce_d2h,
               bool ce_batch, std::uint32_t staging_blocks, std::uint32_t threads,
               std::uint32_t chunks_per_iter, std::uint32_t l2_prefetch) {
                KVTransferOptions o;
                o.device = device;
                o.gpu_base = gpu_base;
                o.num_gpu_blocks = num_gpu_blocks;
                o.host_base = host_base;
                o.host_stride = host_stride;
                o.num_host_blocks = num_host_blocks;
                o.num_layers = num_layers;
                o.kv = kv;
                o.chunk_bytes = chunk_bytes;
                o.sms_h2d = sms_h2d;
                o.sms_d2h = sms_d2h;
                o.ce_h2d = ce_h2d;
                o.ce_d2h = ce_d2h;
                o.ce_batch = ce_batch;
                o.staging_blocks = staging_blocks;
                o.threads = threads;
                o.chunks_per_iter = chunks_per_iter;
                o.l2_prefetch = l2_prefetch;
                nb::gil_scoped_release unlocked;
                new (self) KVTransfer(o);
            },
            "device"_a, "gpu_base"_a, "num_gpu_blocks"_a, "host_base"_a, "host_stride"_a,
            "num_host_blocks"_a, "num_layers"_a, "kv"_a, "chunk_bytes"_a, "sms_h2d"_a = 8,
            "sms_d2h"_a = 8, "ce_h2d"_a = false, "ce_d2h"_a = false, "ce_batch"_a = true,
            "staging_blocks"_a = 32, "threads"_a = 512, "chunks_per_iter"_a = 2, "l2_prefetch"_a = 0,
            "Map the host pool (pinned, or registered here) and start the waiter threads. "
            "Both buffers must stay valid until close(). sms_*: CTAs of the SM kernel; "
            "ce_*: the direction's default path is the copy engine; staging_blocks: blocks "
            "per half of each direction's staging buffer; threads, chunks_per_iter, l2_prefetch: "
            "shape of the SM kernel (CTA size, chunks in flight per thread, L2 prefetch bytes "
            "hint of its loads: 0, 128 or 256; 1: TMA bulk prefetch of whole chunks into L2).")
        .def(
            "submit",
            [](KVTransfer& self, std::int64_t job_id, bool h2d, std::vector<std::int64_t> gpu_ids,
               std::vector<std::int64_t> host_ids, int mode, std::uint32_t sms) {
                nb::gil_scoped_release unlocked;
                self.submit(job_id, h2d, gpu_ids, host_ids, static_cast<Mode>(mode), sms);
            },
            "job_id"_a, "h2d"_a, "gpu_ids"_a, "host_ids"_a, "mode"_a = 0, "sms"_a = 0,
            "Queue one job, block gpu_ids[i] <-> host slot host_ids[i] (returns at once; an "
            "issuer thread per direction puts it on the streams). mode: 0 the direction's default, 1 SM kernel, 2 copy engine "
            "(batched), 3 copy engine with one cudaMemcpyAsync per run; sms: grid of the SM "
            "kernel (0: the direction's). IndexError names a bad id; ValueError on a length "
            "mismatch; RuntimeError once closed.")
        .def(
            "poll",
            &flexkv::poll_completions<KVTransfer>,
            "max_jobs"_a = 0, "timeout"_a.none() = 0.0,
            "Finished jobs as (job_id, ok, error, bytes, queue_s, transfer_s) tuples, at most "
            "max_jobs (0: all), waiting up to timeout seconds (None: forever) for one. "
            "transfer_s is GPU time between the job's events. The GIL is released while "
            "waiting.")
        .def("close", &KVTransfer::close, nb::call_guard<nb::gil_scoped_release>(),
             "Wait for every submitted job, stop the waiters, free GPU buffers and unregister "
             "host memory registered here. Idempotent.")
        .def("pending_jobs", &KVTransfer::pending_jobs,
             "Jobs submitted and not yet returned by poll().")
        .def_prop_ro("host_registered_here", &KVTransfer::host_registered_here,
                     "True when the host pool was not pinned and was registered here.")
        .def_prop_ro("batch_copies", &KVTransfer::batch_copies,
                     "True while the copy-engine path issues cudaMemcpyBatchAsync.")
        .def_prop_ro("sm_count", &KVTransfer::sm_count);

    m.def(
        "time_contiguous_copies",
        [](int device, std::vector<std::uintptr_t> dsts, std::vector<std::uintptr_t> srcs,
           std::vector<std::uint64_t> sizes, int repeats) {
            nb::gil_scoped_release unlocked;
            return time_contiguous_copies(device, dsts, srcs, sizes, repeats);
        },
        "device"_a, "dsts"_a, "srcs"_a, "sizes"_a, "repeats"_a = 5,
        "Seconds of each of `repeats` rounds (after one warm-up round) of plain "
        "cudaMemcpyAsync copies dsts[i] <- srcs[i], each copy on its own stream so that they "
        "run at once: the contiguous reference of the transfer benchmarks.");
#endif
}

}  // namespace flexkv::cuda
