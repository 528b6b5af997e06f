"""The one exception the trace package raises for bad input files."""

from __future__ import annotations

import os
from typing import Any


class TraceError(ValueError):
    """A trace file (or one line of it) that cannot be read as claimed.

    ``path`` is the file as the caller named it and ``line`` the 1-based physical line
    number, either of which may be ``None`` when unknown. ``reason`` is the message
    without the location, so callers can re-word it. ``str(err)`` reads like a compiler
    diagnostic: ``conversation_trace.jsonl:17: hash_ids must be a list of ...``.
    """

    def __init__(
        self,
        reason: str,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.path is None:
            return self.reason if self.line is None else f"line {self.line}: {self.reason}"
        if self.line is None:
            return f"{self.path}: {self.reason}"
        return f"{self.path}:{self.line}: {self.reason}"

    def at(self, path: str | os.PathLike[str], line: int | None) -> TraceError:
        """This error with a location filled in, unless it already carries one."""
        if self.path is not None:
            return self
        return TraceError(self.reason, path, line if self.line is None else self.line)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the structured fields across pickling (sweeps run in worker processes).
        return (TraceError, (self.reason, self.path, self.line))
