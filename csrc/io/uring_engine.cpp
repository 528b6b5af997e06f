// io_uring engine for the CPU <-> SSD path; see uring_engine.h for the design.
#include "io/uring_engine.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace flexkv::io {

namespace {

constexpr std::uint64_t kAlign = 4096;
constexpr std::uint64_t kWakeTag = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kNoSeq = std::numeric_limits<std::uint32_t>::max();
// The kernel moves at most this many bytes in one read/write (MAX_RW_COUNT).
constexpr std::uint64_t kMaxRw = 0x7ffff000ULL;

std::string errno_text(int err) {
    return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

// Ring set-up flags, best first; a kernel that lacks one answers -EINVAL and the next is
// tried. SINGLE_ISSUER + DEFER_TASKRUN (6.1) run completions only when the worker asks,
// with no interrupts of other threads; COOP_TASKRUN (5.19) avoids the IPIs at least.
struct FlagSet {
    unsigned flags;
    const char* name;
};
constexpr FlagSet kFlagSets[] = {
    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "single_issuer|defer_taskrun"},
    {IORING_SETUP_COOP_TASKRUN, "coop_taskrun"},
    {0, "none"},
};

// Why this ring cannot serve the engine ("" when it can): the opcodes it issues.
std::string missing_opcodes(io_uring* ring) {
    io_uring_probe* probe = io_uring_get_probe_ring(ring);
    if (probe == nullptr) {
        return "the kernel cannot list its io_uring opcodes (IORING_REGISTER_PROBE, 5.6+)";
    }
    std::string missing;
    const std::pair<int, const char*> needed[] = {
        {IORING_OP_READ, "IORING_OP_READ"},
        {IORING_OP_WRITE, "IORING_OP_WRITE"},
        {IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD"},
    };
    for (const auto& [op, name] : needed) {
        if (!io_uring_opcode_supported(probe, op)) {
            missing += missing.empty() ? "" : ", ";
            missing += name;
        }
    }
    io_uring_free_probe(probe);
    return missing.empty() ? "" : "the kernel lacks " + missing;
}

}  // namespace

std::string uring_probe() {
    io_uring ring{};
    int ret = io_uring_queue_init(2, &ring, 0);
    if (ret < 0) {
        return "io_uring_setup failed: " + errno_text(-ret);
    }
    std::string why = missing_opcodes(&ring);
    io_uring_queue_exit(&ring);
    return why;
}

UringEngine::UringEngine(std::vector<int> fds, std::vector<std::string> paths,
                         const UringOptions& opts)
    : fds_(std::move(fds)), paths_(std::move(paths)), opts_(opts) {
    if (fds_.empty() || fds_.size() != paths_.size()) {
        throw std::invalid_argument("need one path per fd, and at least one file");
    }
    if (opts_.queue_depth == 0 || opts_.queue_depth > 32768) {
        throw std::invalid_argument("queue_depth must be in [1, 32768], got " +
                                    std::to_string(opts_.queue_depth));
    }
    if (opts_.ssd_stride == 0 || opts_.ssd_stride % kAlign != 0 || opts_.ssd_stride > kMaxRw) {
        throw std::invalid_argument("ssd stride must be a positive multiple of 4096, got " +
                                    std::to_string(opts_.ssd_stride));
    }
    if (opts_.host_stride < opts_.ssd_stride || opts_.host_stride % kAlign != 0) {
        throw std::invalid_argument("host stride must be a multiple of 4096 and at least the "
                                    "ssd stride, got " + std::to_string(opts_.host_stride));
    }
    if (opts_.host_base % kAlign != 0) {
        throw std::invalid_argument("host base address must be 4096-aligned (O_DIRECT)");
    }
    opts_.max_io_bytes = std::min(std::max(opts_.max_io_bytes, opts_.ssd_stride), kMaxRw);

    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
        throw std::runtime_error("eventfd: " + errno_text(errno));
    }
    worker_ = std::thread(&UringEngine::run, this);
    std::string error;
    {
        std::unique_lock<std::mutex> lk(mu_);
        ready_cv_.wait(lk, [this] { return ready_; });
        error = setup_error_;
    }
    if (!error.empty()) {
        worker_.join();
        ::close(wake_fd_);
        wake_fd_ = -1;
        closed_ = true;
        throw std::runtime_error(error);
    }
}

UringEngine::~UringEngine() { close(); }

bool UringEngine::setup_ring(std::string& error) {
    const unsigned entries = opts_.queue_depth + 1;  // + the eventfd poll
    int ret = -EINVAL;
    const char* flag_name = "none";
    for (const FlagSet& set : kFlagSets) {
        io_uring_params params{};
        params.flags = set.flags;
        ret = io_uring_queue_init_params(entries, &ring_, &params);
        if (ret == 0) {
            flag_name = set.name;
            break;
        }
        if (ret != -EINVAL) {
            break;
        }
    }
    if (ret < 0) {
        error = "io_uring_setup(" + std::to_string(entries) + " entries) failed: " +
                errno_text(-ret);
        return false;
    }
    std::string missing = missing_opcodes(&ring_);
    if (!missing.empty()) {
        io_uring_queue_exit(&ring_);
        error = "io_uring unusable: " + missing;
        return false;
    }
    // Registered files spare the kernel an fget/fput per I/O; optional.
    fixed_files_ = io_uring_register_files(&ring_, fds_.data(),
                                           static_cast<unsigned>(fds_.size())) == 0;
    features_ = std::string("flags=") + flag_name + " fixed_files=" + (fixed_files_ ? "1" : "0");
    return true;
}

void UringEngine::run() {
    std::string error;
    const bool ok = setup_ring(error);
    {
        std::lock_guard<std::mutex> lk(mu_);
        ready_ = true;
        setup_error_ = error;
    }
    ready_cv_.notify_all();
    if (!ok) {
        return;
    }

    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        if (!wakeup_armed_) {
            arm_wakeup_locked();
        }
        fill_locked(lk);
        if (stopping_ && inflight_ == 0 && pending_.empty()) {
            break;
        }
        // Submitters see this flag under the mutex and ring the eventfd: no lost wake-up.
        worker_sleeping_ = true;
        lk.unlock();
        const int ret = io_uring_submit_and_wait(&ring_, 1);
        lk.lock();
        worker_sleeping_ = false;
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
            fail_all_locked("io_uring_enter: " + errno_text(-ret));
            break;
        }
        reap_locked();
    }
    lk.unlock();
    io_uring_queue_exit(&ring_);
}

void UringEngine::arm_wakeup_locked() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
        return;  // ring full: armed on the next turn
    }
    io_uring_prep_poll_add(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    wakeup_armed_ = true;
}

void UringEngine::wake_worker_locked() {
    if (!worker_sleeping_) {
        return;  // it looks at the queue before it sleeps again
    }
    const std::uint64_t one = 1;
    // Cannot fail short of a counter overflow; the worker drains it on every wake-up.
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    worker_sleeping_ = false;
}

void UringEngine::fill_locked(std::unique_lock<std::mutex>& lk) {
    unsigned unsent = 0;
    while (inflight_ < opts_.queue_depth && !pending_.empty()) {
        const auto [seq, index] = pending_.front();
        Job& job = *jobs_.at(seq);
        if (!job.error.empty()) {  // failed: drop what it has not issued yet
            pending_.pop_front();
            --job.unfinished;
            finish_if_done_locked(seq, job);
            continue;
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
            break;
        }
        pending_.pop_front();
        Io& io = job.ios[index];
        std::uint64_t count = io.length - io.done;
        if (opts_.inject_short && count > kAlign) {
            count = std::max(kAlign, (count / 2) & ~(kAlign - 1));
        }
        const int fd = fixed_files_ ? static_cast<int>(io.file) : fds_[io.file];
        void* addr = io.host + io.done;
        const std::uint64_t offset = io.offset + io.done;
        if (job.write) {
            io_uring_prep_write(sqe, fd, addr, static_cast<unsigned>(count), offset);
        } else {
            io_uring_prep_read(sqe, fd, addr, static_cast<unsigned>(count), offset);
        }
        if (fixed_files_) {
            sqe->flags |= IOSQE_FIXED_FILE;
        }
        io_uring_sqe_set_data64(sqe, (static_cast<std::uint64_t>(seq) << 32) | index);
        if (!job.issued) {
            job.issued = true;
            job.first_issue = Clock::now();
        }
        ++inflight_;
        if (opts_.submit_batch != 0 && ++unsent >= opts_.submit_batch) {
            // Jobs stay put while unlocked: they own unfinished I/Os, and jobs_ holds
            // them by unique_ptr. A failed submit leaves the SQEs queued for the next
            // io_uring_enter, whose error handling covers it.
            lk.unlock();
            const int ret = io_uring_submit(&ring_);
            lk.lock();
            unsent = 0;
            if (ret < 0) {
                break;
            }
        }
    }
}

void UringEngine::reap_locked() {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        const std::uint64_t data = io_uring_cqe_get_data64(cqe);
        if (data == kWakeTag) {
            std::uint64_t count;
            while (::read(wake_fd_, &count, sizeof count) > 0) {
            }
            wakeup_armed_ = false;
            continue;
        }
        --inflight_;
        complete_io_locked(static_cast<std::uint32_t>(data >> 32),
                           static_cast<std::uint32_t>(data & 0xffffffffU), cqe->res);
    }
    io_uring_cq_advance(&ring_, seen);
}

void UringEngine::complete_io_locked(std::uint32_t seq, std::uint32_t index, int res) {
    Job& job = *jobs_.at(seq);
    Io& io = job.ios[index];
    job.last_done = Clock::now();
    if (opts_.inject_eagain && !io.eagain_injected) {
        io.eagain_injected = true;
        res = -EAGAIN;
    }
    if (fault_.count != 0 && (fault_.op == 2 || fault_.op == (job.write ? 1 : 0))) {
        if (fault_.skip > 0) {
            --fault_.skip;
        } else {
            res = fault_.result;
            if (fault_.count > 0) {
                --fault_.count;
            }
        }
    }
    if (res == -EAGAIN || res == -EINTR) {
        pending_.emplace_front(seq, index);  // nothing moved (or moved again): reissue
        return;
    }
    if (res <= 0) {
        if (job.error.empty()) {
            job.error = describe_error(job, io, -res);
        }
        --job.unfinished;
        finish_if_done_locked(seq, job);
        return;
    }
    io.done += static_cast<std::uint64_t>(res);
    job.bytes += static_cast<std::uint64_t>(res);
    if (io.done < io.length) {
        pending_.emplace_front(seq, index);  // short: resume where it stopped
        return;
    }
    --job.unfinished;
    finish_if_done_locked(seq, job);
}

std::string UringEngine::describe_error(const Job& job, const Io& io, int err) const {
    std::string where = std::string(job.write ? "write " : "read ") + paths_[io.file] +
                        " offset " + std::to_string(io.offset + io.done) + ": ";
    if (err != 0) {
        return where + errno_text(err);
    }
    if (job.write) {
        return where + "no progress (0 bytes written of " +
               std::to_string(io.length - io.done) + ")";
    }
    return where + "unexpected end of file (got " + std::to_string(io.done) + " of " +
           std::to_string(io.length) + " bytes)";
}

void UringEngine::finish_if_done_locked(std::uint32_t seq, Job& job) {
    if (job.unfinished != 0) {
        return;
    }
    using Seconds = std::chrono::duration<double>;
    UringCompletion done{job.id, job.error.empty(), job.error, job.bytes, 0.0, 0.0};
    if (job.issued) {
        done.queue_s = Seconds(job.first_issue - job.submitted).count();
        done.transfer_s = Seconds(job.last_done - job.first_issue).count();
    }
    finished_.push_back(std::move(done));
    live_ids_.erase(job.id);
    jobs_.erase(seq);  // `job` dangles from here on
    done_cv_.notify_all();
}

void UringEngine::fail_all_locked(const std::string& error) {
    pending_.clear();
    std::vector<std::uint32_t> seqs;
    seqs.reserve(jobs_.size());
    for (auto& [seq, job] : jobs_) {
        seqs.push_back(seq);
        if (job->error.empty()) {
            job->error = error;
        }
        job->unfinished = 0;
    }
    for (std::uint32_t seq : seqs) {
        finish_if_done_locked(seq, *jobs_.at(seq));
    }
    inflight_ = 0;
}

void UringEngine::submit(std::int64_t job_id, bool write, const std::vector<std::int64_t>& ssd_ids,
                         const std::vector<std::int64_t>& host_ids) {
    if (ssd_ids.size() != host_ids.size()) {
        throw std::invalid_argument("ssd_ids and host_ids differ in length (" +
                                    std::to_string(ssd_ids.size()) + " != " +
                                    std::to_string(host_ids.size()) + ")");
    }
    const auto nssd = static_cast<std::int64_t>(opts_.num_ssd_blocks);
    const auto nhost = static_cast<std::int64_t>(opts_.num_host_blocks);
    const auto nfiles = static_cast<std::uint64_t>(fds_.size());
    auto job = std::make_unique<Job>();
    job->id = job_id;
    job->write = write;
    job->ios.reserve(ssd_ids.size());
    for (std::size_t i = 0; i < ssd_ids.size(); ++i) {
        const std::int64_t s = ssd_ids[i];
        const std::int64_t h = host_ids[i];
        if (s < 0 || s >= nssd) {
            throw std::out_of_range("ssd id " + std::to_string(s) + " out of range [0, " +
                                    std::to_string(nssd) + ")");
        }
        if (h < 0 || h >= nhost) {
            throw std::out_of_range("host id " + std::to_string(h) + " out of range [0, " +
                                    std::to_string(nhost) + ")");
        }
        const auto b = static_cast<std::uint64_t>(s);
        const auto file = static_cast<std::uint32_t>(b % nfiles);
        const std::uint64_t offset = (b / nfiles) * opts_.ssd_stride;
        char* host = reinterpret_cast<char*>(opts_.host_base) +
                     static_cast<std::uint64_t>(h) * opts_.host_stride;
        if (!job->ios.empty()) {
            Io& last = job->ios.back();
            if (last.file == file && last.offset + last.length == offset &&
                last.host + last.length == host &&
                last.length + opts_.ssd_stride <= opts_.max_io_bytes) {
                last.length += opts_.ssd_stride;
                continue;
            }
        }
        job->ios.push_back(Io{file, offset, host, opts_.ssd_stride});
    }
    job->unfinished = job->ios.size();
    job->submitted = Clock::now();

    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ || closed_) {
        throw std::runtime_error("the io_uring engine is closed");
    }
    if (live_ids_.count(job_id) != 0) {
        throw std::invalid_argument("job id " + std::to_string(job_id) + " is already in flight");
    }
    std::uint32_t seq = next_seq_++;
    while (seq == kNoSeq || jobs_.count(seq) != 0) {
        seq = next_seq_++;
    }
    live_ids_.insert(job_id);
    Job& ref = *job;
    jobs_.emplace(seq, std::move(job));
    if (ref.ios.empty()) {
        finish_if_done_locked(seq, ref);
        return;
    }
    for (std::uint32_t i = 0; i < ref.ios.size(); ++i) {
        pending_.emplace_back(seq, i);
    }
    wake_worker_locked();
}

std::vector<UringCompletion> UringEngine::poll(std::size_t max_jobs, double timeout_s) {
    std::unique_lock<std::mutex> lk(mu_);
    auto ready = [this] {
        return !finished_.empty() || (jobs_.empty() && (stopping_ || closed_));
    };
    if (timeout_s < 0) {
        done_cv_.wait(lk, ready);
    } else if (timeout_s > 0) {
        done_cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), ready);
    }
    std::vector<UringCompletion> out;
    const std::size_t n = max_jobs == 0 ? finished_.size() : std::min(max_jobs, finished_.size());
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(std::move(finished_.front()));
        finished_.pop_front();
    }
    return out;
}

void UringEngine::close() {
    std::lock_guard<std::mutex> closing(close_mu_);
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (closed_) {
            return;
        }
        stopping_ = true;
        wake_worker_locked();
    }
    if (worker_.joinable()) {
        worker_.join();
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        closed_ = true;
    }
    done_cv_.notify_all();
    if (wake_fd_ >= 0) {
        ::close(wake_fd_);
        wake_fd_ = -1;
    }
}

void UringEngine::inject_fault(int op, int result, std::int64_t skip, std::int64_t count) {
    if (op < 0 || op > 2) {
        throw std::invalid_argument("fault op must be 0 (read), 1 (write) or 2 (either)");
    }
    std::lock_guard<std::mutex> lk(mu_);
    fault_ = Fault{op, result, std::max<std::int64_t>(skip, 0), count};
}

std::size_t UringEngine::pending_jobs() {
    std::lock_guard<std::mutex> lk(mu_);
    return jobs_.size() + finished_.size();
}

std::string UringEngine::features() {
    std::lock_guard<std::mutex> lk(mu_);
    return features_;
}

}  // namespace flexkv::io
