// Chained block keys of many sequences at once: one sequence per lane, eight lanes hashed
// together. The state and the message words of the eight lanes sit word by word in
// vectors of eight 64-bit lanes, so every step of BLAKE2b's G is one vector instruction
// for all lanes (one AVX-512 register where the CPU has it, chosen at run time; the same
// code on narrower registers otherwise). Keys of one sequence depend on each other, keys
// of different sequences do not: a batch of requests hashes in parallel even though each
// request is a serial chain. Same values as chain_keys (block_keys.cpp). A large batch
// is also shared among threads, whole groups of eight sequences each.
//
// A block's message is the predecessor key (16 bytes: two little-endian words) and the
// block's tokens (one little-endian int64 word each), so every message word is either a
// word of the predecessor, a token or zero padding: lanes read tokens as words, with no
// byte buffer in between.
#include "keys/block_keys_lanes.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

#include "keys/blake2b.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(FLEXKV_KEYS_NO_SIMD)
#define FLEXKV_KEYS_X86_SIMD 1  // AVX-512 and AVX2 builds of the lanes, chosen at run time
#endif

namespace flexkv::keys {
namespace {

constexpr int kLanes = 8;
constexpr std::size_t kBlockWords = kBlake2bBlockBytes / 8;  // 16 message words
constexpr std::size_t kKeyWords = kKeyBytes / 8;             // 2
// An automatic batch takes a thread per this many compressions of its work (two per
// 16-token key, 33 per 512-token key; about 45 ns each on eight AVX-512 lanes): a batch
// is shared from 12,288 on, about 0.5 ms of work. Measured on two cores (a thread takes
// 20-50 us to start), a second thread lost below about 4,000, lost or gained up to 1.2x
// up to 8,400 and gained 1.2x-1.35x from 15,000 on.
constexpr std::size_t kMinThreadWork = 6144;

// Eight 64-bit lanes (a GCC/Clang vector type: one AVX-512 register where the function is
// compiled for it, pairs or quads of narrower registers otherwise). Values of this type
// only live inside run_lanes, never cross a call: no ABI depends on the target.
typedef std::uint64_t Vec __attribute__((vector_size(8 * kLanes)));

// One word of every lane, in memory.
struct alignas(64) Row {
    std::uint64_t x[kLanes];
};

inline std::uint64_t load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = (v << 8) | p[i];  // one load on little-endian targets
    }
    return v;
}

inline void store_le64(unsigned char* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
        p[i] = static_cast<unsigned char>(v >> (8 * i));
    }
}

// RFC 7693 section 3.1, G, with the rotations written as shifts (the compiler emits a
// vector rotate where the target has one).
#define FLEXKV_LANES_G(a, b, c, d, x, y) \
    do {                                 \
        a = a + b + (x);                 \
        d ^= a;                          \
        d = (d >> 32) | (d << 32);       \
        c = c + d;                       \
        b ^= c;                          \
        b = (b >> 24) | (b << 40);       \
        a = a + b + (y);                 \
        d ^= a;                          \
        d = (d >> 16) | (d << 48);       \
        c = c + d;                       \
        b ^= c;                          \
        b = (b >> 63) | (b << 1);        \
    } while (0)

#define FLEXKV_LANES_ROUND(r)                                                 \
    do {                                                                      \
        FLEXKV_LANES_G(v0, v4, v8, v12, w[kSigma[r][0]], w[kSigma[r][1]]);    \
        FLEXKV_LANES_G(v1, v5, v9, v13, w[kSigma[r][2]], w[kSigma[r][3]]);    \
        FLEXKV_LANES_G(v2, v6, v10, v14, w[kSigma[r][4]], w[kSigma[r][5]]);   \
        FLEXKV_LANES_G(v3, v7, v11, v15, w[kSigma[r][6]], w[kSigma[r][7]]);   \
        FLEXKV_LANES_G(v0, v5, v10, v15, w[kSigma[r][8]], w[kSigma[r][9]]);   \
        FLEXKV_LANES_G(v1, v6, v11, v12, w[kSigma[r][10]], w[kSigma[r][11]]); \
        FLEXKV_LANES_G(v2, v7, v8, v13, w[kSigma[r][12]], w[kSigma[r][13]]);  \
        FLEXKV_LANES_G(v3, v4, v9, v14, w[kSigma[r][14]], w[kSigma[r][15]]);  \
    } while (0)

#define FLEXKV_LANES_LOAD(v, row) std::memcpy(&(v), (row).x, sizeof(Vec))
#define FLEXKV_LANES_STORE(row, v) std::memcpy((row).x, &(v), sizeof(Vec))

// One lane's place in its sequence.
struct Lane {
    const std::int64_t* tokens = nullptr;  // the current block's first token
    std::size_t left = 0;                  // tokens from there to the end of the sequence
    std::size_t len = 0;                   // tokens in the current block
    std::size_t chunk = 0;                 // compression of the current block's message
    std::size_t chunks = 0;                // compressions it takes
    std::uint64_t prev[kKeyWords] = {};    // the predecessor key
    unsigned char* out = nullptr;          // where the current block's key goes
    bool active = false;
};

// The parameter block's word 0 for a 16-byte digest: digest length, fanout 1, depth 1.
constexpr std::uint64_t kH0 = kIv[0] ^ 0x01010000ULL ^ kKeyBytes;

void begin_block(Lane& lane, Row h[8], int l, std::size_t tpb) noexcept {
    lane.len = lane.left < tpb ? lane.left : tpb;
    const std::size_t bytes = kKeyBytes + 8 * lane.len;
    lane.chunk = 0;
    lane.chunks = (bytes + kBlake2bBlockBytes - 1) / kBlake2bBlockBytes;
    h[0].x[l] = kH0;
    for (int i = 1; i < 8; ++i) {
        h[i].x[l] = kIv[i];
    }
}

// Message words of the lane's current compression into column `l` of `m`; its byte
// counter and final flag into `t` and `f`.
void load_message(const Lane& lane, Row m[kBlockWords], Row& t, Row& f, int l) noexcept {
    std::size_t w = 0;
    std::size_t token = lane.chunk * kBlockWords - kKeyWords;  // token of word 0, once past
    if (lane.chunk == 0) {
        m[0].x[l] = lane.prev[0];
        m[1].x[l] = lane.prev[1];
        w = kKeyWords;
        token = 0;
    }
    const std::size_t left = lane.len - token;  // > 0: every compression holds a token
    const std::size_t n = std::min(kBlockWords - w, left);
    const std::int64_t* p = lane.tokens + token;
    for (std::size_t i = 0; i < n; ++i) {
        m[w + i].x[l] = static_cast<std::uint64_t>(p[i]);
    }
    for (std::size_t i = w + n; i < kBlockWords; ++i) {
        m[i].x[l] = 0;
    }
    const std::size_t done = (lane.chunk + 1) * kBlake2bBlockBytes;
    const std::size_t bytes = kKeyBytes + 8 * lane.len;
    t.x[l] = done < bytes ? done : bytes;
    f.x[l] = lane.chunk + 1 == lane.chunks ? ~std::uint64_t{0} : 0;
}

// Give lane `l` the next sequence of `order` (indices into `seqs`, `n` of them); false
// (the lane idles) when none is left.
bool take(Lane& lane, Row h[8], int l, const Sequence* seqs, const std::size_t* order,
          std::size_t n, std::size_t& next, std::size_t tpb) noexcept {
    if (next == n) {
        lane.active = false;
        return false;
    }
    const Sequence& s = seqs[order[next++]];
    lane.tokens = s.tokens;
    lane.left = s.num_tokens;
    lane.out = s.out;
    lane.prev[0] = load_le64(s.root);
    lane.prev[1] = load_le64(s.root + 8);
    lane.active = true;
    begin_block(lane, h, l, tpb);
    return true;
}

// The sequences `order[0 .. n)` of `seqs`, longest first, none empty.
__attribute__((always_inline)) inline void run_lanes(const Sequence* seqs,
                                                     const std::size_t* order, std::size_t n,
                                                     std::size_t tpb) noexcept {
    std::size_t next = 0;
    Lane lanes[kLanes];
    Row h[8] = {};
    Row m[kBlockWords] = {};
    Row t = {};
    Row f = {};
    int active = 0;
    for (int l = 0; l < kLanes; ++l) {
        active += take(lanes[l], h, l, seqs, order, n, next, tpb) ? 1 : 0;
    }
    while (active > 0) {
        for (int l = 0; l < kLanes; ++l) {
            if (lanes[l].active) {
                load_message(lanes[l], m, t, f, l);
            }
        }
        // RFC 7693 section 3.2, F, on every lane (idle lanes hash what they hold, unread).
        Vec w[kBlockWords];
        for (std::size_t i = 0; i < kBlockWords; ++i) {
            FLEXKV_LANES_LOAD(w[i], m[i]);
        }
        Vec h0, h1, h2, h3, h4, h5, h6, h7, vt, vf;
        FLEXKV_LANES_LOAD(h0, h[0]);
        FLEXKV_LANES_LOAD(h1, h[1]);
        FLEXKV_LANES_LOAD(h2, h[2]);
        FLEXKV_LANES_LOAD(h3, h[3]);
        FLEXKV_LANES_LOAD(h4, h[4]);
        FLEXKV_LANES_LOAD(h5, h[5]);
        FLEXKV_LANES_LOAD(h6, h[6]);
        FLEXKV_LANES_LOAD(h7, h[7]);
        FLEXKV_LANES_LOAD(vt, t);
        FLEXKV_LANES_LOAD(vf, f);
        const Vec zero = {};
        Vec v0 = h0, v1 = h1, v2 = h2, v3 = h3, v4 = h4, v5 = h5, v6 = h6, v7 = h7;
        Vec v8 = zero + kIv[0], v9 = zero + kIv[1], v10 = zero + kIv[2], v11 = zero + kIv[3];
        Vec v12 = (zero + kIv[4]) ^ vt, v13 = zero + kIv[5];
        Vec v14 = (zero + kIv[6]) ^ vf, v15 = zero + kIv[7];
        FLEXKV_LANES_ROUND(0);
        FLEXKV_LANES_ROUND(1);
        FLEXKV_LANES_ROUND(2);
        FLEXKV_LANES_ROUND(3);
        FLEXKV_LANES_ROUND(4);
        FLEXKV_LANES_ROUND(5);
        FLEXKV_LANES_ROUND(6);
        FLEXKV_LANES_ROUND(7);
        FLEXKV_LANES_ROUND(8);
        FLEXKV_LANES_ROUND(9);
        FLEXKV_LANES_ROUND(10);
        FLEXKV_LANES_ROUND(11);
        h0 ^= v0 ^ v8;
        h1 ^= v1 ^ v9;
        h2 ^= v2 ^ v10;
        h3 ^= v3 ^ v11;
        h4 ^= v4 ^ v12;
        h5 ^= v5 ^ v13;
        h6 ^= v6 ^ v14;
        h7 ^= v7 ^ v15;
        FLEXKV_LANES_STORE(h[0], h0);
        FLEXKV_LANES_STORE(h[1], h1);
        FLEXKV_LANES_STORE(h[2], h2);
        FLEXKV_LANES_STORE(h[3], h3);
        FLEXKV_LANES_STORE(h[4], h4);
        FLEXKV_LANES_STORE(h[5], h5);
        FLEXKV_LANES_STORE(h[6], h6);
        FLEXKV_LANES_STORE(h[7], h7);
        for (int l = 0; l < kLanes; ++l) {
            Lane& lane = lanes[l];
            if (!lane.active || ++lane.chunk < lane.chunks) {
                continue;
            }
            lane.prev[0] = h[0].x[l];
            lane.prev[1] = h[1].x[l];
            store_le64(lane.out, lane.prev[0]);
            store_le64(lane.out + 8, lane.prev[1]);
            lane.out += kKeyBytes;
            lane.tokens += lane.len;
            lane.left -= lane.len;
            if (lane.left != 0) {
                begin_block(lane, h, l, tpb);
            } else if (!take(lane, h, l, seqs, order, n, next, tpb)) {
                --active;
            }
        }
    }
}

#undef FLEXKV_LANES_STORE
#undef FLEXKV_LANES_LOAD
#undef FLEXKV_LANES_ROUND
#undef FLEXKV_LANES_G

#ifdef FLEXKV_KEYS_X86_SIMD
__attribute__((target("avx512f"))) void run_avx512(const Sequence* seqs,
                                                     const std::size_t* order, std::size_t n,
                                                     std::size_t tpb) noexcept {
    run_lanes(seqs, order, n, tpb);
}

// Eight lanes on two 256-bit registers each: no vector rotate, so about twice the
// instructions of AVX-512, and still about twice as fast as the serial code.
__attribute__((target("avx2"))) void run_avx2(const Sequence* seqs, const std::size_t* order,
                                                std::size_t n, std::size_t tpb) noexcept {
    run_lanes(seqs, order, n, tpb);
}
#endif

// The sequences `order[0 .. n)` of `seqs` with `code` (resolved: not `best`, supported).
void run_code(LanesCode code, const Sequence* seqs, const std::size_t* order, std::size_t n,
              std::size_t tpb) {
    switch (code) {
        case LanesCode::serial:
            for (std::size_t i = 0; i < n; ++i) {
                const Sequence& s = seqs[order[i]];
                chain_keys(s.tokens, s.num_tokens, tpb, s.root, s.out);
            }
            return;
#ifdef FLEXKV_KEYS_X86_SIMD
        case LanesCode::avx512:
            run_avx512(seqs, order, n, tpb);
            return;
        case LanesCode::avx2:
            run_avx2(seqs, order, n, tpb);
            return;
#endif
        default:
            run_lanes(seqs, order, n, tpb);
            return;
    }
}

// Sequences by decreasing length, the empty ones left out: the longest start first, so
// that the lanes run out of work together.
std::vector<std::size_t> longest_first(const Sequence* seqs, std::size_t count) {
    std::vector<std::size_t> order;
    order.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        if (seqs[i].num_tokens != 0) {
            order.push_back(i);
        }
    }
    std::stable_sort(order.begin(), order.end(), [seqs](std::size_t a, std::size_t b) {
        return seqs[a].num_tokens > seqs[b].num_tokens;
    });
    return order;
}

// Compressions of a sequence's keys: its work, in the unit every code spends it in.
std::size_t compressions(std::size_t num_tokens, std::size_t tpb) noexcept {
    const auto of_block = [](std::size_t len) {
        return (kKeyBytes + 8 * len + kBlake2bBlockBytes - 1) / kBlake2bBlockBytes;
    };
    const std::size_t rest = num_tokens % tpb;
    return num_tokens / tpb * of_block(tpb) + (rest != 0 ? of_block(rest) : 0);
}

// What one thread hashes: sequences of `order`, still longest first.
struct Share {
    std::vector<std::size_t> order;
    std::size_t work = 0;  // compressions
};

// `order` cut into groups of `group` sequences (one per lane; the first are the
// heaviest) and dealt to `n` shares, each group to the lightest share so far.
std::vector<Share> shares_of(const Sequence* seqs, const std::vector<std::size_t>& order,
                             std::size_t group, std::size_t n, std::size_t tpb) {
    std::vector<Share> shares(n);
    for (std::size_t begin = 0; begin < order.size(); begin += group) {
        const std::size_t end = std::min(begin + group, order.size());
        Share& lightest = *std::min_element(
            shares.begin(), shares.end(),
            [](const Share& a, const Share& b) { return a.work < b.work; });
        for (std::size_t i = begin; i < end; ++i) {
            lightest.order.push_back(order[i]);
            lightest.work += compressions(seqs[order[i]].num_tokens, tpb);
        }
    }
    return shares;
}

}  // namespace

bool lanes_code_supported(LanesCode code) noexcept {
    switch (code) {
        case LanesCode::best:
        case LanesCode::portable:
        case LanesCode::serial:
            return true;
        case LanesCode::avx512:
#ifdef FLEXKV_KEYS_X86_SIMD
            return __builtin_cpu_supports("avx512f");
#else
            return false;
#endif
        case LanesCode::avx2:
#ifdef FLEXKV_KEYS_X86_SIMD
            return __builtin_cpu_supports("avx2");
#else
            return false;
#endif
    }
    return false;
}

LanesCode best_lanes_code() noexcept {
    if (lanes_code_supported(LanesCode::avx512)) {
        return LanesCode::avx512;
    }
    if (lanes_code_supported(LanesCode::avx2)) {
        return LanesCode::avx2;
    }
    // Lanes in plain 128-bit registers (x86-64's baseline) are slower than one sequence
    // at a time: the serial code is the fastest without a vector rotate or wide registers.
    return LanesCode::serial;
}

const char* lanes_code_name(LanesCode code) noexcept {
    switch (code) {
        case LanesCode::best:
            return lanes_code_name(best_lanes_code());
        case LanesCode::portable:
            return "portable";
        case LanesCode::avx512:
            return "avx512";
        case LanesCode::avx2:
            return "avx2";
        case LanesCode::serial:
            return "serial";
    }
    return "portable";
}

const char* lanes_implementation() noexcept { return lanes_code_name(best_lanes_code()); }

void chain_keys_lanes(const Sequence* seqs, std::size_t count, std::size_t tokens_per_block,
                      LanesCode code, unsigned threads) {
    if (code == LanesCode::best) {
        code = best_lanes_code();
    } else if (!lanes_code_supported(code)) {
        code = LanesCode::portable;
    }
    const std::vector<std::size_t> order = longest_first(seqs, count);
    // Threads: at most one per group of lanes (a thread with fewer sequences than lanes
    // leaves lanes idle, and one sequence is a serial chain); automatic, also at most the
    // cores and one per kMinThreadWork compressions, so that starting a thread (tens of
    // microseconds) stays small beside its share.
    const std::size_t group = code == LanesCode::serial ? 1 : kLanes;
    const std::size_t groups = (order.size() + group - 1) / group;
    std::size_t n = threads;
    if (threads == 0) {
        std::size_t work = 0;
        for (const std::size_t i : order) {
            work += compressions(seqs[i].num_tokens, tokens_per_block);
        }
        // Read once: glibc reads /sys for it, about as long as hashing a small batch.
        static const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
        n = std::min<std::size_t>(cores, work / kMinThreadWork);
    }
    n = std::min(n, groups);
    if (n <= 1) {
        run_code(code, seqs, order.data(), order.size(), tokens_per_block);
        return;
    }
    // Shares write disjoint keys and only read the rest: no lock. The calling thread
    // hashes share 0, and any share whose thread did not start.
    const std::vector<Share> shares = shares_of(seqs, order, group, n, tokens_per_block);
    std::vector<std::exception_ptr> errors(n);
    const auto hash_share = [&](std::size_t t) {
        try {
            run_code(code, seqs, shares[t].order.data(), shares[t].order.size(),
                     tokens_per_block);
        } catch (...) {
            errors[t] = std::current_exception();
        }
    };
    std::vector<std::thread> workers;
    workers.reserve(n - 1);
    std::size_t started = 1;
    for (; started < n; ++started) {
        try {
            workers.emplace_back(hash_share, started);
        } catch (const std::system_error&) {
            break;  // no thread to be had: the rest on this one
        }
    }
    hash_share(0);
    for (std::size_t t = started; t < n; ++t) {
        hash_share(t);
    }
    for (std::thread& worker : workers) {
        worker.join();
    }
    for (const std::exception_ptr& error : errors) {
        if (error) {
            std::rethrow_exception(error);
        }
    }
}

}  // namespace flexkv::keys
