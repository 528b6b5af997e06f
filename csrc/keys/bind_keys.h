// Registers the block-key bindings on the `_native` module.
#pragma once

#include <nanobind/nanobind.h>

namespace flexkv::keys {

void bind_keys(nanobind::module_& m);

}  // namespace flexkv::keys
