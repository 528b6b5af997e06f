// Python bindings of the SSD I/O engine: `_native.UringEngine` and `_native.uring_probe`.
//
// Compiled whether or not liburing was found; without it only `uring_probe` exists and
// says so, and the Python side falls back to its thread backend.
#include "io/bind_io.h"

#include <nanobind/stl/optional.h>
#include "bind_poll.h"
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#ifdef FLEXKV_HAVE_IO_URING
#include "io/uring_engine.h"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace flexkv::io {

void bind_io(nb::module_& m) {
    m.def(
        "uring_probe",
        []() -> std::optional<std::string> {
#ifdef FLEXKV_HAVE_IO_URING
            std::string why;
            {
                nb::gil_scoped_release unlocked;
                why = uring_probe();
            }
            if (why.empty()) {
                return std::nullopt;
            }
            return why;
#else
            return std::string("the native module was built without liburing");
#endif
        },
        "None when the io_uring engine can run here, else the reason it cannot.");

#ifdef FLEXKV_HAVE_IO_URING
    nb::class_<UringEngine>(m, "UringEngine",
                            "io_uring engine moving blocks between a host buffer and striped "
                            "SSD files (see flexkv_engine.storage.ssd_io).")
        .def(
            "__init__",
            [](UringEngine* self, std::vector<int> fds, std::vector<std::string> paths,
               std::uintptr_t host_base, std::uint64_t host_stride,
               std::uint64_t num_host_blocks, std::uint64_t ssd_stride,
               std::uint64_t num_ssd_blocks, unsigned queue_depth, std::uint64_t max_io_bytes,
               bool inject_short, bool inject_eagain, unsigned submit_batch) {
                UringOptions opts;
                opts.host_base = host_base;
                opts.host_stride = host_stride;
                opts.num_host_blocks = num_host_blocks;
                opts.ssd_stride = ssd_stride;
                opts.num_ssd_blocks = num_ssd_blocks;
                opts.queue_depth = queue_depth;
                opts.max_io_bytes = max_io_bytes;
                opts.inject_short = inject_short;
                opts.inject_eagain = inject_eagain;
                opts.submit_batch = submit_batch;
                nb::gil_scoped_release unlocked;
                new (self) UringEngine(std::move(fds), std::move(paths), opts);
            },
            "fds"_a, "paths"_a, "host_base"_a, "host_stride"_a, "num_host_blocks"_a,
            "ssd_stride"_a, "num_ssd_blocks"_a, "queue_depth"_a, "max_io_bytes"_a = 1 << 20,
            "inject_short"_a = false, "inject_eagain"_a = false, "submit_batch"_a = 0,
            "Start the worker and its ring. The fds and the host memory must stay valid "
            "until close(). inject_*: test hooks that force short I/O or -EAGAIN. "
            "submit_batch: SQEs per io_uring_enter while filling (0: all ready at once).")
        .def("submit", &UringEngine::submit, "job_id"_a, "write"_a, "ssd_ids"_a, "host_ids"_a,
             nb::call_guard<nb::gil_scoped_release>(),
             "Queue one job (returns at once). IndexError names an out-of-range id; "
             "ValueError on a length mismatch or a job id in flight; RuntimeError once "
             "closed.")
        .def(
            "poll",
            &flexkv::poll_completions<UringEngine>,
            "max_jobs"_a = 0, "timeout"_a.none() = 0.0,
            "Finished jobs as (job_id, ok, error, bytes, queue_s, transfer_s) tuples, at most "
            "max_jobs (0: all), waiting up to timeout seconds (None: forever) for one. "
            "The GIL is released while waiting.")
        .def("close", &UringEngine::close, nb::call_guard<nb::gil_scoped_release>(),
             "Wait for every submitted job, then stop the worker. Idempotent.")
        .def("inject_fault", &UringEngine::inject_fault, "op"_a, "result"_a, "skip"_a = 0,
             "count"_a = 1,
             "Test hook: the next `count` I/O completions of `op` (0 read, 1 write, 2 "
             "either), after `skip`, report `result` (-errno, or 0 for end of file / no "
             "progress). count < 0: all from then on; 0 disarms.")
        .def("pending_jobs", &UringEngine::pending_jobs,
             "Jobs submitted and not yet returned by poll().")
        .def("features", &UringEngine::features,
             "Ring set-up flags the kernel accepted and whether files are registered.")
        .def_prop_ro("queue_depth", &UringEngine::queue_depth);
#endif
}

}  // namespace flexkv::io
