// Index keys as 128-bit values: the key domain of the project (block keys and trace keys
// are ints in [0, 2**128), DESIGN.md 2 and trace/fields.py).
//
// Keys are read straight from the int's digits (CPython's long layout, 3.10 to 3.13+),
// so storing one costs no Python call and evicting one touches no Python object.
#pragma once

#include <Python.h>
#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h>  // included by Python.h from 3.11 on
#endif

#include <cstddef>
#include <cstdint>
#include <functional>

namespace flexkv::index {

struct Key128 {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    bool operator==(const Key128& o) const noexcept { return lo == o.lo && hi == o.hi; }
    bool operator!=(const Key128& o) const noexcept { return !(*this == o); }
};

struct Key128Hash {
    std::size_t operator()(const Key128& k) const noexcept {
        return static_cast<std::size_t>((k.lo ^ (k.hi * 0x9E3779B97F4A7C15ULL)) *
                                        0xBF58476D1CE4E5B9ULL);
    }
};

// The key `obj` stands for; false (no Python error set) when it is not an int in
// [0, 2**128). bool and int subclasses count by value, as in a dict.
inline bool read_key(PyObject* obj, Key128& out) noexcept {
    if (!PyLong_Check(obj)) {
        return false;
    }
    const auto* v = reinterpret_cast<const PyLongObject*>(obj);
#if PY_VERSION_HEX >= 0x030C0000
    const std::uintptr_t tag = v->long_value.lv_tag;
    if ((tag & 3) == 2) {
        return false;  // negative
    }
    const std::size_t ndigits = tag >> 3;
    const digit* d = v->long_value.ob_digit;
#else
    const Py_ssize_t size = Py_SIZE(obj);
    if (size < 0) {
        return false;
    }
    const auto ndigits = static_cast<std::size_t>(size);
    const digit* d = v->ob_digit;
#endif
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    for (std::size_t i = 0; i < ndigits; ++i) {
        const std::uint64_t dv = d[i];
        const std::size_t pos = i * PyLong_SHIFT;
        if (dv == 0) {
            continue;
        }
        if (pos >= 128) {
            return false;
        }
        if (pos < 64) {
            lo |= dv << pos;
            if (pos + PyLong_SHIFT > 64) {
                hi |= dv >> (64 - pos);
            }
        } else {
            hi |= dv << (pos - 64);
            if (pos + PyLong_SHIFT > 128 && (dv >> (128 - pos)) != 0) {
                return false;
            }
        }
    }
    out.lo = lo;
    out.hi = hi;
    return true;
}

// A new reference to the int of `key`.
inline PyObject* key_to_int(const Key128& key) noexcept {
    if (key.hi == 0) {
        return PyLong_FromUnsignedLongLong(key.lo);
    }
    unsigned char bytes[16];
    for (int i = 0; i < 8; ++i) {
        bytes[i] = static_cast<unsigned char>(key.lo >> (8 * i));
        bytes[8 + i] = static_cast<unsigned char>(key.hi >> (8 * i));
    }
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(
        bytes, 16, Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    return _PyLong_FromByteArray(bytes, 16, 1, 0);
#endif
}

}  // namespace flexkv::index
