// Chained block keys: the values of flexkv_engine.core.keys, computed natively.
//
// The key of block i is blake2b-128 of (key of block i - 1, the block's tokens as
// little-endian int64); the first block's predecessor is blake2b-128 of the namespace,
// personalized "flexkv-twin-root". Keys are 16 bytes, read as little-endian integers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flexkv::keys {

constexpr std::size_t kKeyBytes = 16;

// The predecessor key of a sequence's first block in the namespace `ns` (may be empty).
void namespace_root(unsigned char out[kKeyBytes], const void* ns, std::size_t size) noexcept;

// Number of blocks of `num_tokens` tokens, the last one possibly partial.
constexpr std::size_t num_blocks(std::size_t num_tokens, std::size_t tokens_per_block) {
    return (num_tokens + tokens_per_block - 1) / tokens_per_block;
}

// Keys of `tokens[0 .. num_tokens)` cut into blocks of `tokens_per_block` (>= 1), chained
// from `root`: num_blocks(num_tokens, tokens_per_block) keys of kKeyBytes bytes into `out`.
void chain_keys(const std::int64_t* tokens, std::size_t num_tokens,
                std::size_t tokens_per_block, const unsigned char root[kKeyBytes],
                unsigned char* out);

}  // namespace flexkv::keys
