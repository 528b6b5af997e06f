// Registers the SSD I/O engine's bindings on the `_native` module.
#pragma once

#include <nanobind/nanobind.h>

namespace flexkv::io {

void bind_io(nanobind::module_& m);

}  // namespace flexkv::io
