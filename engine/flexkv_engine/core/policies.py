"""Eviction policies: one registry, one contract.

A policy maps a node's access state to an eviction priority; the index evicts the
evictable leaf with the *smallest* priority first. Policies never read a clock or a
config: the index stamps ``last`` (time of the last access, ``now`` passed in by the
caller), ``seq`` (a per-index access counter, deepest block of a request first),
``hits`` (GET matches), ``created`` and ``cseq`` (insertion time and order), and the
policy only combines them. Parameters are fixed at construction.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol


class AccessState(Protocol):
    """What a policy may read of a node (see :class:`flexkv_engine.core.index.Node`)."""

    last: float
    seq: int
    hits: int
    created: float
    cseq: int


Priority = tuple[float, ...]


class EvictionPolicy:
    """Base class: subclasses set ``name`` and implement :meth:`priority`.

    A policy with parameters names them in ``params``: ``cache_config`` keys, passed to
    its constructor as keyword arguments of the same names (:func:`make_policy`).
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    #: True when a node's priority never decreases as it is accessed (LRU, LFU, ...):
    #: the index may then re-queue touched nodes lazily, when they reach the heap top.
    monotone: ClassVar[bool] = True

    def priority(self, node: AccessState) -> Priority:
        """Smaller priorities are evicted first; ``seq``/``cseq`` are unique, so no ties."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class LRU(EvictionPolicy):
    """Least recently used, with FlexKV's ``hit_reward_seconds``.

    Each GET hit adds ``hit_reward_seconds`` to the node's effective access time
    (stackable), so often-hit prefixes survive longer. 0 gives plain LRU.
    """

    name = "lru"
    params = ("hit_reward_seconds",)

    def __init__(self, hit_reward_seconds: float = 0.0) -> None:
        if hit_reward_seconds < 0:
            raise ValueError(f"hit_reward_seconds must be >= 0, got {hit_reward_seconds}")
        self.hit_reward_seconds = float(hit_reward_seconds)

    def priority(self, node: AccessState) -> Priority:
        return (node.last + self.hit_reward_seconds * node.hits, node.seq)


class LFU(EvictionPolicy):
    """Fewest GET hits first; ties broken by least recent access."""

    name = "lfu"

    def priority(self, node: AccessState) -> Priority:
        return (node.hits, node.last, node.seq)


class SLRU(EvictionPolicy):
    """Segmented LRU: nodes hit ``protected_threshold`` times or more are protected.

    Probationary nodes are evicted first, each segment in LRU order.
    """

    name = "slru"
    params = ("slru_protected_threshold",)

    def __init__(self, slru_protected_threshold: int = 2) -> None:
        if slru_protected_threshold < 1:
            raise ValueError(
                f"slru_protected_threshold must be >= 1, got {slru_protected_threshold}")
        self.protected_threshold = int(slru_protected_threshold)

    def priority(self, node: AccessState) -> Priority:
        return (1 if node.hits >= self.protected_threshold else 0, node.last, node.seq)


class FIFO(EvictionPolicy):
    """Oldest insertion first, whatever the accesses."""

    name = "fifo"

    def priority(self, node: AccessState) -> Priority:
        return (node.created, node.cseq)


class MRU(EvictionPolicy):
    """Most recently accessed first (the reverse of LRU)."""

    name = "mru"
    monotone = False

    def priority(self, node: AccessState) -> Priority:
        return (-node.last, -node.seq)


class FILO(EvictionPolicy):
    """Newest insertion first (the reverse of FIFO)."""

    name = "filo"

    def priority(self, node: AccessState) -> Priority:
        return (-node.created, -node.cseq)


POLICIES: dict[str, type[EvictionPolicy]] = {
    cls.name: cls for cls in (LRU, LFU, SLRU, FIFO, MRU, FILO)
}


def policy_params() -> tuple[str, ...]:
    """Every parameter some registered policy takes (``cache_config`` keys)."""
    return tuple(sorted({p for cls in POLICIES.values() for p in cls.params}))


def make_policy(name: str, **settings: Any) -> EvictionPolicy:
    """Build the policy registered as ``name``.

    ``settings``: ``cache_config`` values by key; the policy gets those it names in its
    ``params``, and the others are not its business.
    """
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(
            f"unknown eviction_policy {name!r}; choose from: {', '.join(sorted(POLICIES))}"
        )
    return cls(**{key: settings[key] for key in cls.params if key in settings})
