// Python bindings of the block keys: `_native.block_keys`, `_native.block_keys_le64`,
// `_native.block_keys_many` (many sequences in one call, hashed side by side) and
// `_native.namespace_root`, the native path of flexkv_engine.core.keys.
//
// Tokens cross without a Python object per token where they can: a list or tuple is read
// item by item in C, a typed buffer (numpy integer array, array.array) or raw little-endian
// int64 bytes is read in place. Errors (a token out of int64 range, a value that is not an
// integer, an unsupported buffer) raise OverflowError, TypeError or ValueError; the Python
// side then takes its own path, which raises the error of record.
#include "keys/bind_keys.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "keys/block_keys.h"
#include "keys/block_keys_lanes.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace flexkv::keys {
namespace {

// Hashing runs without the GIL from this many blocks on (about 20 us of work).
constexpr std::size_t kReleaseGilBlocks = 64;
// block_keys_many shares a batch among at most this many threads, whatever it is asked.
constexpr long long kMaxThreads = 1024;
// block_keys_many keeps up to this much scratch memory per thread between calls.
constexpr std::size_t kKeepScratchBytes = std::size_t{64} << 20;

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
    const std::size_t base = out.size();
    out.resize(base + n);
    for (std::size_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, p + i * sizeof(T), sizeof(T));
        if constexpr (std::is_same_v<T, std::uint64_t>) {
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                throw nb::value_error("a token is out of the int64 range");
            }
        }
        out[base + i] = static_cast<std::int64_t>(v);
    }
}

// Tokens of a one-dimensional integer buffer in native byte order, appended to `out`.
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

// Tokens of a list or tuple of ints (anything with __index__, as struct.pack takes),
// appended to `out`.
void tokens_of_sequence(nb::handle obj, std::vector<std::int64_t>& out) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj.ptr());
    PyObject** items = PySequence_Fast_ITEMS(obj.ptr());
    const std::size_t base = out.size();
    out.resize(base + static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        const long long t = PyLong_AsLongLong(items[i]);
        if (t == -1 && PyErr_Occurred()) {
            throw nb::python_error();
        }
        out[base + static_cast<std::size_t>(i)] = t;
    }
}

// Tokens of what block_keys() takes, appended to `out`.
void tokens_of(nb::handle tokens, std::vector<std::int64_t>& out) {
    if (PyList_Check(tokens.ptr()) || PyTuple_Check(tokens.ptr())) {
        tokens_of_sequence(tokens, out);
    } else if (PyObject_CheckBuffer(tokens.ptr())) {
        tokens_of_buffer(tokens, out);
    } else {
        throw nb::type_error("tokens: a list, a tuple or an integer buffer is needed");
    }
}

// Tokens packed as little-endian int64 bytes (struct '<q'), appended to `out`.
void tokens_of_le64(nb::handle data, std::vector<std::int64_t>& out) {
    BufferView buf(data, PyBUF_SIMPLE);
    const auto size = static_cast<std::size_t>(buf.view().len);
    if (size % 8 != 0) {
        throw nb::value_error("data: a whole number of 8-byte tokens is needed");
    }
    const std::size_t base = out.size();
    out.resize(base + size / 8);
    const auto* p = static_cast<const unsigned char*>(buf.view().buf);
    for (std::size_t i = 0; i < size / 8; ++i) {
        std::uint64_t v = 0;
        for (int b = 7; b >= 0; --b) {
            v = (v << 8) | p[8 * i + static_cast<std::size_t>(b)];
        }
        out[base + i] = static_cast<std::int64_t>(v);
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

// A list of the `n` keys at `keys`, as ints.
nb::list key_list(const unsigned char* keys, std::size_t n) {
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(n));
    if (out == nullptr) {
        throw nb::python_error();
    }
    nb::list result = nb::steal<nb::list>(out);
    for (std::size_t i = 0; i < n; ++i) {
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i),
                        key_to_int(keys + i * kKeyBytes).release().ptr());
    }
    return result;
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
    return key_list(keys.data(), n);
}

nb::list block_keys(nb::handle tokens, std::size_t tokens_per_block, nb::handle ns) {
    std::vector<std::int64_t> values;
    tokens_of(tokens, values);
    return keys_of(values, tokens_per_block, ns);
}

nb::list block_keys_le64(nb::handle data, std::size_t tokens_per_block, nb::handle ns) {
    std::vector<std::int64_t> values;
    tokens_of_le64(data, values);
    return keys_of(values, tokens_per_block, ns);
}

constexpr LanesCode kCodes[] = {LanesCode::avx512, LanesCode::avx2, LanesCode::portable,
                                LanesCode::serial};

LanesCode code_named(nb::handle name) {
    if (name.is_none()) {
        return LanesCode::best;
    }
    const char* wanted = nb::cast<const char*>(name);
    std::string known;
    for (const LanesCode code : kCodes) {
        if (std::strcmp(wanted, lanes_code_name(code)) == 0) {
            if (!lanes_code_supported(code)) {
                throw nb::value_error(
                    ("implementation '" + std::string(wanted) + "' does not run here").c_str());
            }
            return code;
        }
        known += known.empty() ? "" : ", ";
        known += lanes_code_name(code);
    }
    throw nb::value_error(("unknown implementation '" + std::string(wanted) +
                           "'; choose from: " + known)
                              .c_str());
}

// 0 (automatic) for None, else a count >= 1 (more than kMaxThreads: kMaxThreads).
unsigned threads_named(nb::handle threads) {
    if (threads.is_none()) {
        return 0;
    }
    if (!PyLong_Check(threads.ptr())) {
        throw nb::type_error("threads must be None or an int");
    }
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(threads.ptr(), &overflow);
    if (overflow < 0 || (overflow == 0 && n < 1)) {
        throw nb::value_error("threads must be None or >= 1");
    }
    return static_cast<unsigned>(overflow > 0 ? kMaxThreads : std::min(n, kMaxThreads));
}

// Keys of every sequence of `seqs` in one call, the sequences hashed side by side
// (block_keys_lanes.h). `ns`: one namespace for all, or a list or tuple of one each.
nb::list block_keys_many(nb::handle seqs, std::size_t tokens_per_block, nb::handle ns,
                         bool le64, nb::handle implementation, nb::handle threads) {
    if (tokens_per_block < 1) {
        throw nb::value_error("tokens_per_block must be >= 1");
    }
    const LanesCode code = code_named(implementation);
    const unsigned num_threads = threads_named(threads);
    nb::object items = nb::steal(PySequence_Fast(seqs.ptr(), "sequences: a sequence is needed"));
    if (!items.is_valid()) {
        throw nb::python_error();
    }
    const auto count = static_cast<std::size_t>(PySequence_Fast_GET_SIZE(items.ptr()));
    PyObject** seq_items = PySequence_Fast_ITEMS(items.ptr());
    // Roots: one for all, or one per sequence.
    const bool one_ns = !(PyList_Check(ns.ptr()) || PyTuple_Check(ns.ptr()));
    std::vector<unsigned char> roots(one_ns ? kKeyBytes : count * kKeyBytes);
    if (one_ns) {
        root_of(ns, roots.data());
    } else {
        if (static_cast<std::size_t>(PySequence_Fast_GET_SIZE(ns.ptr())) != count) {
            throw nb::value_error("namespace: one per sequence is needed");
        }
        PyObject** ns_items = PySequence_Fast_ITEMS(ns.ptr());
        for (std::size_t i = 0; i < count; ++i) {
            root_of(ns_items[i], roots.data() + i * kKeyBytes);
        }
    }
    // Every sequence's tokens in one array, every key in another. Both are kept per
    // thread between calls: a batch of requests is megabytes, which the allocator maps
    // fresh (and the kernel faults in page by page) on every call otherwise, a cost
    // near that of the hashing itself. More than kKeepScratchBytes is given back. A call
    // made from inside this one (an __index__ or a finalizer running Python) uses its own.
    thread_local std::vector<std::int64_t> kept_tokens;
    thread_local std::vector<unsigned char> kept_keys;
    thread_local bool kept_in_use = false;
    std::vector<std::int64_t> own_tokens;
    std::vector<unsigned char> own_keys;
    const bool reuse = !kept_in_use;
    std::vector<std::int64_t>& tokens = reuse ? kept_tokens : own_tokens;
    std::vector<unsigned char>& keys = reuse ? kept_keys : own_keys;
    struct InUse {
        bool& flag;
        bool was;
        ~InUse() { flag = was; }
    } in_use{kept_in_use, kept_in_use};
    kept_in_use = true;
    tokens.clear();
    std::vector<std::size_t> starts(count + 1, 0);
    std::vector<std::size_t> first_key(count + 1, 0);
    for (std::size_t i = 0; i < count; ++i) {
        if (le64) {
            tokens_of_le64(seq_items[i], tokens);
        } else {
            tokens_of(seq_items[i], tokens);
        }
        starts[i + 1] = tokens.size();
        first_key[i + 1] = first_key[i] + num_blocks(starts[i + 1] - starts[i], tokens_per_block);
    }
    keys.resize(first_key[count] * kKeyBytes);
    std::vector<Sequence> batch(count);
    for (std::size_t i = 0; i < count; ++i) {
        batch[i] = {tokens.data() + starts[i], starts[i + 1] - starts[i],
                    roots.data() + (one_ns ? 0 : i * kKeyBytes),
                    keys.data() + first_key[i] * kKeyBytes};
    }
    if (first_key[count] >= kReleaseGilBlocks) {
        nb::gil_scoped_release unlocked;
        chain_keys_lanes(batch.data(), count, tokens_per_block, code, num_threads);
    } else {
        chain_keys_lanes(batch.data(), count, tokens_per_block, code, 1);
    }
    PyObject* out = PyList_New(static_cast<Py_ssize_t>(count));
    if (out == nullptr) {
        throw nb::python_error();
    }
    nb::list result = nb::steal<nb::list>(out);
    for (std::size_t i = 0; i < count; ++i) {
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i),
                        key_list(keys.data() + first_key[i] * kKeyBytes,
                                 first_key[i + 1] - first_key[i])
                            .release()
                            .ptr());
    }
    if (tokens.capacity() * sizeof(std::int64_t) > kKeepScratchBytes) {
        std::vector<std::int64_t>().swap(tokens);
    }
    if (keys.capacity() > kKeepScratchBytes) {
        std::vector<unsigned char>().swap(keys);
    }
    return result;
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
    m.def("block_keys_many", &block_keys_many, "sequences"_a, "tokens_per_block"_a,
          "namespace"_a, nb::kw_only(), "le64"_a = false, "implementation"_a = nb::none(),
          "threads"_a = nb::none(),
          nb::sig("def block_keys_many(sequences: collections.abc.Sequence[object], "
                  "tokens_per_block: int, namespace: collections.abc.Buffer | "
                  "collections.abc.Sequence[collections.abc.Buffer], *, le64: bool = False, "
                  "implementation: str | None = None, threads: int | None = None) -> "
                  "list[list[int]]"),
          "block_keys() of every sequence, in one call: a list of key lists in the order of "
          "`sequences`. Sequences are hashed side by side, one per SIMD lane. `namespace`: "
          "bytes for all, or a list or tuple of bytes, one per sequence. `le64`: every "
          "sequence is packed little-endian int64 bytes (as block_keys_le64 takes). "
          "`implementation`: None for the fastest on this CPU (block_keys_implementation()), "
          "or one of block_keys_implementations() (all give the same keys). `threads`: None "
          "to spread a large batch over one thread per core (whole groups of eight "
          "sequences each, balanced by work; a small one stays on the calling thread), 1 "
          "for the calling thread only, or at most that many (same keys). Hashing runs "
          "without the GIL.");
    m.def(
        "block_keys_implementation", [] { return lanes_implementation(); },
        "The code block_keys_many() runs on this CPU: 'avx512', 'avx2' or 'serial'.");
    m.def(
        "block_keys_implementations",
        [] {
            nb::list names;
            for (const LanesCode code : kCodes) {
                if (lanes_code_supported(code)) {
                    names.append(lanes_code_name(code));
                }
            }
            return names;
        },
        "The implementations block_keys_many() can be asked for on this CPU.");
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
