// Shared binding of the engines' poll(): finished jobs as Python tuples.
//
// Every native data path (io_uring SSD engine, CUDA transfers) reports completions with
// the same fields; this turns them into (job_id, ok, error, bytes, queue_s, transfer_s)
// tuples, waiting with the GIL released.
#pragma once

#include <nanobind/nanobind.h>

#include <cstddef>
#include <optional>
#include <vector>

namespace flexkv {

template <typename Engine>
nanobind::list poll_completions(Engine& engine, std::size_t max_jobs,
                                std::optional<double> timeout) {
    namespace nb = nanobind;
    decltype(engine.poll(max_jobs, 0.0)) done;
    {
        nb::gil_scoped_release unlocked;
        done = engine.poll(max_jobs, timeout ? *timeout : -1.0);
    }
    nb::list out;
    for (const auto& c : done) {
        nb::object error = c.ok ? nb::none() : nb::object(nb::str(c.error.c_str()));
        out.append(nb::make_tuple(c.job_id, c.ok, error, c.bytes, c.queue_s, c.transfer_s));
    }
    return out;
}

}  // namespace flexkv
