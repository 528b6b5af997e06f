// Block-id allocation of one tier: flexkv_engine.core.allocator, ported.
//
// With ids: lowest free ids first, the free list kept descending and re-sorted lazily
// after releases (BlockAllocator). Without ids: a count (CountingAllocator). Both hand out
// exactly what the Python allocators hand out, since "the lowest k free ids" depends only
// on the free set.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <vector>

namespace flexkv::index {

class Allocator {
public:
    Allocator(std::int64_t capacity, bool track_ids) : capacity_(capacity), track_(track_ids) {
        if (track_) {
            free_.reserve(static_cast<std::size_t>(capacity));
            for (std::int64_t i = capacity - 1; i >= 0; --i) {
                free_.push_back(i);
            }
        } else {
            count_ = capacity;
        }
    }

    std::int64_t capacity() const noexcept { return capacity_; }
    std::int64_t free() const noexcept {
        return track_ ? static_cast<std::int64_t>(free_.size()) : count_;
    }
    std::int64_t used() const noexcept { return capacity_ - free(); }

    // Take the `count` lowest free ids (ascending, appended to `out`), or just count them.
    void allocate(std::int64_t count, std::vector<std::int64_t>& out) {
        if (count > free()) {
            throw std::length_error("cannot allocate blocks");
        }
        if (!track_) {
            count_ -= count;
            return;
        }
        if (dirty_) {
            std::sort(free_.begin(), free_.end(), std::greater<>());
            dirty_ = false;
        }
        const auto first = free_.end() - count;
        out.insert(out.end(), std::make_reverse_iterator(free_.end()),
                   std::make_reverse_iterator(first));
        free_.erase(first, free_.end());
    }

    void release(const std::int64_t* ids, std::size_t n) {
        if (n != 0) {
            free_.insert(free_.end(), ids, ids + n);
            dirty_ = true;
        }
    }
    void release_count(std::int64_t n) { count_ += n; }

    // Take these ids, all free now (restoring an index). Returns false when one is not
    // free or is listed twice, leaving the free list as it was.
    bool take(const std::vector<std::int64_t>& ids) {
        std::vector<char> wanted(static_cast<std::size_t>(capacity_), 0);
        for (auto i : ids) {
            if (i < 0 || i >= capacity_ || wanted[static_cast<std::size_t>(i)]) {
                return false;
            }
            wanted[static_cast<std::size_t>(i)] = 1;
        }
        std::vector<std::int64_t> keep;
        keep.reserve(free_.size());
        for (auto i : free_) {
            if (!wanted[static_cast<std::size_t>(i)]) {
                keep.push_back(i);
            }
        }
        if (free_.size() - keep.size() != ids.size()) {
            return false;
        }
        free_.swap(keep);
        return true;
    }

    std::vector<std::int64_t> free_ids() const {
        std::vector<std::int64_t> out(free_);
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    std::int64_t capacity_;
    bool track_;
    std::vector<std::int64_t> free_;  // descending unless dirty_
    bool dirty_ = false;
    std::int64_t count_ = 0;  // free blocks when ids are not kept
};

}  // namespace flexkv::index
