// Chained block keys of many sequences in one pass, one sequence per SIMD lane.
#pragma once

#include <cstddef>
#include <cstdint>

#include "keys/block_keys.h"

namespace flexkv::keys {

struct Sequence {
    const std::int64_t* tokens;
    std::size_t num_tokens;
    const unsigned char* root;  // kKeyBytes: the predecessor of the first block
    unsigned char* out;         // num_blocks(num_tokens, tokens_per_block) keys of kKeyBytes
};

// The code that hashes a batch. `avx512`: eight lanes in one AVX-512 register; `avx2`:
// the same on two 256-bit registers; `portable`: the same lanes without a target
// attribute (the compiler's baseline, any CPU); `serial`: chain_keys() once per sequence.
// `best`: the fastest this CPU runs (avx512, else avx2, else serial). Every code gives
// the same keys.
enum class LanesCode { best, portable, avx512, avx2, serial };

// Whether this build and CPU run `code` (avx512 and avx2 need x86-64 and the CPU feature).
bool lanes_code_supported(LanesCode code) noexcept;

// The code `best` stands for on this CPU.
LanesCode best_lanes_code() noexcept;

// "avx512", "avx2", "portable" or "serial" (`best`: the name of best_lanes_code()).
const char* lanes_code_name(LanesCode code) noexcept;

// Name of best_lanes_code().
const char* lanes_implementation() noexcept;

// chain_keys() of every sequence from its own root, eight sequences at a time; a `code`
// this CPU does not run (lanes_code_supported) runs `portable`. `threads`: how many
// threads may share the batch, each taking whole groups of eight sequences (of one for
// `serial`), balanced by work; the calling thread is one of them. 0: automatic (one
// per core, none added for a small batch); 1: the calling thread only. Every count
// gives the same keys.
void chain_keys_lanes(const Sequence* seqs, std::size_t count, std::size_t tokens_per_block,
                      LanesCode code = LanesCode::best, unsigned threads = 0);

}  // namespace flexkv::keys
