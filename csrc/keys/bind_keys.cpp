// Python bindings of the block keys: `_native.block_keys`, `_native.block_keys_le64` and
// `_native.namespace_root`, the native path of flexkv_engine.core.keys.
//
// Tokens cross without a Python object per token where they can: a list or tuple is read
// item by item in C, a typed buffer (numpy integer array, array.array) or raw little-endian
// int64 bytes is read in place. Errors (a token out of int64 range, a value that is not an
// integer, an unsupported buffer) raise OverflowError, TypeError or ValueError; the Python
// side then takes its own path, which raises the error of record.
#include "keys/bind_keys.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "keys/block_keys.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace flexkv::keys {
namespace {

// Hashing runs without the GIL from this many blocks on (about 20 us of work).
constexpr std::size_t kReleaseGilBlocks = 64;

class BufferView {
public:
    BufferView(nb::handle obj, int flags) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
            throw nb::python_error();
        }
    }
    ~BufferView() { PyBuffer_Release(&view_); }
    BufferView(const BufferView&) = delete;
    BufferView& operator=(const BufferView&) = delete;
    const Py_buffer& view() const noexcept { return view_; }

private:
    Py_buffer view_{};
};

bool host_is_little_endian() noexcept {
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

template <typename T>
void widen(const void* data, std::size_t n, std::vector<std::int64_t>& out) {
    const auto* p = static_cast<const unsigned char*>(data);
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, p + i * sizeof(T), sizeof(T));
        if constexpr (std::is_same_v<T, std::uint64_t>) {
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                throw nb::value_error("a token is out of the int64 range");
            }
        }
        out[i] = static_cast<std::int64_t>(v);
    }
}

// Tokens of a one-dimensional integer buffer in native byte order.
void tokens_of_buffer(nb::handle obj, std::vector<std::int64_t>& out) {
    BufferView buf(obj, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS);
    const Py_buffer& v = buf.view();
    if (v.ndim != 1) {
        throw nb::type_error("tokens: a one-dimensional buffer is needed");
    }
    const char* fmt = v.format != nullptr ? v.format : "B";
    if (*fmt == '@' || *fmt == '=' || (*fmt == '<' && host_is_little_endian())) {
        ++fmt;
    }
    const char code = fmt[0];
    if (code == '\0' || fmt[1] != '\0' || std::strchr("bBhHiIlLqQnN", code) == nullptr) {
        throw nb::type_error("tokens: an integer buffer in native byte order is needed");
    }
    const bool is_signed = code >= 'a' && code <= 'z';
    const std::size_t n = static_cast<std::size_t>(v.shape[0]);
    switch (v.itemsize) {
        case 1:
            is_signed ? widen<std::int8_t>(v.buf, n, out) : widen<std::uint8_t>(v.buf, n, out);
            break;
        case 2:
            is_signed ? widen<std::int16_t>(v.buf, n, out) : widen<std::uint16_t>(v.buf, n, out);
            break;
        case 4:
            is_signed ? widen<std::int32_t>(v.buf, n, out) : widen<std::uint32_t>(v.buf, n, out);
            break;
        case 8:
            is_signed ? widen<std::int64_t>(v.buf, n, out) : widen<std::uint64_t>(v.buf, n, out);
            break;
        default:
            throw nb::type_error("tokens: unsupported integer size");
    }
}

// Tokens of a list or tuple of ints (anything with __index__, as struct.pack takes).
void tokens_of_sequence(nb::handle obj, std::vector<std::int64_t>& out) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj.ptr());
    PyObject** items = PySequence_Fast_ITEMS(obj.ptr());
    out.resize(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        const long long t = PyLong_AsLongLong(items[i]);
        if (t == -1 && PyErr_Occurred()) {
            throw nb::python_error();
        }
        out[static_cast<std::size_t>(i)] = t;
    }
}

nb::object key_to_int(const unsigned char* key) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject* v = PyLong_FromUnsignedNativeBytes(
        key, kKeyBytes, Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    PyObject* v = _PyLong_FromByteArray(key, kKeyBytes, 1, 0);
#endif
    if (v == nullptr) {
        throw nb::python_error();
    }
    return nb::steal(v);
}

void root_of(nb::handle ns, unsigned char root[kKeyBytes]) {
    BufferView buf(ns, PyBUF_SIMPLE);
    namespace_root(root, buf.view().buf, static_cast<std::size_t>(buf.view().len));
}

nb::list keys_of(const std::vector<std::int64_t>& tokens, std::size_t tokens_per_block,
                 nb::handle ns) {
    if (tokens_per_block < 1) {
        throw nb::value_error("tokens_per_block must be >= 1");
    }
    unsigned char root[kKeyBytes];
    root_of(ns, root);
    const std::size_t n = num_blocks(tokens.size(), tokens_per_block);
    std::vector<unsigned char> keys(n * kKeyBytes);
    if (n >= kReleaseGilBlocks) {
        nb::gil_scoped_release unlocked;
        chain_keys(tokens.data(), tokens.size(), tokens_per_block, root, keys.data());
    } else {
        chain_keys(tokens.data(), tokens.size(), tokens_per_block, root, keys.data());
    }
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(n));
    if (out == nullptr) {
        throw nb::python_error();
    }
    nb::list result = nb::steal<nb::list>(out);
    for (std::size_t i = 0; i < n; ++i) {
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i),
                        key_to_int(keys.data() + i * kKeyBytes).release().ptr());
    }
    return result;
}

nb::list block_keys(nb::handle tokens, std::size_t tokens_per_block, nb::handle ns) {
    std::vector<std::int64_t> values;
    if (PyList_Check(tokens.ptr()) || PyTuple_Check(tokens.ptr())) {
        tokens_of_sequence(tokens, values);
    } else if (PyObject_CheckBuffer(tokens.ptr())) {
        tokens_of_buffer(tokens, values);
    } else {
        throw nb::type_error("tokens: a list, a tuple or an integer buffer is needed");
    }
    return keys_of(values, tokens_per_block, ns);
}

nb::list block_keys_le64(nb::handle data, std::size_t tokens_per_block, nb::handle ns) {
    BufferView buf(data, PyBUF_SIMPLE);
    const auto size = static_cast<std::size_t>(buf.view().len);
    if (size % 8 != 0) {
        throw nb::value_error("data: a whole number of 8-byte tokens is needed");
    }
    std::vector<std::int64_t> values(size / 8);
    const auto* p = static_cast<const unsigned char*>(buf.view().buf);
    for (std::size_t i = 0; i < values.size(); ++i) {
        std::uint64_t v = 0;
        for (int b = 7; b >= 0; --b) {
            v = (v << 8) | p[8 * i + static_cast<std::size_t>(b)];
        }
        values[i] = static_cast<std::int64_t>(v);
    }
    return keys_of(values, tokens_per_block, ns);
}

}  // namespace

void bind_keys(nb::module_& m) {
    m.def("block_keys", &block_keys, "tokens"_a, "tokens_per_block"_a, "namespace"_a,
          nb::sig("def block_keys(tokens: collections.abc.Sequence[int] | "
                  "collections.abc.Buffer, tokens_per_block: int, namespace: "
                  "collections.abc.Buffer) -> list[int]"),
          "Chained 128-bit keys of `tokens` cut into blocks of `tokens_per_block` (the last "
          "one possibly partial), in the namespace given as bytes: the values of "
          "flexkv_engine.core.keys.block_keys. `tokens`: a list or tuple of ints, or a "
          "one-dimensional integer buffer in native byte order (a numpy array, "
          "array.array).");
    m.def("block_keys_le64", &block_keys_le64, "data"_a, "tokens_per_block"_a, "namespace"_a,
          nb::sig("def block_keys_le64(data: collections.abc.Buffer, tokens_per_block: int, "
                  "namespace: collections.abc.Buffer) -> list[int]"),
          "block_keys() of tokens packed as little-endian int64 bytes (struct '<q').");
    m.def(
        "namespace_root",
        [](nb::handle ns) {
            unsigned char root[kKeyBytes];
            root_of(ns, root);
            return key_to_int(root);
        },
        "namespace"_a,
        nb::sig("def namespace_root(namespace: collections.abc.Buffer) -> int"),
        "The predecessor key of a sequence's first block in the namespace given as bytes: "
        "flexkv_engine.core.keys.namespace_root.");
}

}  // namespace flexkv::keys
