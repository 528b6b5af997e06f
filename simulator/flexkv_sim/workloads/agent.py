"""``agent``: tool-using agent loops whose contexts grow to tens of thousands of tokens.

A task picks an agent (a shared tool-definition prefix, Zipf popularity) and starts
with the tool definitions and a task instruction. Each step's prompt is the previous
step's prompt, the model's action (the previous step's ``output_tokens``) and the
tool's output. Between steps the tool runs for an exponential time; tasks interleave.
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
class Agent(Params):
    """Agent tasks: tool definitions + instruction, then (action, tool output) per step."""

    name: ClassVar[str] = "agent"
    id_prefix: ClassVar[str] = "a"

    agents: int = param(4, "distinct agents, each with its own tool definitions", low=1, high=10**6)
    agent_zipf: float = param(1.0, "Zipf exponent of agent popularity (0: uniform)", low=0)
    tools_tokens: float = param(
        6000.0, "mean tool-definition prefix length (lognormal)", low=0, above=True
    )
    tools_sigma: float = param(0.3, "log-sigma of tool-definition length", low=0)
    task_tokens: float = param(400.0, "mean task instruction length (lognormal)", low=0, above=True)
    task_sigma: float = param(0.8, "log-sigma of task instruction length", low=0)
    action_tokens: float = param(
        150.0, "mean action length = output_tokens (lognormal)", low=0, above=True
    )
    action_sigma: float = param(0.6, "log-sigma of action length", low=0)
    observation_tokens: float = param(
        1200.0, "mean tool output length (lognormal)", low=0, above=True
    )
    observation_sigma: float = param(1.0, "log-sigma of tool output length", low=0)
    steps: float = param(25.0, "mean steps (requests) per task (geometric, at least 1)", low=1)
    max_steps: int = param(150, "most steps of a task", low=1)
    step_time: float = param(
        4.0, "mean seconds between a task's requests (exponential)", low=0, above=True
    )
    max_context: int = param(
        131072, "a task ends before a prompt longer than this (the first step always runs)", low=1
    )

    def sessions(self, ctx: Context) -> Iterator[Iterator[Turn]]:
        tools = ctx.pool("tools", self.agents, self.tools_tokens, self.tools_sigma)
        popularity = Zipf(self.agents, self.agent_zipf)
        index = 0
        while True:
            rng = ctx.rng("task", index)
            prefix = ctx.prefix((tools[popularity.sample(rng)],))
            yield self._task(ctx, rng, index, prefix)
            index += 1

    def _task(
        self, ctx: Context, rng: random.Random, index: int, start: BlockChain
    ) -> Iterator[Turn]:
        steps = geometric(rng, self.steps, self.max_steps)
        cap = self.max_context
        chain = start.copy()
        chain.append(
            ctx.segment(f"a{index}task", lognormal_int(rng, self.task_tokens, self.task_sigma, cap))
        )
        output = 0  # the previous step's action length
        for k in range(steps):
            if k:
                action = ctx.segment(f"a{index}act{k - 1}", output)
                observation = ctx.segment(
                    f"a{index}obs{k - 1}",
                    lognormal_int(rng, self.observation_tokens, self.observation_sigma, cap),
                )
                if chain.num_tokens + action.length + observation.length > cap:
                    return
                chain.append(action)
                chain.append(observation)
            output = lognormal_int(rng, self.action_tokens, self.action_sigma, cap)
            think = None if k == steps - 1 else rng.expovariate(1.0 / self.step_time)
            yield Turn(chain.num_tokens, chain.request_keys(), output, think)
