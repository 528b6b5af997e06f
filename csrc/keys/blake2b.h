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

// Digest of `size` bytes at `data` into `out[0 .. digest_size)`, 1 <= digest_size <= 64.
// `person`: kBlake2bPersonBytes bytes, or nullptr for none (all zero).
void blake2b(unsigned char* out, std::size_t digest_size, const void* data, std::size_t size,
             const unsigned char* person = nullptr) noexcept;

}  // namespace flexkv::keys
