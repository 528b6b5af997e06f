// BLAKE2b as specified by RFC 7693: 12 rounds of the G mixing function over a 16-word
// state, 128-byte message blocks, little-endian words, a 128-bit byte counter.
#include "keys/blake2b.h"

#include <cstring>

namespace flexkv::keys {
namespace {

inline std::uint64_t rotr64(std::uint64_t x, unsigned n) noexcept {
    return (x >> n) | (x << (64 - n));
}

inline std::uint64_t load_le64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = (v << 8) | p[i];  // compiles to one load on little-endian targets
    }
    return v;
}

inline void store_le64(unsigned char* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
        p[i] = static_cast<unsigned char>(v >> (8 * i));
    }
}

// RFC 7693 section 3.1: the mixing function G, rotations 32, 24, 16, 63.
#define FLEXKV_B2B_G(a, b, c, d, x, y) \
    do {                               \
        a = a + b + (x);               \
        d = rotr64(d ^ a, 32);         \
        c = c + d;                     \
        b = rotr64(b ^ c, 24);         \
        a = a + b + (y);               \
        d = rotr64(d ^ a, 16);         \
        c = c + d;                     \
        b = rotr64(b ^ c, 63);         \
    } while (0)

// One round with constant indices, so the schedule folds into register moves.
#define FLEXKV_B2B_ROUND(r)                                                        \
    do {                                                                           \
        FLEXKV_B2B_G(v0, v4, v8, v12, m[kSigma[r][0]], m[kSigma[r][1]]);           \
        FLEXKV_B2B_G(v1, v5, v9, v13, m[kSigma[r][2]], m[kSigma[r][3]]);           \
        FLEXKV_B2B_G(v2, v6, v10, v14, m[kSigma[r][4]], m[kSigma[r][5]]);          \
        FLEXKV_B2B_G(v3, v7, v11, v15, m[kSigma[r][6]], m[kSigma[r][7]]);          \
        FLEXKV_B2B_G(v0, v5, v10, v15, m[kSigma[r][8]], m[kSigma[r][9]]);          \
        FLEXKV_B2B_G(v1, v6, v11, v12, m[kSigma[r][10]], m[kSigma[r][11]]);        \
        FLEXKV_B2B_G(v2, v7, v8, v13, m[kSigma[r][12]], m[kSigma[r][13]]);         \
        FLEXKV_B2B_G(v3, v4, v9, v14, m[kSigma[r][14]], m[kSigma[r][15]]);         \
    } while (0)

// RFC 7693 section 3.2: the compression function F. `t` counts the bytes hashed so far
// (this block included); it stays below 2**64 here, so its high word is zero.
void compress(std::uint64_t h[8], const unsigned char block[kBlake2bBlockBytes],
              std::uint64_t t, bool last) noexcept {
    std::uint64_t m[16];
    for (int i = 0; i < 16; ++i) {
        m[i] = load_le64(block + 8 * i);
    }
    std::uint64_t v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3];
    std::uint64_t v4 = h[4], v5 = h[5], v6 = h[6], v7 = h[7];
    std::uint64_t v8 = kIv[0], v9 = kIv[1], v10 = kIv[2], v11 = kIv[3];
    std::uint64_t v12 = kIv[4] ^ t, v13 = kIv[5], v14 = kIv[6], v15 = kIv[7];
    if (last) {
        v14 = ~v14;
    }
    FLEXKV_B2B_ROUND(0);
    FLEXKV_B2B_ROUND(1);
    FLEXKV_B2B_ROUND(2);
    FLEXKV_B2B_ROUND(3);
    FLEXKV_B2B_ROUND(4);
    FLEXKV_B2B_ROUND(5);
    FLEXKV_B2B_ROUND(6);
    FLEXKV_B2B_ROUND(7);
    FLEXKV_B2B_ROUND(8);
    FLEXKV_B2B_ROUND(9);
    FLEXKV_B2B_ROUND(10);
    FLEXKV_B2B_ROUND(11);
    h[0] ^= v0 ^ v8;
    h[1] ^= v1 ^ v9;
    h[2] ^= v2 ^ v10;
    h[3] ^= v3 ^ v11;
    h[4] ^= v4 ^ v12;
    h[5] ^= v5 ^ v13;
    h[6] ^= v6 ^ v14;
    h[7] ^= v7 ^ v15;
}

#undef FLEXKV_B2B_ROUND
#undef FLEXKV_B2B_G

}  // namespace

void blake2b(unsigned char* out, std::size_t digest_size, const void* data, std::size_t size,
             const unsigned char* person) noexcept {
    std::uint64_t h[8];
    std::memcpy(h, kIv, sizeof h);
    // Parameter block word 0: digest length, key length 0, fanout 1, depth 1.
    h[0] ^= 0x01010000ULL ^ static_cast<std::uint64_t>(digest_size);
    if (person != nullptr) {
        h[6] ^= load_le64(person);
        h[7] ^= load_le64(person + 8);
    }
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t t = 0;
    // Every full block but the last is compressed as it comes; the last one (full,
    // partial or the empty message's zero block) carries the final flag.
    while (size > kBlake2bBlockBytes) {
        t += kBlake2bBlockBytes;
        compress(h, p, t, false);
        p += kBlake2bBlockBytes;
        size -= kBlake2bBlockBytes;
    }
    unsigned char tail[kBlake2bBlockBytes] = {};
    if (size != 0) {
        std::memcpy(tail, p, size);
    }
    t += size;
    compress(h, tail, t, true);
    unsigned char full[kBlake2bMaxDigest];
    for (int i = 0; i < 8; ++i) {
        store_le64(full + 8 * i, h[i]);
    }
    std::memcpy(out, full, digest_size);
}

}  // namespace flexkv::keys
