"""``multiturn``: chat sessions with shared system prompts and growing conversations.

A session picks a system prompt from a small shared pool (Zipf popularity). Turn 1's
prompt is the system prompt and a user message; turn ``k``'s prompt is turn ``k-1``'s
prompt, the answer to it (``k-1``'s ``output_tokens``) and a new user message. Sessions
interleave; a user waits an exponential think time after each request.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from .keys import BlockChain
from .registry import Context, Params, Turn, param, register
from .sampling import Zipf, geometric, lognormal_int


@register
@dataclass(frozen=True)
class MultiTurn(Params):
    """Chat sessions: system prompt + alternating user messages and answers."""

    name: ClassVar[str] = "multiturn"
    id_prefix: ClassVar[str] = "c"

    system_prompts: int = param(8, "distinct shared system prompts", low=1, high=10**6)
    system_zipf: float = param(1.0, "Zipf exponent of system prompt popularity (0: uniform)", low=0)
    system_tokens: float = param(1024.0, "mean system prompt length (lognormal)", low=0, above=True)
    system_sigma: float = param(0.4, "log-sigma of system prompt length", low=0)
    user_tokens: float = param(160.0, "mean user message length (lognormal)", low=0, above=True)
    user_sigma: float = param(1.0, "log-sigma of user message length", low=0)
    answer_tokens: float = param(
        320.0, "mean answer length = output_tokens (lognormal)", low=0, above=True
    )
    answer_sigma: float = param(0.7, "log-sigma of answer length", low=0)
    turns: float = param(5.0, "mean turns per session (geometric, at least 1)", low=1)
    max_turns: int = param(40, "most turns of a session", low=1)
    think_time: float = param(
        20.0, "mean seconds between a session's requests (exponential)", low=0, above=True
    )
    max_context: int = param(
        32768, "a session ends before a prompt longer than this (the first turn always runs)", low=1
    )

    def sessions(self, ctx: Context) -> Iterator[Iterator[Turn]]:
        systems = ctx.pool("sys", self.system_prompts, self.system_tokens, self.system_sigma)
        popularity = Zipf(self.system_prompts, self.system_zipf)
        index = 0
        while True:
            rng = ctx.rng("session", index)
            system = systems[popularity.sample(rng)]
            yield self._session(ctx, rng, index, ctx.prefix((system,)))
            index += 1

    def _session(
        self, ctx: Context, rng: random.Random, index: int, start: BlockChain
    ) -> Iterator[Turn]:
        turns = geometric(rng, self.turns, self.max_turns)
        cap = self.max_context
        chain = start.copy()
        answer = None
        for k in range(turns):
            user = ctx.segment(
                f"c{index}u{k}", lognormal_int(rng, self.user_tokens, self.user_sigma, cap)
            )
            if answer is not None:
                if chain.num_tokens + answer.length + user.length > cap:
                    return
                chain.append(answer)
            chain.append(user)
            answer = ctx.segment(
                f"c{index}a{k}", lognormal_int(rng, self.answer_tokens, self.answer_sigma, cap)
            )
            last = k == turns - 1
            think = None if last else rng.expovariate(1.0 / self.think_time)
            yield Turn(chain.num_tokens, chain.request_keys(), answer.length, think)
