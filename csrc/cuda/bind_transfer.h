// Registers the GPU <-> host transfer bindings on the `_native` module.
#pragma once

#include <nanobind/nanobind.h>

namespace flexkv::cuda {

void bind_transfer(nanobind::module_& m);

}  // namespace flexkv::cuda
