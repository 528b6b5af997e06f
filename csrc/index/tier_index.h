// The prefix index of one cache tier: flexkv_engine.core.index.TierIndex, in C++.
//
// The same algorithm, step for step, so that both make the same decisions on the same
// calls (tests/core/test_index_native.py drives both and compares every result): a radix
// tree whose nodes hold runs of blocks, a lazy heap of evictable leaves, ready flags,
// path locks, FlexKV's eviction-amount rule and lowest-first block ids. See index.py for
// the invariants; they hold here too (TierIndex::check).
//
// Keys are 128-bit values (key128.h): ints in [0, 2**128), the project's key domain; a
// request's keys are read where the walk looks (a few per node on its path) and, for an
// insert, once per new block. Nothing here holds a Python object.
//
// Lifetime. Nodes are reference counted: a parent's child link, a child's parent link,
// heap entries, the set of held (invalidated but still locked) nodes and a Python handle
// each hold one reference. A node dropped from the tree thus lives on while a handle,
// a lock walk or a stale heap entry can still reach it, as Python nodes do.
// Everything here runs with the GIL held.
#pragma once

#include <Python.h>

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "index/allocator.h"
#include "index/key128.h"
#include "index/policy.h"

namespace flexkv::index {

struct Node {
    std::vector<Key128> keys;  // keys[i]: key of block start + i
    std::vector<std::int64_t> ids;  // tier block ids, when the index keeps them
    std::int64_t start = 0;
    Node* parent = nullptr;
    std::vector<Node*> kids;  // children, in no particular order
    std::size_t kid_pos = 0;  // this node's place in parent->kids
    std::size_t dropped_kids = 0;  // children let go when invalidate() dropped this node
    bool ready = true;
    std::int64_t lock = 0;
    AccessState access;
    std::int64_t ticket = 0;  // > 0 queued; 0 not; -1 removed; -2 invalidated, ids held
    std::int64_t refs = 0;
    PyObject* py = nullptr;  // the live Python handle of this node, if any (borrowed)

    std::int64_t n() const noexcept { return static_cast<std::int64_t>(keys.size()); }
    std::int64_t end() const noexcept { return start + n(); }
    bool removed() const noexcept { return ticket < 0; }
};

void retain(Node* node) noexcept;
void drop(Node* node) noexcept;  // frees the node (and parents it alone kept) at zero

// A sequence of keys (a list or tuple) for the duration of one call, read on demand.
class Keys {
public:
    explicit Keys(PyObject* seq);
    ~Keys() { Py_XDECREF(fast_); }
    Keys(const Keys&) = delete;
    Keys& operator=(const Keys&) = delete;
    std::int64_t size() const noexcept { return size_; }
    // Key i: IndexError beyond the end (as list indexing), TypeError for a key that is
    // not an int in [0, 2**128).
    Key128 at(std::int64_t i) const;
    // Keys [start, start + count) appended to `out` (in range: the caller checked).
    void read(std::int64_t start, std::int64_t count, std::vector<Key128>& out) const;

private:
    PyObject* fast_ = nullptr;
    PyObject** items_ = nullptr;
    std::int64_t size_ = 0;
};

struct LookupResult {
    std::int64_t ready;
    std::int64_t present;
    Node* handle;
};

// One run of restored blocks (index.restore_runs): its parent run (-1: the root), keys,
// ids and the order of its newest entry.
struct RestoreRun {
    std::int64_t parent;
    std::vector<Key128> keys;
    std::vector<std::int64_t> ids;
    std::int64_t newest;
};

class TierIndex {
public:
    TierIndex(std::string name, std::int64_t capacity, Policy policy, double evict_ratio,
              double evict_start_threshold, bool track_ids);
    ~TierIndex();
    TierIndex(const TierIndex&) = delete;
    TierIndex& operator=(const TierIndex&) = delete;

    std::pair<std::int64_t, std::int64_t> probe(const Keys& keys);
    LookupResult lookup(const Keys& keys, double now, bool hit, std::int64_t limit);
    // index.TierIndex.get_put: GET then PUT completed at once; (ready, present, stored).
    std::array<std::int64_t, 3> get_put(const Keys& keys, double now, std::int64_t store);
    void pin(Node* node);
    void release(Node* handle);
    Node* insert(Node* parent, const Keys& keys, std::int64_t count, double now);
    void commit(Node* node);
    void abort(Node* node);
    std::int64_t evict(std::int64_t count);
    std::int64_t invalidate(Node* handle, std::int64_t start);
    std::vector<std::int64_t> restore(const std::vector<RestoreRun>& runs, double now);
    std::vector<std::int64_t> block_ids(Node* handle, std::int64_t start, std::int64_t end);
    std::vector<Node*> nodes() const;
    void check() const;

    Node* root() const noexcept { return root_; }
    const std::string& name() const noexcept { return name_; }
    const Allocator& allocator() const noexcept { return alloc_; }
    bool track_ids() const noexcept { return track_ids_; }
    double evict_ratio() const noexcept { return evict_ratio_; }
    double evict_start_threshold() const noexcept { return evict_start_threshold_; }

    std::int64_t num_nodes = 0;
    std::int64_t evicted_blocks = 0;
    std::int64_t evictions = 0;
    std::int64_t alloc_failures = 0;
    std::int64_t dropped_blocks = 0;

private:
    struct Entry {
        Priority priority;
        std::int64_t ticket;
        Node* node;
    };
    struct ChildKey {
        const Node* parent;
        Key128 first;
        bool operator==(const ChildKey& o) const noexcept {
            return parent == o.parent && first == o.first;
        }
    };
    struct ChildKeyHash {
        std::size_t operator()(const ChildKey& k) const noexcept {
            return Key128Hash()(k.first) ^
                   std::hash<const void*>()(k.parent) * 0x9E3779B97F4A7C15ULL;
        }
    };

    struct Walk {
        Node* part = nullptr;  // the partly matched node, if any
        std::int64_t j = 0;    // blocks of it matched
    };
    Walk walk(const Keys& keys, std::int64_t n, std::vector<Node*>& path) const;

    Node* find_child(const Node* parent, const Key128& key) const;
    void add_child(Node* parent, Node* child);
    void replace_child(Node* parent, Node* old_child, Node* new_child);
    void remove_child(Node* parent, Node* child);

    Node* split(Node* node, std::int64_t j);
    void push(Node* node);
    void push_if_leaf(Node* node);
    bool pushable(const Node* node) const noexcept;
    std::int64_t reserve(std::int64_t count, std::vector<std::int64_t>& ids);
    void remove(Node* node);
    void free_held(Node* node);
    void release_ids(Node* node);
    void compact_heap();
    [[noreturn]] void cannot_insert(std::int64_t start) const;

    std::string name_;
    Policy policy_;
    bool lazy_;
    double evict_ratio_;
    double evict_start_threshold_;
    bool track_ids_;
    Allocator alloc_;
    std::int64_t seq_ = 0;      // itertools.count(1): the next value is seq_ + 1
    std::int64_t tickets_ = 0;  // likewise
    Node* root_;
    std::vector<Entry> heap_;  // min-heap on (priority, ticket)
    std::unordered_map<ChildKey, Node*, ChildKeyHash> children_;
    std::unordered_set<Node*> held_;
    std::vector<Node*> path_;  // scratch of lookup()
};

// repr() of a node, as index.Node.__repr__ writes it.
std::string describe(const Node* node);

}  // namespace flexkv::index
