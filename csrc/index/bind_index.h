// Registers the native prefix index on the `_native` module.
#pragma once

#include <nanobind/nanobind.h>

namespace flexkv::index {

void bind_index(nanobind::module_& m);

}  // namespace flexkv::index
