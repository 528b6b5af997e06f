"""Errors and warnings raised while loading or resolving a configuration."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class FlexKVConfigWarning(UserWarning):
    """A FlexKV setting was accepted but has no effect in FlexKV Twin."""


class ConfigError(ValueError):
    """A configuration key or value is not valid.

    The message reads ``<source>: <key.path>: <reason>; <hint>``, where the source (a file
    name, ``environment`` or ``--set``) and the hint (valid choices, a range, a suggested
    key) are left out when unknown. The parts stay available as attributes so that a
    caller can report them in its own way.
    """

    def __init__(
        self,
        reason: str,
        *,
        key_path: str = "",
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = reason
        self.key_path = key_path
        self.source = source
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        text = self.reason if not self.hint else f"{self.reason}; {self.hint}"
        parts = [p for p in (self.source, self.key_path) if p]
        return ": ".join([*parts, text])

    def with_source(self, source: str | None) -> ConfigError:
        """Return the same error attributed to ``source`` (kept if it already has one)."""
        if self.source is not None or source is None:
            return self
        return ConfigError(self.reason, key_path=self.key_path, source=source, hint=self.hint)

    def __reduce__(self) -> tuple[Callable[..., ConfigError], tuple[object, ...]]:
        # Keyword-only arguments would break the default pickling of exceptions, and
        # sweeps send errors back from worker processes.
        return (_rebuild, (self.reason, self.key_path, self.source, self.hint))


def _rebuild(reason: str, key_path: str, source: str | None, hint: str | None) -> ConfigError:
    return ConfigError(reason, key_path=key_path, source=source, hint=hint)


def unknown_key(key: str, key_path: str, valid: Iterable[str], source: str | None) -> ConfigError:
    """The error for a key that is neither known nor a tolerated FlexKV key."""
    names = sorted(valid)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(
        "unknown key",
        key_path=key_path,
        source=source,
        hint=f"{hint}valid keys: {', '.join(names)}",
    )
