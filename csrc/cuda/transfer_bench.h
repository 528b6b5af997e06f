// The reference that `flexkv-run bench gpu` measures the transfer paths of kv_transfer.h
// against (transfer_bench.cu). Holds no CUDA types, so the bindings compile without the
// CUDA headers.
#pragma once

#include <cstdint>
#include <vector>

namespace flexkv::cuda {

// Times `repeats` rounds of plain cudaMemcpyAsync copies (cudaMemcpyDefault: the direction
// follows from the pointers), every copy of a round on its own stream so that they run at
// once. Returns the seconds of each round, from a start event all streams wait on to the
// last copy's end. The reference that the transfer paths are measured against.
std::vector<double> time_contiguous_copies(int device,
                                           const std::vector<std::uintptr_t>& dsts,
                                           const std::vector<std::uintptr_t>& srcs,
                                           const std::vector<std::uint64_t>& sizes,
                                           int repeats);

}  // namespace flexkv::cuda
