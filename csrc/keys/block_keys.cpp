#include "keys/block_keys.h"

#include <cstring>
#include <vector>

#include "keys/blake2b.h"

namespace flexkv::keys {
namespace {

// The person string of core/keys.py's namespace root, 16 bytes.
constexpr unsigned char kRootPerson[kBlake2bPersonBytes + 1] = "flexkv-twin-root";

}  // namespace

void namespace_root(unsigned char out[kKeyBytes], const void* ns, std::size_t size) noexcept {
    blake2b(out, kKeyBytes, ns, size, kRootPerson);
}

void chain_keys(const std::int64_t* tokens, std::size_t num_tokens,
                std::size_t tokens_per_block, const unsigned char root[kKeyBytes],
                unsigned char* out) {
    // One message buffer: the previous key, then the block's tokens (struct "<q").
    const std::size_t widest = tokens_per_block < num_tokens ? tokens_per_block : num_tokens;
    std::vector<unsigned char> msg(kKeyBytes + 8 * widest);
    const unsigned char* prev = root;
    for (std::size_t start = 0; start < num_tokens; start += tokens_per_block) {
        const std::size_t len =
            num_tokens - start < tokens_per_block ? num_tokens - start : tokens_per_block;
        std::memcpy(msg.data(), prev, kKeyBytes);
        unsigned char* p = msg.data() + kKeyBytes;
        for (std::size_t i = 0; i < len; ++i) {
            const auto v = static_cast<std::uint64_t>(tokens[start + i]);
            for (int b = 0; b < 8; ++b) {
                p[8 * i + b] = static_cast<unsigned char>(v >> (8 * b));
            }
        }
        blake2b(out, kKeyBytes, msg.data(), kKeyBytes + 8 * len);
        prev = out;
        out += kKeyBytes;
    }
}

}  // namespace flexkv::keys
