// BLAKE2b (RFC 7693) with the parameter block's digest length and personalization.
//
// The personalization string sits in bytes 48..63 of the parameter block (BLAKE2 paper,
// Aumasson et al. 2013, section 2.5; the same layout as Python's hashlib.blake2b), so
// digests equal hashlib.blake2b(data, digest_size=n, person=p). No key, no salt, no tree
// mode: the block keys need none of them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flexkv::keys {

constexpr std::size_t kBlake2bBlockBytes = 128;
constexpr std::size_t kBlake2bMaxDigest = 64;
constexpr std::size_t kBlake2bPersonBytes = 16;

// RFC 7693 section 2.6: the initialisation vector (the SHA-512 IV).
inline constexpr std::uint64_t kIv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

// RFC 7693 section 2.7: message word schedule; rounds 10 and 11 repeat rows 0 and 1.
inline constexpr std::uint8_t kSigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

// Digest of `size` bytes at `data` into `out[0 .. digest_size)`, 1 <= digest_size <= 64.
// `person`: kBlake2bPersonBytes bytes, or nullptr for none (all zero).
void blake2b(unsigned char* out, std::size_t digest_size, const void* data, std::size_t size,
             const unsigned char* person = nullptr) noexcept;

}  // namespace flexkv::keys
