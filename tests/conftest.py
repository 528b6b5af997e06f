"""Shared test set-up: hardware markers skip, with the reason, when the hardware is absent.

Each probe runs only when a test carrying its marker is collected, so collecting the
torch-free tests never imports torch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

_IO_URING_SETUP = 425  # syscall number, the same on x86-64 and arm64
_IO_URING_PARAMS_SIZE = 120  # sizeof(struct io_uring_params)


def _gpu_absent() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install '.[engine]')"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
    return None


def _io_uring_absent() -> str | None:
    try:
        from flexkv_engine import _native
    except ImportError as exc:
        return f"native module not importable: {exc}"
    if not _native.build_info()["io_uring"]:
        return "native module was built without liburing (apt-get install liburing-dev)"
    disabled = Path("/proc/sys/kernel/io_uring_disabled")
    if disabled.exists() and disabled.read_text().strip() == "2":
        return "io_uring is disabled by the kernel (kernel.io_uring_disabled=2)"
    # Ask the kernel for a one-entry ring: sandboxes may refuse the syscall outright.
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(_IO_URING_PARAMS_SIZE)
    fd = libc.syscall(_IO_URING_SETUP, 1, params)
    if fd < 0:
        return f"io_uring_setup failed: {os.strerror(ctypes.get_errno())}"
    os.close(fd)
    return None


def _redis_absent() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install '.[engine]')"
    return None


def _browser_absent() -> str | None:
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        return "no headless Chromium (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


# marker -> probe returning None when the hardware is there, else why it is not.
_PROBES: dict[str, Callable[[], str | None]] = {
    "gpu": _gpu_absent,
    "io_uring": _io_uring_absent,
    "redis": _redis_absent,
    "browser": _browser_absent,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}
    for item in items:
        for marker, probe in _PROBES.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in reasons:
                reasons[marker] = probe()
            reason = reasons[marker]
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))
