// The prefix index: children, lookup, insertion and eviction (see tier_index.h; the
// other sections of index.py are in tier_index_recovery.cpp and tier_index_check.cpp).
#include "index/tier_index.h"

#include <nanobind/nanobind.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

namespace nb = nanobind;

namespace flexkv::index {
namespace {

bool entry_after(const std::pair<Priority, std::int64_t>& a,
                 const std::pair<Priority, std::int64_t>& b) noexcept {
    if (a.first != b.first) {
        return b.first < a.first;
    }
    return a.second > b.second;
}

}  // namespace

void retain(Node* node) noexcept { ++node->refs; }

void drop(Node* node) noexcept {
    while (node != nullptr && --node->refs == 0) {
        Node* parent = node->parent;
        delete node;
        node = parent;
    }
}

Keys::Keys(PyObject* seq) {
    fast_ = PySequence_Fast(seq, "keys must be a list or a tuple");
    if (fast_ == nullptr) {
        throw nb::python_error();
    }
    items_ = PySequence_Fast_ITEMS(fast_);
    size_ = PySequence_Fast_GET_SIZE(fast_);
}

Key128 Keys::at(std::int64_t i) const {
    if (i < 0 || i >= size_) {
        throw nb::index_error("list index out of range");
    }
    Key128 key;
    if (!read_key(items_[i], key)) {
        throw nb::type_error("the native index takes int keys in [0, 2**128)");
    }
    return key;
}

void Keys::read(std::int64_t start, std::int64_t count, std::vector<Key128>& out) const {
    // The int objects of a request are scattered over the heap: ask for a few ahead so
    // their cache misses overlap.
    constexpr std::int64_t kAhead = 8;
    const std::int64_t end = start + count;
    // An int of 128 bits spans 44 bytes, often two cache lines.
    const auto fetch = [this](std::int64_t i) {
        const auto* p = reinterpret_cast<const char*>(items_[i]);
        __builtin_prefetch(p);
        __builtin_prefetch(p + 40);
    };
    for (std::int64_t i = start; i < end && i < start + kAhead; ++i) {
        fetch(i);
    }
    for (std::int64_t i = start; i < end; ++i) {
        if (i + kAhead < end) {
            fetch(i + kAhead);
        }
        Key128 key;
        if (!read_key(items_[i], key)) {
            throw nb::type_error("the native index takes int keys in [0, 2**128)");
        }
        out.push_back(key);
    }
}

std::string describe(const Node* node) {
    std::ostringstream out;
    out << "Node([" << node->start << "," << node->end() << ") ready="
        << (node->ready ? "True" : "False") << " lock=" << node->lock
        << " children=" << node->kids.size() + node->dropped_kids << ")";
    return out.str();
}

TierIndex::TierIndex(std::string name, std::int64_t capacity, Policy policy,
                     double evict_ratio, double evict_start_threshold, bool track_ids)
    : name_(std::move(name)),
      policy_(policy),
      lazy_(policy.monotone()),
      evict_ratio_(evict_ratio),
      evict_start_threshold_(evict_start_threshold),
      track_ids_(track_ids),
      alloc_(capacity, track_ids),
      root_(new Node()) {
    retain(root_);
}

TierIndex::~TierIndex() {
    // Break every link the index owns; nodes still held by Python handles live on, with
    // their parents, and are freed with their last handle.
    std::vector<Node*> all{root_};
    retain(root_);
    for (std::size_t i = 0; i < all.size(); ++i) {
        for (Node* kid : all[i]->kids) {
            retain(kid);
            all.push_back(kid);
        }
    }
    for (Node* node : all) {
        for (Node* kid : node->kids) {
            drop(kid);  // the child link; `all` still holds the kid
        }
        node->kids.clear();
    }
    for (const Entry& e : heap_) {
        drop(e.node);
    }
    for (Node* node : held_) {
        drop(node);
    }
    drop(root_);
    for (Node* node : all) {
        drop(node);
    }
}

// -- children ---------------------------------------------------------------------------

Node* TierIndex::find_child(const Node* parent, const Key128& key) const {
    const auto it = children_.find(ChildKey{parent, key});
    return it == children_.end() ? nullptr : it->second;
}

void TierIndex::add_child(Node* parent, Node* child) {
    children_.emplace(ChildKey{parent, child->keys[0]}, child);
    child->kid_pos = parent->kids.size();
    parent->kids.push_back(child);
    retain(child);
}

void TierIndex::replace_child(Node* parent, Node* old_child, Node* new_child) {
    children_[ChildKey{parent, new_child->keys[0]}] = new_child;  // the same first key
    new_child->kid_pos = old_child->kid_pos;
    parent->kids[new_child->kid_pos] = new_child;
    retain(new_child);
    drop(old_child);
}

void TierIndex::remove_child(Node* parent, Node* child) {
    const auto it = children_.find(ChildKey{parent, child->keys[0]});
    if (it == children_.end() || it->second != child) {
        throw nb::key_error("node is not a child of its parent");
    }
    children_.erase(it);
    Node* last = parent->kids.back();
    parent->kids[child->kid_pos] = last;
    last->kid_pos = child->kid_pos;
    parent->kids.pop_back();
    drop(child);
}

// -- lookup -----------------------------------------------------------------------------

TierIndex::Walk TierIndex::walk(const Keys& keys, std::int64_t n,
                                std::vector<Node*>& path) const {
    path.clear();
    const Node* node = root_;
    std::int64_t pos = 0;
    while (pos < n) {
        Node* child = find_child(node, keys.at(pos));
        if (child == nullptr) {
            break;
        }
        const std::int64_t m = child->n() <= n - pos ? child->n() : n - pos;
        if (child->keys[static_cast<std::size_t>(m - 1)] == keys.at(pos + m - 1)) {
            if (m == child->n()) {
                path.push_back(child);
                node = child;
                pos += m;
                continue;
            }
            return {child, m};
        }
        // Chained keys: equality at i implies equality before i, so bisect for the last
        // equal position in (0, m - 1).
        std::int64_t lo = 0;
        std::int64_t hi = m - 1;
        while (hi - lo > 1) {
            const std::int64_t mid = (lo + hi) >> 1;
            if (child->keys[static_cast<std::size_t>(mid)] == keys.at(pos + mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return {child, lo + 1};
    }
    return {};
}

std::pair<std::int64_t, std::int64_t> TierIndex::probe(const Keys& keys) {
    const Walk w = walk(keys, keys.size(), path_);
    const Node* last = w.part != nullptr ? w.part : (path_.empty() ? nullptr : path_.back());
    if (last == nullptr) {
        return {0, 0};
    }
    const std::int64_t present = last->start + (w.part != nullptr ? w.j : last->n());
    return {last->ready ? present : last->start, present};
}

LookupResult TierIndex::lookup(const Keys& keys, double now, bool hit, std::int64_t limit) {
    const std::int64_t n = limit < 0 ? keys.size() : limit;
    std::vector<Node*>& path = path_;
    const Walk w = walk(keys, n, path);
    std::int64_t present = path.empty() ? 0 : path.back()->end();
    std::int64_t ready = present;
    if (w.part != nullptr) {
        present += w.j;
        if (w.part->ready) {
            path.push_back(split(w.part, w.j));
            ready = present;
        }
    } else if (!path.empty() && !path.back()->ready) {
        ready = path.back()->start;
        path.pop_back();
    }
    for (auto it = path.rbegin(); it != path.rend(); ++it) {  // deepest first
        Node* node = *it;
        node->access.last = now;
        node->access.seq = ++seq_;
        node->lock += 1;
        if (hit) {
            node->access.hits += 1;
        }
    }
    root_->lock += 1;
    return {ready, present, path.empty() ? root_ : path.back()};
}

std::array<std::int64_t, 3> TierIndex::get_put(const Keys& keys, double now,
                                               std::int64_t store) {
    const LookupResult get = lookup(keys, now, true, -1);
    retain(get.handle);  // released below; a handle keeps its node as in Python
    release(get.handle);
    drop(get.handle);
    const LookupResult put = lookup(keys, now, false, -1);
    retain(put.handle);
    std::int64_t stored = 0;
    if (put.present == put.ready && put.ready < store) {
        Node* node = insert(put.handle, keys, store - put.ready, now);
        if (node != nullptr) {
            retain(node);
            commit(node);
            stored = node->n();
            drop(node);
        }
    }
    release(put.handle);
    drop(put.handle);
    return {get.ready, get.present, stored};
}

void TierIndex::pin(Node* node) {
    for (Node* walk = node; walk != nullptr; walk = walk->parent) {
        walk->lock += 1;
    }
}

bool TierIndex::pushable(const Node* node) const noexcept {
    return node != root_ && node->kids.empty() && node->lock == 0 && node->ready &&
           (node->ticket == 0 || (node->ticket > 0 && !lazy_));
}

void TierIndex::release(Node* handle) {
    for (Node* node = handle; node != nullptr; node = node->parent) {
        node->lock -= 1;
        if (node->ticket == -2 && node->lock == 0) {
            free_held(node);
        }
    }
    if (pushable(handle)) {
        push(handle);
    }
}

Node* TierIndex::split(Node* node, std::int64_t j) {
    retain(node);  // through the moment no link holds it
    Node* parent = node->parent;
    auto* upper = new Node();
    const auto cut = static_cast<std::ptrdiff_t>(j);
    upper->keys.assign(node->keys.begin(), node->keys.begin() + cut);
    node->keys.erase(node->keys.begin(), node->keys.begin() + cut);
    if (track_ids_) {
        upper->ids.assign(node->ids.begin(), node->ids.begin() + cut);
        node->ids.erase(node->ids.begin(), node->ids.begin() + cut);
    }
    upper->start = node->start;
    upper->ready = node->ready;
    upper->lock = node->lock;
    upper->access = node->access;
    upper->parent = parent;
    retain(parent);
    replace_child(parent, node, upper);
    node->start += j;
    node->parent = upper;
    retain(upper);
    drop(parent);
    add_child(upper, node);
    drop(node);
    num_nodes += 1;
    return upper;
}

// -- insertion --------------------------------------------------------------------------

[[noreturn]] void TierIndex::cannot_insert(std::int64_t start) const {
    throw nb::value_error((name_ + ": cannot insert at block " + std::to_string(start)).c_str());
}

Node* TierIndex::insert(Node* parent, const Keys& keys, std::int64_t count, double now) {
    const std::int64_t start = parent->end();
    if (count <= 0) {
        cannot_insert(start);
    }
    if (find_child(parent, keys.at(start)) != nullptr || !parent->ready) {
        cannot_insert(start);
    }
    if (start + count > keys.size()) {
        throw nb::value_error((name_ + ": " + std::to_string(count) + " blocks from block " +
                               std::to_string(start) + " run past the keys")
                                  .c_str());
    }
    std::vector<std::int64_t> ids;
    const std::int64_t got = reserve(count, ids);
    if (got == 0) {
        return nullptr;
    }
    auto* node = new Node();
    node->keys.reserve(static_cast<std::size_t>(got));
    keys.read(start, got, node->keys);
    node->ids = std::move(ids);
    node->start = start;
    node->parent = parent;
    retain(parent);
    node->access = AccessState{now, ++seq_, 0, now, 0};
    node->access.cseq = node->access.seq;
    node->ready = false;
    node->lock = 1;
    add_child(parent, node);
    num_nodes += 1;
    return node;
}

void TierIndex::commit(Node* node) {
    node->ready = true;
    node->lock -= 1;
    if (node->ticket == -2) {  // invalidated while being written
        if (node->lock == 0) {
            free_held(node);
        }
        return;
    }
    if (node->lock == 0 && node->kids.empty() && (node->ticket == 0 || !lazy_)) {
        push(node);
    }
}

void TierIndex::abort(Node* node) {
    if (node->ready || !node->kids.empty()) {
        throw nb::value_error(
            (name_ + ": abort of a committed or extended node " + describe(node)).c_str());
    }
    node->lock -= 1;
    remove(node);
}

// -- eviction ---------------------------------------------------------------------------

void TierIndex::push(Node* node) {
    node->ticket = ++tickets_;
    heap_.push_back(Entry{policy_.priority(node->access), node->ticket, node});
    retain(node);
    std::push_heap(heap_.begin(), heap_.end(), [](const Entry& a, const Entry& b) {
        return entry_after({a.priority, a.ticket}, {b.priority, b.ticket});
    });
}

std::int64_t TierIndex::reserve(std::int64_t count, std::vector<std::int64_t>& ids) {
    // allocator.eviction_target, FlexKV's rule.
    const std::int64_t capacity = alloc_.capacity();
    if (capacity != 0) {
        const std::int64_t used = alloc_.used();
        const std::int64_t shortfall = used + count - capacity;
        const double threshold = evict_start_threshold_ * static_cast<double>(capacity);
        const bool over_threshold = static_cast<double>(used) >= threshold;
        if (shortfall > 0 || over_threshold) {
            const std::int64_t to_threshold =
                used + count - static_cast<std::int64_t>(std::trunc(threshold));
            const auto by_ratio = static_cast<std::int64_t>(
                std::trunc(evict_ratio_ * static_cast<double>(capacity)));
            const std::int64_t target =
                std::max({shortfall, to_threshold, by_ratio, std::int64_t{0}});
            if (target != 0) {
                evict(target);
            }
        }
    }
    const std::int64_t free = alloc_.free();
    const std::int64_t take = count <= free ? count : free;
    if (take < count) {
        alloc_failures += 1;
    }
    if (take == 0) {
        return 0;
    }
    alloc_.allocate(take, ids);
    return take;
}

void TierIndex::compact_heap() {
    std::vector<Entry> keep;
    keep.reserve(heap_.size());
    for (const Entry& e : heap_) {
        if (e.node->ticket == e.ticket) {
            keep.push_back(e);
        } else {
            drop(e.node);
        }
    }
    heap_.swap(keep);
    std::make_heap(heap_.begin(), heap_.end(), [](const Entry& a, const Entry& b) {
        return entry_after({a.priority, a.ticket}, {b.priority, b.ticket});
    });
}

std::int64_t TierIndex::evict(std::int64_t count) {
    const auto after = [](const Entry& a, const Entry& b) {
        return entry_after({a.priority, a.ticket}, {b.priority, b.ticket});
    };
    if (static_cast<std::int64_t>(heap_.size()) > 2 * num_nodes + 1024) {
        compact_heap();
    }
    std::int64_t done = 0;
    evictions += 1;
    while (done < count && !heap_.empty()) {
        std::pop_heap(heap_.begin(), heap_.end(), after);
        const Entry e = heap_.back();
        heap_.pop_back();
        Node* node = e.node;  // the entry's reference, dropped once this step is done
        if (node->ticket != e.ticket) {
            drop(node);  // stale entry: the node was re-queued or removed since
            continue;
        }
        node->ticket = 0;
        if (node->lock != 0 || !node->ready || !node->kids.empty()) {
            drop(node);  // re-queued when it becomes an evictable leaf again
            continue;
        }
        if (lazy_ && policy_.priority(node->access) != e.priority) {
            push(node);  // touched since it was queued: its place is further back
            drop(node);
            continue;
        }
        const std::int64_t want = count - done;
        if (node->n() <= want) {
            done += node->n();
            remove(node);
        } else {
            const std::int64_t keep = node->n() - want;
            const auto cut = static_cast<std::size_t>(keep);
            if (track_ids_) {
                alloc_.release(node->ids.data() + cut, node->ids.size() - cut);
                node->ids.resize(cut);
            } else {
                alloc_.release_count(want);
            }
            node->keys.resize(cut);
            done += want;
            push(node);
        }
        drop(node);
    }
    evicted_blocks += done;
    return done;
}

void TierIndex::release_ids(Node* node) {
    if (track_ids_) {
        alloc_.release(node->ids.data(), node->ids.size());
    } else {
        alloc_.release_count(node->n());
    }
}

void TierIndex::remove(Node* node) {
    if (node->ticket == -2) {  // aborted after it was invalidated: already out of the tree
        free_held(node);
        return;
    }
    Node* parent = node->parent;
    remove_child(parent, node);
    // node->parent stays: a path lock still held on a removed (aborted) node must walk
    // up to the root when it is released.
    node->ticket = -1;
    release_ids(node);
    num_nodes -= 1;
    push_if_leaf(parent);
}

void TierIndex::push_if_leaf(Node* node) {
    if (pushable(node)) {
        push(node);
    }
}

}  // namespace flexkv::index
