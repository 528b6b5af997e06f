// CRC-32C (Castagnoli), the checksum that guards stored KV blocks.
//
// Conventions match iSCSI / RFC 3720 and Python's `crc32c` packages: the register is
// pre- and post-inverted, so crc32c(b, crc32c(a)) == crc32c(a + b) and crc32c("") == 0.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flexkv {

// Portable slicing-by-8 implementation; runs on any CPU.
std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t size) noexcept;

// Best implementation for this CPU, chosen once at first use (SSE4.2 when present).
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

// Name of the implementation that crc32c() dispatches to: "sse4.2" or "slicing-by-8".
const char* crc32c_implementation() noexcept;

}  // namespace flexkv
