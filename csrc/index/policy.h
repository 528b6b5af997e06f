// Eviction priorities of the six policies of flexkv_engine.core.policies.
//
// Python compares priority tuples lexicographically; here a priority is three doubles
// compared the same way (shorter tuples padded with zeros). Seq numbers and hit counts
// stay far below 2**53, so they are exact as doubles, and each formula is evaluated in
// the same order as its Python twin (built with -ffp-contract=off: no fused multiply-add).
#pragma once

#include <cstdint>

namespace flexkv::index {

enum class PolicyKind { kLru, kLfu, kSlru, kFifo, kMru, kFilo };

struct Priority {
    double a = 0.0;
    double b = 0.0;
    double c = 0.0;

    bool operator==(const Priority& o) const noexcept { return a == o.a && b == o.b && c == o.c; }
    bool operator!=(const Priority& o) const noexcept { return !(*this == o); }
    bool operator<(const Priority& o) const noexcept {
        if (a != o.a) return a < o.a;
        if (b != o.b) return b < o.b;
        return c < o.c;
    }
};

// What a policy reads of a node (policies.AccessState).
struct AccessState {
    double last = 0.0;
    std::int64_t seq = 0;
    std::int64_t hits = 0;
    double created = 0.0;
    std::int64_t cseq = 0;
};

struct Policy {
    PolicyKind kind = PolicyKind::kLru;
    double hit_reward_seconds = 0.0;    // lru
    std::int64_t protected_threshold = 2;  // slru

    // policies.EvictionPolicy.monotone: MRU alone moves towards eviction when touched.
    bool monotone() const noexcept { return kind != PolicyKind::kMru; }

    Priority priority(const AccessState& s) const noexcept {
        const auto seq = static_cast<double>(s.seq);
        const auto cseq = static_cast<double>(s.cseq);
        const auto hits = static_cast<double>(s.hits);
        switch (kind) {
            case PolicyKind::kLru:
                return {s.last + hit_reward_seconds * hits, seq, 0.0};
            case PolicyKind::kLfu:
                return {hits, s.last, seq};
            case PolicyKind::kSlru:
                return {s.hits >= protected_threshold ? 1.0 : 0.0, s.last, seq};
            case PolicyKind::kFifo:
                return {s.created, cseq, 0.0};
            case PolicyKind::kMru:
                return {-s.last, -seq, 0.0};
            case PolicyKind::kFilo:
                return {-s.created, -cseq, 0.0};
        }
        return {};
    }
};

}  // namespace flexkv::index
