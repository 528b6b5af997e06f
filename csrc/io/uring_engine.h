// io_uring engine for the CPU <-> SSD path of the KV cache.
//
// Geometry (fixed by the Python side, see flexkv_engine/storage/ssd_files.py): host
// memory is one buffer of `num_host_blocks` slots of `host_stride` bytes; SSD block `b`
// lives in file `b % nfiles` at offset `(b / nfiles) * ssd_stride`. A job moves a list of
// blocks in one direction; each block is one I/O of `ssd_stride` bytes, except that
// blocks adjacent both in one file and in host memory are merged up to `max_io_bytes`.
//
// One worker thread owns the ring: it creates it, fills it, reaps it, and is the only
// task that ever enters the kernel for it (so SINGLE_ISSUER / DEFER_TASKRUN can be used
// where the kernel has them). Callers hand work over through a queue under a mutex and
// wake the worker with an eventfd that the ring itself polls. At most `queue_depth`
// data I/Os are in flight; user_data carries (job sequence number, I/O index). Short
// reads and writes are resumed from where they stopped; -EAGAIN and -EINTR are retried;
// any other failure records the first error of the job (op, path, offset, errno text)
// and the job's I/Os not yet issued are dropped.
#pragma once

#include <liburing.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace flexkv::io {

// "" when io_uring can be used here (ring set-up works and the kernel knows the opcodes
// the engine needs), else why not. Cheap; callers cache it.
std::string uring_probe();

struct UringOptions {
    std::uintptr_t host_base = 0;        // 4096-aligned
    std::uint64_t host_stride = 0;       // bytes between host slots, multiple of 4096
    std::uint64_t num_host_blocks = 0;
    std::uint64_t ssd_stride = 0;        // bytes per SSD block (the transfer size)
    std::uint64_t num_ssd_blocks = 0;
    unsigned queue_depth = 32;           // data I/Os in flight at most
    std::uint64_t max_io_bytes = 1 << 20;  // merge adjacent blocks up to this size
    // SQEs handed to the kernel per io_uring_enter while filling the ring: 0 = all that
    // are ready in one call (fewest syscalls); 1 = each I/O as soon as it is ready (fio's
    // default). The two measured the same on the reference VM; kept as a knob.
    unsigned submit_batch = 0;
    // Test hooks that drive the recovery paths on a healthy disk.
    bool inject_short = false;   // issue at most half of what is left: every I/O is "short"
    bool inject_eagain = false;  // report the first completion of every I/O as -EAGAIN
};

struct UringCompletion {
    std::int64_t job_id;
    bool ok;
    std::string error;  // empty when ok
    std::uint64_t bytes;
    double queue_s;     // submit -> first I/O issued
    double transfer_s;  // first I/O issued -> last I/O completed
};

class UringEngine {
public:
    // Starts the worker and sets the ring up there; throws std::runtime_error (naming the
    // failing call) when the ring cannot be created. `fds[i]` is file i, named `paths[i]`
    // in error messages. The fds and the host memory must outlive the engine.
    UringEngine(std::vector<int> fds, std::vector<std::string> paths, const UringOptions& opts);
    ~UringEngine();
    UringEngine(const UringEngine&) = delete;
    UringEngine& operator=(const UringEngine&) = delete;

    // Queues one job. Throws std::out_of_range naming a bad id, std::invalid_argument on
    // a length mismatch or a job id already in flight, std::runtime_error once closed.
    // Thread-safe.
    void submit(std::int64_t job_id, bool write, const std::vector<std::int64_t>& ssd_ids,
                const std::vector<std::int64_t>& host_ids);

    // Up to `max_jobs` finished jobs, waiting up to `timeout_s` (< 0: forever) for at least
    // one. Returns early with nothing once closed and no job is left. Call without the GIL.
    std::vector<UringCompletion> poll(std::size_t max_jobs, double timeout_s);

    // Waits for every submitted job to finish, then stops the worker and frees the ring.
    // Finished jobs can still be polled afterwards. Idempotent.
    void close();

    // Test hook for the failure paths: the next `count` completions of data I/Os in
    // direction `op` (0 read, 1 write, 2 either), after `skip` of them, report `result`
    // (-errno, or 0: end of file for a read, no progress for a write) instead of what the
    // kernel returned. A short I/O's resumption is a completion of its own. count < 0:
    // every matching completion from then on; count 0 disarms. The I/O itself ran.
    void inject_fault(int op, int result, std::int64_t skip, std::int64_t count);

    // Jobs submitted and not yet returned by poll().
    std::size_t pending_jobs();
    // What the worker got from the kernel: ring flags used and whether files are registered.
    std::string features();
    unsigned queue_depth() const noexcept { return opts_.queue_depth; }

private:
    using Clock = std::chrono::steady_clock;

    struct Io {
        std::uint32_t file;
        std::uint64_t offset;     // file offset of the I/O's first byte
        char* host;               // host address of the I/O's first byte
        std::uint64_t length;
        std::uint64_t done = 0;   // bytes moved so far (resumption point)
        bool eagain_injected = false;
    };
    struct Job {
        std::int64_t id;
        bool write;
        std::vector<Io> ios;
        std::size_t unfinished;   // I/Os neither completed nor dropped
        std::uint64_t bytes = 0;
        std::string error;
        Clock::time_point submitted, first_issue, last_done;
        bool issued = false;
    };

    struct Fault {
        int op = 2;
        int result = 0;
        std::int64_t skip = 0;
        std::int64_t count = 0;  // 0: disarmed
    };

    void run();
    bool setup_ring(std::string& error);
    void arm_wakeup_locked();
    void fill_locked(std::unique_lock<std::mutex>& lk);
    void reap_locked();
    void complete_io_locked(std::uint32_t seq, std::uint32_t index, int res);
    void finish_if_done_locked(std::uint32_t seq, Job& job);
    void fail_all_locked(const std::string& error);
    void wake_worker_locked();
    std::string describe_error(const Job& job, const Io& io, int err) const;

    std::vector<int> fds_;
    std::vector<std::string> paths_;
    UringOptions opts_;

    std::mutex close_mu_;  // serialises close() (join once)
    std::mutex mu_;
    std::condition_variable done_cv_;   // poll() waits here
    std::condition_variable ready_cv_;  // the constructor waits here for the ring set-up
    std::unordered_map<std::uint32_t, std::unique_ptr<Job>> jobs_;
    std::unordered_set<std::int64_t> live_ids_;
    std::deque<std::pair<std::uint32_t, std::uint32_t>> pending_;  // (job seq, io index)
    std::deque<UringCompletion> finished_;
    std::uint32_t next_seq_ = 0;
    Fault fault_;
    unsigned inflight_ = 0;
    bool worker_sleeping_ = false;
    bool wakeup_armed_ = false;
    bool stopping_ = false;
    bool closed_ = false;
    bool ready_ = false;
    std::string setup_error_;
    std::string features_;

    io_uring ring_{};
    bool fixed_files_ = false;
    int wake_fd_ = -1;
    std::uint64_t wake_buf_ = 0;
    std::thread worker_;
};

}  // namespace flexkv::io
