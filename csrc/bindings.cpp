// Python bindings of the native module `flexkv_engine._native`.
//
// Everything the engine needs from C++/CUDA is exposed here and nowhere else, so the
// Python side sees one module; GPU buffers will cross as DLPack arrays or raw pointers,
// so csrc never depends on libtorch.
#include <nanobind/nanobind.h>

#include <cstdint>

#include "crc32c.h"
#include "cuda/bind_transfer.h"
#include "cuda/device_info.h"
#include "index/bind_index.h"
#include "io/bind_io.h"
#include "keys/bind_keys.h"

namespace nb = nanobind;
using namespace nb::literals;

#ifndef FLEXKV_VERSION
#error "FLEXKV_VERSION must be defined by the build"
#endif
#ifndef FLEXKV_CXX_COMPILER
#define FLEXKV_CXX_COMPILER "unknown"
#endif

namespace {

#ifdef FLEXKV_WITH_CUDA
constexpr bool kWithCuda = true;
#else
constexpr bool kWithCuda = false;
#endif

#ifdef FLEXKV_HAVE_IO_URING
constexpr bool kHaveIoUring = true;
#else
constexpr bool kHaveIoUring = false;
#endif

// A contiguous, read-only view of any object that exports the buffer protocol. Holding
// the export keeps the memory alive and stops a bytearray from resizing under us, so the
// GIL can be dropped while the bytes are read. Release needs the GIL again: destroy the
// view only once the GIL is held.
class ContiguousBuffer {
public:
    explicit ContiguousBuffer(nb::handle obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) {
            throw nb::python_error();
        }
    }
    ~ContiguousBuffer() { PyBuffer_Release(&view_); }
    ContiguousBuffer(const ContiguousBuffer&) = delete;
    ContiguousBuffer& operator=(const ContiguousBuffer&) = delete;

    const void* data() const noexcept { return view_.buf; }
    std::size_t size() const noexcept { return static_cast<std::size_t>(view_.len); }

private:
    Py_buffer view_{};
};

using Crc32cFn = std::uint32_t (*)(std::uint32_t, const void*, std::size_t) noexcept;

template <Crc32cFn Fn>
std::uint32_t crc32c_of(nb::handle data, std::uint32_t value) {
    ContiguousBuffer buf(data);
    nb::gil_scoped_release unlocked;
    return Fn(value, buf.data(), buf.size());
}

nb::dict build_info() {
    nb::dict info;
    info["version"] = FLEXKV_VERSION;
    info["cuda"] = kWithCuda;
    info["cuda_runtime"] =
        kWithCuda ? nb::object(nb::int_(flexkv::cuda_runtime_version())) : nb::none();
#ifdef FLEXKV_CUDA_COMPILER
    info["cuda_compiler"] = FLEXKV_CUDA_COMPILER;
#else
    info["cuda_compiler"] = nb::none();
#endif
    info["io_uring"] = kHaveIoUring;
    info["compiler"] = FLEXKV_CXX_COMPILER;
    info["crc32c"] = flexkv::crc32c_implementation();
    return info;
}

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "Native parts of the FlexKV Twin engine (C++/CUDA).";

    m.def("build_info", &build_info,
          "How this module was built: version, cuda (compiled with CUDA), cuda_runtime, "
          "cuda_compiler, io_uring (liburing found at build time), compiler, and crc32c "
          "(the implementation chosen for this CPU).");

    m.def(
        "cuda_device_count",
        []() {
            nb::gil_scoped_release unlocked;  // the first call initialises the driver
            return flexkv::cuda_device_count();
        },
        "Number of visible CUDA devices; 0 when built without CUDA or when no driver or GPU "
        "is present. Never raises.");

    m.def("crc32c", &crc32c_of<flexkv::crc32c>, "data"_a, "value"_a = 0,
          nb::sig("def crc32c(data: collections.abc.Buffer, value: int = 0) -> int"),
          "CRC-32C of a C-contiguous buffer (bytes, bytearray, memoryview, numpy array), "
          "continuing from `value`: crc32c(b, crc32c(a)) == crc32c(a + b). Releases the GIL "
          "while it reads.");

    m.def("crc32c_portable", &crc32c_of<flexkv::crc32c_portable>, "data"_a, "value"_a = 0,
          nb::sig("def crc32c_portable(data: collections.abc.Buffer, value: int = 0) -> int"),
          "crc32c() computed by the portable slicing-by-8 code whatever the CPU; for parity "
          "tests and benchmarks.");

    flexkv::io::bind_io(m);  // UringEngine (with liburing) and uring_probe
    flexkv::cuda::bind_transfer(m);  // KVTransfer and time_contiguous_copies (with CUDA)
    flexkv::keys::bind_keys(m);  // block_keys, block_keys_le64, namespace_root
    flexkv::index::bind_index(m);  // TierIndex and IndexNode (core.native_index)
}
