"""The workload registry, the parameters protocol, and what sessions share.

A workload is a frozen dataclass of parameters (each declared with :func:`param`, which
documents it and bounds it) registered with ``@register``. Its ``sessions(ctx)`` yields
an endless stream of sessions; a session is an iterator of :class:`Turn` s, one per
request it sends (a chat's turns, an agent's steps, a single RAG query). The generator
(``generate.py``) decides when each turn is sent.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Protocol

from flexkv_engine.config import ConfigError

from .keys import BlockChain, Segment
from .sampling import lognormal_int


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session: its prompt (tokens and chained keys) and its answer.

    ``think_s`` is the least time before the session's next request (generation, reading,
    typing, a tool call); ``None`` says the session ends with this turn.
    """

    num_tokens: int
    keys: list[int]
    output_tokens: int
    think_s: float | None


class Workload(Protocol):
    """What ``@register`` expects of a workload class (a frozen dataclass of params)."""

    name: ClassVar[str]
    #: Request ids read ``<id_prefix><session>-<turn>``.
    id_prefix: ClassVar[str]

    def sessions(self, ctx: Context) -> Iterator[Iterator[Turn]]: ...


WORKLOADS: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: add a workload to :data:`WORKLOADS` under ``cls.name``."""
    WORKLOADS[cls.name] = cls
    return cls


# ------------------------------------------------------------------------- parameters


def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    above: bool = False,
    high: float | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """A documented, checked workload parameter.

    ``low`` is the least allowed value (excluded when ``above``), ``high`` the largest
    (default 10**8, a guard against typos that would exhaust memory); ``choices`` the
    allowed strings.
    Floats accept ints. The default's type is the parameter's type.
    """
    meta = {"help": help, "low": low, "above": above, "choices": tuple(choices or ())}
    if high is not None:
        meta["high"] = high
    return field(default=default, metadata=meta)


class Params:
    """Base of workload dataclasses: checks every :func:`param` after construction."""

    name: ClassVar[str] = "workload"

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            fixed = _check(f, value, f"{self.name}.{f.name}")
            if fixed is not value:
                object.__setattr__(self, f.name, fixed)
        self.check()

    def check(self) -> None:
        """Checks across parameters; raise :class:`ConfigError` via :meth:`bad`."""

    def bad(self, name: str, reason: str) -> ConfigError:
        return ConfigError(reason, key_path=f"{self.name}.{name}")


def _check(f: Field[Any], value: Any, key_path: str) -> Any:
    kind = type(f.default)
    meta = f.metadata
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(
            f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}", key_path=key_path
        )
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"must be a finite number, got {value!r}", key_path=key_path)
    low = meta.get("low")
    if low is not None and (value <= low if meta.get("above") else value < low):
        bound = f"> {low}" if meta.get("above") else f">= {low}"
        raise ConfigError(f"must be {bound}, got {value!r}", key_path=key_path)
    high = meta.get("high", _CEILING) if kind in (int, float) else None
    if high is not None and value > high:
        raise ConfigError(f"must be <= {high}, got {value!r}", key_path=key_path)
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"must be one of {', '.join(choices)}; got {value!r}", key_path=key_path)
    return value


#: Largest value of a numeric parameter without its own ``high``.
_CEILING = 10**8

_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def workload_class(name: str) -> type[Any]:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ConfigError(
            f"unknown workload {name!r}", hint=f"choose from: {', '.join(sorted(WORKLOADS))}"
        ) from None


def make_workload(name: str, params: dict[str, Any] | None = None) -> Any:
    """The workload ``name`` with ``params`` over its defaults (checked)."""
    cls = workload_class(name)
    valid = {f.name for f in fields(cls)}
    for key in params or {}:
        if key not in valid:
            raise ConfigError(
                "unknown parameter",
                key_path=f"{name}.{key}",
                hint=f"valid parameters: {', '.join(sorted(valid))}",
            )
    return cls(**(params or {}))


def parse_params(name: str, items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings (the CLI's ``--param``) as typed parameters of ``name``."""
    cls = workload_class(name)
    by_name = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", source="--param")
        f = by_name.get(key)
        if f is None:
            raise ConfigError(
                "unknown parameter",
                key_path=f"{name}.{key}",
                source="--param",
                hint=f"valid parameters: {', '.join(sorted(by_name))}",
            )
        kind = type(f.default)
        try:
            out[key] = kind(text.strip())
        except ValueError:
            raise ConfigError(
                f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {text!r}",
                key_path=f"{name}.{key}",
                source="--param",
            ) from None
    return out


def describe(name: str) -> list[tuple[str, Any, str]]:
    """``(parameter, default, help)`` for each parameter of workload ``name``."""
    return [
        (f.name, f.default, f.metadata.get("help", ""))
        for f in fields(workload_class(name))
        if f.default is not MISSING
    ]


# ---------------------------------------------------------------------------- context


class Context:
    """What the sessions of one ``generate`` call share: seeds, segments, prefix chains.

    Random streams and segment digests are derived from the seed and the workload's
    name, so a session's content depends on its index only, not on when it is
    scheduled. :meth:`prefix` keeps recently built shared prefixes (system prompts,
    tool definitions, document runs) so that only new blocks are hashed.
    """

    PREFIX_CACHE = 4096

    def __init__(
        self,
        workload: str,
        seed: int,
        tokens_per_block: int,
        namespace: str | None = None,
        key_mode: str = "fast",
    ) -> None:
        self.workload = workload
        self.seed = seed
        self.tokens_per_block = tokens_per_block
        self.namespace = namespace
        self.key_mode = key_mode
        self._salt = f"{seed}:{workload}:"
        self._root = BlockChain(tokens_per_block, namespace, key_mode)
        self._prefixes: OrderedDict[tuple[str, ...], BlockChain] = OrderedDict()

    def rng(self, *parts: object) -> random.Random:
        """An independent random stream named by ``parts`` (seeded from a string)."""
        return random.Random(self._salt + ":".join(map(str, parts)))

    def segment(self, ident: str, length: int) -> Segment:
        """Content named ``ident`` (unique within this workload and seed)."""
        digest = hashlib.blake2b((self._salt + ident).encode(), digest_size=16).digest()
        return Segment(ident, length, digest)

    def pool(self, kind: str, size: int, mean: float, sigma: float) -> list[Segment]:
        """``size`` shared segments ``<kind><i>`` with lognormal lengths."""
        rng = self.rng("pool", kind)
        return [self.segment(f"{kind}{i}", lognormal_int(rng, mean, sigma)) for i in range(size)]

    def empty(self) -> BlockChain:
        return self._root.copy()

    def prefix(self, segments: Sequence[Segment]) -> BlockChain:
        """The chain of ``segments`` from the start (shared: copy it before extending)."""
        idents = tuple(s.ident for s in segments)
        cache = self._prefixes
        chain = cache.get(idents)
        if chain is not None:
            cache.move_to_end(idents)
            return chain
        start = 0
        base = self._root
        for j in range(len(idents) - 1, 0, -1):
            hit = cache.get(idents[:j])
            if hit is not None:
                start, base = j, hit
                break
        for j in range(start, len(segments)):
            base = base.copy()
            base.append(segments[j])
            cache[idents[: j + 1]] = base
            if len(cache) > self.PREFIX_CACHE:
                cache.popitem(last=False)
        return base
