// The prefix index, introspection: block ids of a path, the nodes, and check() of every
// invariant (index.py's section of the same name).
#include <nanobind/nanobind.h>

#include <algorithm>
#include <string>
#include <vector>

#include "index/tier_index.h"

namespace nb = nanobind;

namespace flexkv::index {
namespace {

[[noreturn]] void fail_assert(const std::string& what) {
    PyErr_SetString(PyExc_AssertionError, what.c_str());
    throw nb::python_error();
}

}  // namespace

// -- introspection ----------------------------------------------------------------------

std::vector<std::int64_t> TierIndex::block_ids(Node* handle, std::int64_t start,
                                               std::int64_t end) {
    if (!track_ids_) {
        throw nb::value_error(
            (name_ + ": this index keeps no block ids (track_ids=False)").c_str());
    }
    if (!(start <= end && end <= handle->end())) {
        throw nb::value_error((name_ + ": blocks [" + std::to_string(start) + ", " +
                               std::to_string(end) + ") beyond " + describe(handle))
                                  .c_str());
    }
    std::vector<const Node*> chain;
    for (const Node* node = handle; node != nullptr && node->end() > start;
         node = node->parent) {
        if (node->start < end) {
            chain.push_back(node);
        }
    }
    std::vector<std::int64_t> out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        const Node* node = *it;
        const std::int64_t lo = std::max<std::int64_t>(start - node->start, 0);
        const std::int64_t hi = std::min(end, node->end()) - node->start;
        for (std::int64_t i = lo; i < hi && i < static_cast<std::int64_t>(node->ids.size());
             ++i) {
            out.push_back(node->ids[static_cast<std::size_t>(i)]);
        }
    }
    return out;
}

std::vector<Node*> TierIndex::nodes() const {
    std::vector<Node*> out;
    std::vector<Node*> stack(root_->kids.begin(), root_->kids.end());
    while (!stack.empty()) {
        Node* node = stack.back();
        stack.pop_back();
        out.push_back(node);
        stack.insert(stack.end(), node->kids.begin(), node->kids.end());
    }
    return out;
}

void TierIndex::check() const {
    const auto capacity = static_cast<std::size_t>(alloc_.capacity());
    std::vector<char> seen(capacity, 0);
    std::int64_t held = 0;
    const auto claim = [&](const Node* node) {
        for (std::int64_t i : node->ids) {
            if (i < 0 || static_cast<std::size_t>(i) >= capacity ||
                seen[static_cast<std::size_t>(i)]) {
                fail_assert("block id " + std::to_string(i) + " twice");
            }
            seen[static_cast<std::size_t>(i)] = 1;
        }
    };
    const std::vector<Node*> all = nodes();
    for (const Node* node : all) {
        const Node* parent = node->parent;
        if (parent == nullptr || node->keys.empty() || find_child(parent, node->keys[0]) != node) {
            fail_assert(describe(node));
        }
        if (node->n() == 0 || node->start != parent->end() || node->lock < 0) {
            fail_assert(describe(node));
        }
        if (parent != root_ && !parent->ready) {
            fail_assert("child below unready " + describe(parent));
        }
        if (!node->ready && !node->kids.empty()) {
            fail_assert("unready node with children " + describe(node));
        }
        if (track_ids_) {
            if (static_cast<std::int64_t>(node->ids.size()) != node->n()) {
                fail_assert(describe(node));
            }
            claim(node);
        }
        held += node->n();
    }
    for (const Node* node : held_) {
        if (node->ticket != -2 || !(node->lock > 0 || !node->ready)) {
            fail_assert(describe(node));
        }
        if (track_ids_) {
            claim(node);
        }
        held += node->n();
    }
    if (track_ids_) {
        for (std::int64_t i : alloc_.free_ids()) {
            if (seen[static_cast<std::size_t>(i)]) {
                fail_assert("block id " + std::to_string(i) + " both free and held");
            }
            seen[static_cast<std::size_t>(i)] = 2;
        }
    }
    if (held != alloc_.used()) {
        fail_assert("(" + std::to_string(held) + ", " + std::to_string(alloc_.used()) + ")");
    }
    if (alloc_.used() + alloc_.free() != alloc_.capacity()) {
        fail_assert("used + free != capacity");
    }
    if (num_nodes != static_cast<std::int64_t>(all.size())) {
        fail_assert("num_nodes " + std::to_string(num_nodes) + " != " +
                    std::to_string(all.size()));
    }
}

}  // namespace flexkv::index
