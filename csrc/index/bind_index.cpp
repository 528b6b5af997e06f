// Python bindings of the native prefix index: `_native.TierIndex` and its node handles
// `_native.IndexNode`, wrapped by flexkv_engine.core.native_index.
//
// A node has at most one live Python handle (Node::py), so a node returned twice is the
// same object, as with the Python index; the handle holds a reference to its node.
#include "index/bind_index.h"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "index/tier_index.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace flexkv::index {
namespace {

struct NodeRef {
    Node* node = nullptr;
    explicit NodeRef(Node* n) : node(n) { retain(n); }
    NodeRef(NodeRef&& other) noexcept : node(other.node) { other.node = nullptr; }
    NodeRef(const NodeRef&) = delete;
    NodeRef& operator=(const NodeRef&) = delete;
    NodeRef& operator=(NodeRef&&) = delete;
    ~NodeRef() {
        if (node != nullptr) {
            node->py = nullptr;
            drop(node);
        }
    }
};

nb::object handle_of(Node* node) {
    if (node == nullptr) {
        return nb::none();
    }
    if (node->py != nullptr) {
        return nb::borrow(node->py);
    }
    nb::object obj = nb::cast(NodeRef(node), nb::rv_policy::move);
    node->py = obj.ptr();
    return obj;
}

nb::object int_of(const Key128& key) {
    PyObject* v = key_to_int(key);
    if (v == nullptr) {
        throw nb::python_error();
    }
    return nb::steal(v);
}

nb::list int_list(const std::vector<std::int64_t>& values) {
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(values.size()));
    if (out == nullptr) {
        throw nb::python_error();
    }
    nb::list list = nb::steal<nb::list>(out);
    for (std::size_t i = 0; i < values.size(); ++i) {
        PyObject* v = PyLong_FromLongLong(values[i]);
        if (v == nullptr) {
            throw nb::python_error();
        }
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), v);
    }
    return list;
}

Policy policy_of(const std::string& kind, double hit_reward_seconds,
                 std::int64_t protected_threshold) {
    Policy p;
    if (kind == "lru") {
        p.kind = PolicyKind::kLru;
    } else if (kind == "lfu") {
        p.kind = PolicyKind::kLfu;
    } else if (kind == "slru") {
        p.kind = PolicyKind::kSlru;
    } else if (kind == "fifo") {
        p.kind = PolicyKind::kFifo;
    } else if (kind == "mru") {
        p.kind = PolicyKind::kMru;
    } else if (kind == "filo") {
        p.kind = PolicyKind::kFilo;
    } else {
        throw nb::value_error(("the native index has no eviction policy '" + kind + "'").c_str());
    }
    p.hit_reward_seconds = hit_reward_seconds;
    p.protected_threshold = protected_threshold;
    return p;
}

void bind_node(nb::module_& m) {
    nb::class_<NodeRef>(m, "IndexNode",
                        "A run of blocks of the native index (the handle of "
                        "flexkv_engine.core.index.Node's native twin).")
        .def_prop_ro("start", [](const NodeRef& r) { return r.node->start; })
        .def_prop_ro("end", [](const NodeRef& r) { return r.node->end(); })
        .def_prop_ro("n", [](const NodeRef& r) { return r.node->n(); })
        .def_prop_ro("ready", [](const NodeRef& r) { return r.node->ready; })
        .def_prop_ro("lock", [](const NodeRef& r) { return r.node->lock; })
        .def_prop_ro("last", [](const NodeRef& r) { return r.node->access.last; })
        .def_prop_ro("seq", [](const NodeRef& r) { return r.node->access.seq; })
        .def_prop_ro("hits", [](const NodeRef& r) { return r.node->access.hits; })
        .def_prop_ro("created", [](const NodeRef& r) { return r.node->access.created; })
        .def_prop_ro("cseq", [](const NodeRef& r) { return r.node->access.cseq; })
        .def_prop_ro("ticket", [](const NodeRef& r) { return r.node->ticket; })
        .def_prop_ro("removed", [](const NodeRef& r) { return r.node->removed(); })
        .def_prop_ro("ids",
                     [](const NodeRef& r) -> nb::object {
                         const Node* n = r.node;
                         if (n->ids.empty() && n->n() > 0) {
                             return nb::none();  // an index that keeps no ids
                         }
                         return int_list(n->ids);
                     })
        .def_prop_ro("keys",
                     [](const NodeRef& r) {
                         nb::list out;
                         for (const Key128& k : r.node->keys) {
                             out.append(int_of(k));
                         }
                         return out;
                     })
        .def_prop_ro("parent", [](const NodeRef& r) { return handle_of(r.node->parent); })
        .def_prop_ro("children",
                     [](const NodeRef& r) {
                         nb::dict out;
                         for (Node* kid : r.node->kids) {
                             out[int_of(kid->keys[0])] = handle_of(kid);
                         }
                         return out;
                     })
        .def("__repr__", [](const NodeRef& r) { return describe(r.node); });
}

}  // namespace

void bind_index(nb::module_& m) {
    bind_node(m);
    nb::class_<TierIndex>(m, "TierIndex",
                          "The prefix index of one tier in C++ (see "
                          "flexkv_engine.core.native_index, which wraps it).")
        .def(
            "__init__",
            [](TierIndex* self, std::string name, std::int64_t capacity, const std::string& kind,
               double hit_reward_seconds, std::int64_t protected_threshold, double evict_ratio,
               double evict_start_threshold, bool track_ids) {
                if (capacity < 0) {
                    throw nb::value_error(
                        ("capacity must be >= 0, got " + std::to_string(capacity)).c_str());
                }
                new (self) TierIndex(std::move(name), capacity,
                                     policy_of(kind, hit_reward_seconds, protected_threshold),
                                     evict_ratio, evict_start_threshold, track_ids);
            },
            "name"_a, "capacity"_a, "policy"_a, "hit_reward_seconds"_a,
            "protected_threshold"_a, "evict_ratio"_a, "evict_start_threshold"_a, "track_ids"_a,
            "policy: the name of one of the six policies of core.policies, with its "
            "parameters; the bounds of the others are checked by the Python side.")
        .def_prop_ro("name", &TierIndex::name)
        .def_prop_ro("track_ids", &TierIndex::track_ids)
        .def_prop_ro("evict_ratio", &TierIndex::evict_ratio)
        .def_prop_ro("evict_start_threshold", &TierIndex::evict_start_threshold)
        .def_prop_ro("capacity", [](const TierIndex& t) { return t.allocator().capacity(); })
        .def_prop_ro("used", [](const TierIndex& t) { return t.allocator().used(); })
        .def_prop_ro("free", [](const TierIndex& t) { return t.allocator().free(); })
        .def_prop_ro("root", [](const TierIndex& t) { return handle_of(t.root()); })
        .def_ro("num_nodes", &TierIndex::num_nodes)
        .def_ro("evicted_blocks", &TierIndex::evicted_blocks)
        .def_ro("evictions", &TierIndex::evictions)
        .def_ro("alloc_failures", &TierIndex::alloc_failures)
        .def_ro("dropped_blocks", &TierIndex::dropped_blocks)
        .def(
            "probe",
            [](TierIndex& t, nb::handle keys) { return t.probe(Keys(keys.ptr())); },
            "keys"_a)
        .def(
            "lookup",
            [](TierIndex& t, nb::handle keys, double now, bool hit,
               std::optional<std::int64_t> limit) {
                const std::int64_t n = limit ? (*limit > 0 ? *limit : 0) : -1;
                const LookupResult r = t.lookup(Keys(keys.ptr()), now, hit, n);
                return nb::make_tuple(r.ready, r.present, handle_of(r.handle));
            },
            "keys"_a, "now"_a, nb::kw_only(), "hit"_a, "limit"_a = nb::none())
        .def(
            "get_put",
            [](TierIndex& t, nb::handle keys, double now, std::int64_t store) {
                const auto r = t.get_put(Keys(keys.ptr()), now, store);
                return nb::make_tuple(r[0], r[1], r[2]);
            },
            "keys"_a, "now"_a, "store"_a,
            "GET then PUT of `keys` completed at once: index.TierIndex.get_put.")
        .def(
            "pin",
            [](TierIndex& t, nb::handle node) {
                t.pin(nb::cast<NodeRef&>(node).node);
                return nb::borrow(node);
            },
            "node"_a)
        .def(
            "release", [](TierIndex& t, const NodeRef& h) { t.release(h.node); }, "handle"_a)
        .def(
            "insert",
            [](TierIndex& t, const NodeRef& parent, nb::handle keys, std::int64_t count,
               double now) {
                return handle_of(t.insert(parent.node, Keys(keys.ptr()), count, now));
            },
            "parent"_a, "keys"_a, "count"_a, "now"_a)
        .def(
            "commit", [](TierIndex& t, const NodeRef& n) { t.commit(n.node); }, "node"_a)
        .def(
            "abort", [](TierIndex& t, const NodeRef& n) { t.abort(n.node); }, "node"_a)
        .def("evict", &TierIndex::evict, "count"_a)
        .def(
            "invalidate",
            [](TierIndex& t, const NodeRef& h, std::int64_t start) {
                return t.invalidate(h.node, start);
            },
            "handle"_a, "start"_a)
        .def(
            "block_ids",
            [](TierIndex& t, const NodeRef& h, std::int64_t start, std::int64_t end) {
                return int_list(t.block_ids(h.node, start, end));
            },
            "handle"_a, "start"_a, "end"_a)
        .def(
            "nodes",
            [](const TierIndex& t) {
                nb::list out;
                for (Node* n : t.nodes()) {
                    out.append(handle_of(n));
                }
                return out;
            })
        .def("check", &TierIndex::check,
             "Raise AssertionError unless every invariant of the index holds.")
        .def("free_ids", [](const TierIndex& t) { return int_list(t.allocator().free_ids()); })
        .def(
            "_restore_runs",
            [](TierIndex& t, nb::list runs, double now) {
                std::vector<RestoreRun> plan;
                plan.reserve(nb::len(runs));
                for (nb::handle run : runs) {
                    nb::tuple r = nb::borrow<nb::tuple>(run);
                    RestoreRun rr;
                    rr.parent = nb::cast<std::int64_t>(r[0]);
                    const Keys keys(r[1].ptr());
                    for (std::int64_t i = 0; i < keys.size(); ++i) {
                        rr.keys.push_back(keys.at(i));
                    }
                    rr.ids = nb::cast<std::vector<std::int64_t>>(r[2]);
                    rr.newest = nb::cast<std::int64_t>(r[3]);
                    plan.push_back(std::move(rr));
                }
                return int_list(t.restore(plan, now));
            },
            "runs"_a, "now"_a,
            "Build the nodes of index.restore_runs() (runs of an empty index, parents first).");
}

}  // namespace flexkv::index
