// CRC-32C: a slicing-by-8 table implementation and an SSE4.2 one, picked at run time.
#include "crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FLEXKV_CRC32C_X86 1
#include <nmmintrin.h>
#endif

namespace flexkv {
namespace {

constexpr std::uint32_t kPolyReflected = 0x82F63B78u;

using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

// tables[k][b] is the CRC of byte b followed by k zero bytes.
constexpr Tables make_tables() {
    Tables t{};
    for (std::uint32_t b = 0; b < 256; ++b) {
        std::uint32_t c = b;
        for (int i = 0; i < 8; ++i) {
            c = (c & 1u) ? (c >> 1) ^ kPolyReflected : c >> 1;
        }
        t[0][b] = c;
    }
    for (std::size_t k = 1; k < 8; ++k) {
        for (std::size_t b = 0; b < 256; ++b) {
            t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
        }
    }
    return t;
}

constexpr Tables kTables = make_tables();

std::uint64_t load_le64(const unsigned char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

// Both kernels work on the raw (already inverted) register.
std::uint32_t raw_portable(std::uint32_t crc, const unsigned char* p, std::size_t n) noexcept {
    const auto& t = kTables;
    for (; n >= 8; n -= 8, p += 8) {
        const std::uint64_t v = load_le64(p) ^ crc;
        crc = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^
              t[4][(v >> 24) & 0xFF] ^ t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^
              t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
    }
    for (; n > 0; --n, ++p) {
        crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFFu];
    }
    return crc;
}

#ifdef FLEXKV_CRC32C_X86
// One 8-byte crc32 instruction per step: about 8 bytes per 3 cycles, far above the SSD
// and network rates whose data it checks, so no multi-stream interleaving is needed yet.
__attribute__((target("sse4.2"))) std::uint32_t raw_sse42(std::uint32_t crc,
                                                           const unsigned char* p,
                                                           std::size_t n) noexcept {
    for (; n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7u) != 0; --n, ++p) {
        crc = _mm_crc32_u8(crc, *p);
    }
    std::uint64_t c64 = crc;
    for (; n >= 8; n -= 8, p += 8) {
        c64 = _mm_crc32_u64(c64, load_le64(p));
    }
    crc = static_cast<std::uint32_t>(c64);
    for (; n > 0; --n, ++p) {
        crc = _mm_crc32_u8(crc, *p);
    }
    return crc;
}
#endif

using RawKernel = std::uint32_t (*)(std::uint32_t, const unsigned char*, std::size_t) noexcept;

struct Choice {
    RawKernel kernel;
    const char* name;
};

Choice choose() noexcept {
#ifdef FLEXKV_CRC32C_X86
    if (__builtin_cpu_supports("sse4.2")) {
        return {raw_sse42, "sse4.2"};
    }
#endif
    return {raw_portable, "slicing-by-8"};
}

const Choice& chosen() noexcept {
    static const Choice c = choose();  // thread-safe one-time initialisation
    return c;
}

}  // namespace

std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t size) noexcept {
    return ~raw_portable(~crc, static_cast<const unsigned char*>(data), size);
}

std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept {
    return ~chosen().kernel(~crc, static_cast<const unsigned char*>(data), size);
}

const char* crc32c_implementation() noexcept { return chosen().name; }

}  // namespace flexkv
