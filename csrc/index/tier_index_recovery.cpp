// The prefix index, bad blocks and restarts: invalidate() drops blocks found bad,
// restore() rebuilds an empty index from stored blocks (index.py's section of the same name).
#include <nanobind/nanobind.h>

#include <algorithm>
#include <vector>

#include "index/tier_index.h"

namespace nb = nanobind;

namespace flexkv::index {

// -- bad blocks and restarts ------------------------------------------------------------

std::int64_t TierIndex::invalidate(Node* handle, std::int64_t start) {
    Node* node = handle;
    while (node != nullptr && node != root_ && node->start > start) {
        node = node->parent;
    }
    if (node == nullptr || node == root_ || node->removed() || node->end() <= start) {
        return 0;
    }
    if (node->start < start) {
        split(node, start - node->start);  // `node` keeps [start, end)
    }
    Node* parent = node->parent;
    std::vector<Node*> stack{node};
    retain(node);  // the stack's reference
    remove_child(parent, node);
    std::int64_t dropped = 0;
    while (!stack.empty()) {
        Node* gone = stack.back();
        stack.pop_back();
        // Unlike index.py, a dropped node lets go of its children (nothing walks down
        // from a node out of the tree, and a child holds its parent); it keeps their
        // number for its repr().
        gone->dropped_kids = gone->kids.size();
        while (!gone->kids.empty()) {
            Node* kid = gone->kids.back();
            retain(kid);
            stack.push_back(kid);
            remove_child(gone, kid);
        }
        num_nodes -= 1;
        dropped += gone->n();
        if (gone->lock == 0 && gone->ready) {
            gone->ticket = -1;
            release_ids(gone);
        } else {
            gone->ticket = -2;
            if (held_.insert(gone).second) {
                retain(gone);
            }
        }
        drop(gone);
    }
    dropped_blocks += dropped;
    push_if_leaf(parent);
    return dropped;
}

void TierIndex::free_held(Node* node) {
    node->ticket = -1;
    release_ids(node);
    if (held_.erase(node) != 0) {
        drop(node);
    }
}

std::vector<std::int64_t> TierIndex::restore(const std::vector<RestoreRun>& runs,
                                             double now) {
    std::vector<Node*> made;
    made.reserve(runs.size());
    for (const RestoreRun& run : runs) {
        Node* above = run.parent < 0 ? root_ : made.at(static_cast<std::size_t>(run.parent));
        auto* node = new Node();
        node->keys = run.keys;
        node->ids = run.ids;
        node->start = above->end();
        node->parent = above;
        retain(above);
        node->access = AccessState{now, 0, 0, now, 0};
        add_child(above, node);
        made.push_back(node);
    }
    std::vector<std::size_t> order(made.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        order[i] = i;
    }
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return runs[a].newest < runs[b].newest;
    });
    std::vector<std::int64_t> restored;
    for (std::size_t i : order) {
        made[i]->access.seq = made[i]->access.cseq = ++seq_;
        restored.insert(restored.end(), made[i]->ids.begin(), made[i]->ids.end());
    }
    if (!alloc_.take(restored)) {
        throw nb::value_error("take: an id is listed twice or is not free");
    }
    num_nodes += static_cast<std::int64_t>(made.size());
    for (std::size_t i : order) {
        if (made[i]->kids.empty()) {
            push(made[i]);
        }
    }
    return restored;
}

}  // namespace flexkv::index
