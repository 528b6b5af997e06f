"""Synthetic prefix structure for traces that record only lengths (the Azure traces).

A request's prompt is modelled as a sequence of *segments*, runs of tokens with an id:
a shared system prompt, the new input of one request, the output of one request. Block
``i``'s key is a 128-bit blake2b hash of block ``i - 1``'s key and the pieces of
segments that block ``i`` holds, so equal segment sequences give equal chained keys and
the cost is one hash per block, not per token.

Two models, both deterministic for a given seed and the same rows in the same order:

``system-prompts``
    Each request draws one of ``num_prompts`` shared system prompts, with Zipf
    popularity (rank ``k`` has weight ``1 / (k + 1) ** zipf_s``). Prompt lengths are
    drawn once, uniformly in ``[prompt_tokens_min, prompt_tokens_max]``. The first
    ``min(prompt length, context)`` tokens of the request are the prompt, the rest are
    unique to the request. ``num_prompts=0`` makes every request unique.
``multi-turn``
    Conversations: with probability ``continue_prob`` a request picks one of the last
    ``open_conversations`` conversations at random and, if that conversation's context
    plus its last output fits in the request's context, continues it (its prompt is the
    whole conversation so far, then new input); otherwise it starts a new conversation
    with a system prompt drawn as above.

The defaults below are assumptions for demos and what-if studies, not measurements.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from ...core.keys import namespace_root
from ..fields import MAX_COUNT

NUM_PROMPTS = 64
ZIPF_S = 1.0
PROMPT_TOKENS_MIN = 128
PROMPT_TOKENS_MAX = 1024
CONTINUE_PROB = 0.5
OPEN_CONVERSATIONS = 256

_ROOT = namespace_root("flexkv-twin:synthetic-prefix").to_bytes(16, "little")
# Segment ids: system prompt p is p; request r's new input 2*r + _ROWS, its output + 1.
_ROWS = 1 << 40
_PACK3 = struct.Struct("<3q").pack

Segment = tuple[int, int]  # (segment id, tokens)


def extend_keys(
    keys: list[int], segments: list[Segment], num_tokens: int, block_size: int
) -> list[int]:
    """Append the keys of the blocks after ``keys`` of the tokens made of ``segments``.

    ``keys`` must be the keys of the sequence's leading blocks (full ones); segments
    have positive lengths summing to at least ``num_tokens``. Returns ``keys``.
    """
    block = len(keys)
    prev = keys[-1].to_bytes(16, "little") if keys else _ROOT
    seg, seg_start = 0, 0
    while seg < len(segments) and seg_start + segments[seg][1] <= block * block_size:
        seg_start += segments[seg][1]
        seg += 1
    blake2b, append, pack3 = hashlib.blake2b, keys.append, _PACK3
    lo = block * block_size
    while lo < num_tokens:
        sid, length = segments[seg]
        seg_end = seg_start + length
        run = (min(seg_end, num_tokens) - lo) // block_size
        if run:  # whole blocks inside one segment: the common case, kept tight
            start = lo - seg_start
            for off in range(start, start + run * block_size, block_size):
                prev = blake2b(prev + pack3(sid, off, off + block_size), digest_size=16).digest()
                append(int.from_bytes(prev, "little"))
            lo += run * block_size
            if lo == seg_end:
                seg, seg_start = seg + 1, seg_end
            continue
        hi = min(lo + block_size, num_tokens)
        pieces: list[int] = []
        while lo < hi:  # a block across segments, or a partial last block
            sid, length = segments[seg]
            end = min(hi, seg_start + length)
            pieces += (sid, lo - seg_start, end - seg_start)
            lo = end
            if end == seg_start + length:
                seg_start += length
                seg += 1
        prev = blake2b(prev + struct.pack(f"<{len(pieces)}q", *pieces), digest_size=16).digest()
        append(int.from_bytes(prev, "little"))
    return keys


def _check_int(params: dict[str, Any], name: str, lo: int, hi: int = MAX_COUNT) -> int:
    value = params[name]
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"prefix model parameter {name} must be an integer in [{lo}, {hi}]")
    return value


def _check_float(params: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = params[name]
    if type(value) not in (int, float) or not lo <= value <= hi:
        raise ValueError(f"prefix model parameter {name} must be a number in [{lo}, {hi}]")
    return float(value)


class SystemPrompts:
    """Shared system prompts with Zipf popularity (see the module docstring)."""

    name = "system-prompts"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "num_prompts": NUM_PROMPTS,
        "zipf_s": ZIPF_S,
        "prompt_tokens_min": PROMPT_TOKENS_MIN,
        "prompt_tokens_max": PROMPT_TOKENS_MAX,
    }

    def __init__(self, block_size: int, seed: int, params: dict[str, Any]) -> None:
        self.block_size = block_size
        self.seed = seed
        self.params = {**self.DEFAULTS, **params}
        self._check()
        p = self.params
        self.rng = random.Random(seed)
        self.prompt_tokens = [
            self.rng.randint(p["prompt_tokens_min"], p["prompt_tokens_max"])
            for _ in range(p["num_prompts"])
        ]
        weights = (1.0 / (k + 1) ** p["zipf_s"] for k in range(p["num_prompts"]))
        self._cumulative = list(itertools.accumulate(weights))
        self._prompt_keys: dict[int, list[int]] = {}

    def _check(self) -> None:
        _check_int(self.params, "num_prompts", 0, 10**6)
        _check_float(self.params, "zipf_s", 0.0, 100.0)
        lo = _check_int(self.params, "prompt_tokens_min", 0)
        _check_int(self.params, "prompt_tokens_max", lo)

    def describe(self) -> dict[str, Any]:
        """The model's name, seed and parameters (for the trace header's meta)."""
        return {"name": self.name, "seed": self.seed, **self.params}

    def _full_prompt_keys(self, prompt: int) -> list[int]:
        keys = self._prompt_keys.get(prompt)
        if keys is None:
            length = self.prompt_tokens[prompt] // self.block_size * self.block_size
            keys = extend_keys([], [(prompt, length)], length, self.block_size) if length else []
            self._prompt_keys[prompt] = keys
        return keys

    def _start(self, row: int, num_tokens: int) -> tuple[list[Segment], list[int]]:
        """Segments and keys of a request that starts a conversation."""
        segments: list[Segment] = []
        keys: list[int] = []
        shared = 0
        if self._cumulative:
            draw = self.rng.random() * self._cumulative[-1]
            prompt = min(bisect.bisect_right(self._cumulative, draw), len(self._cumulative) - 1)
            shared = min(self.prompt_tokens[prompt], num_tokens)
            if shared:
                segments.append((prompt, shared))
                keys = self._full_prompt_keys(prompt)[: shared // self.block_size]
        if num_tokens > shared:
            segments.append((_ROWS + 2 * row, num_tokens - shared))
        return segments, extend_keys(keys, segments, num_tokens, self.block_size)

    def keys(self, row: int, num_tokens: int, output_tokens: int) -> list[int]:
        """Chained block keys of request ``row`` (unique per request, e.g. its line)."""
        return self._start(row, num_tokens)[1]


@dataclass
class _Conversation:
    segments: list[Segment]  # the last request's prompt, exactly its context
    context: int
    keys: list[int]
    row: int
    output: int


class MultiTurn(SystemPrompts):
    """Conversations that continue earlier requests (see the module docstring)."""

    name = "multi-turn"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **SystemPrompts.DEFAULTS,
        "continue_prob": CONTINUE_PROB,
        "open_conversations": OPEN_CONVERSATIONS,
    }

    def __init__(self, block_size: int, seed: int, params: dict[str, Any]) -> None:
        super().__init__(block_size, seed, params)
        self._open: list[_Conversation] = []

    def _check(self) -> None:
        super()._check()
        _check_float(self.params, "continue_prob", 0.0, 1.0)
        _check_int(self.params, "open_conversations", 1, 10**6)

    def keys(self, row: int, num_tokens: int, output_tokens: int) -> list[int]:
        conversations = self._open
        if conversations and self.rng.random() < self.params["continue_prob"]:
            i = self.rng.randrange(len(conversations))
            c = conversations[i]
            history = c.context + c.output
            if history <= num_tokens:
                segments = list(c.segments)
                if c.output:
                    segments.append((_ROWS + 2 * c.row + 1, c.output))
                if num_tokens > history:
                    segments.append((_ROWS + 2 * row, num_tokens - history))
                keys = c.keys[: c.context // self.block_size]
                extend_keys(keys, segments, num_tokens, self.block_size)
                conversations[i] = _Conversation(segments, num_tokens, keys, row, output_tokens)
                return keys
        segments, keys = self._start(row, num_tokens)
        conversations.append(_Conversation(segments, num_tokens, keys, row, output_tokens))
        if len(conversations) > self.params["open_conversations"]:
            del conversations[0]
        return keys


MODELS: dict[str, type[SystemPrompts]] = {m.name: m for m in (SystemPrompts, MultiTurn)}


def make_model(name: str, block_size: int, seed: int, params: dict[str, Any]) -> SystemPrompts:
    """A fresh prefix model; ValueError for an unknown name, parameter or value."""
    model = MODELS.get(name)
    if model is None:
        raise ValueError(f"unknown prefix model {name!r}; choose from: {', '.join(MODELS)}")
    unknown = sorted(set(params) - set(model.DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for prefix model {name!r}; "
            f"it takes: {', '.join(model.DEFAULTS)}"
        )
    if type(seed) is not int:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return model(block_size, seed, params)
