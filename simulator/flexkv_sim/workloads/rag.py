"""``rag``: retrieval-augmented queries over a shared document pool.

Each request is independent: a shared system prompt, ``top_k`` documents drawn from the
pool by Zipf popularity (distinct, in retrieval order) and a new question. A prefix is
shared only up to the first document that differs, so reuse comes from the system
prompt and from popular documents retrieved first; ``doc_order=popularity`` sorts the
retrieved documents most popular first (a common trick to raise prefix reuse).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from .registry import Context, Params, Turn, param, register
from .sampling import Zipf, lognormal_int

DOC_ORDERS = ("retrieval", "popularity")


@register
@dataclass(frozen=True)
class Rag(Params):
    """RAG queries: system prompt + retrieved documents + question."""

    name: ClassVar[str] = "rag"
    id_prefix: ClassVar[str] = "q"

    system_tokens: float = param(400.0, "system prompt length (lognormal mean)", low=0, above=True)
    system_sigma: float = param(0.0, "log-sigma of system prompt length (one prompt)", low=0)
    documents: int = param(2000, "documents in the shared pool", low=1, high=10**6)
    doc_zipf: float = param(1.0, "Zipf exponent of document popularity (0: uniform)", low=0)
    doc_tokens: float = param(512.0, "mean document (chunk) length (lognormal)", low=0, above=True)
    doc_sigma: float = param(0.4, "log-sigma of document length", low=0)
    top_k: int = param(4, "documents per prompt", low=1)
    doc_order: str = param("retrieval", "order of documents in the prompt", choices=DOC_ORDERS)
    question_tokens: float = param(64.0, "mean question length (lognormal)", low=0, above=True)
    question_sigma: float = param(0.6, "log-sigma of question length", low=0)
    answer_tokens: float = param(
        256.0, "mean answer length = output_tokens (lognormal)", low=0, above=True
    )
    answer_sigma: float = param(0.7, "log-sigma of answer length", low=0)

    def check(self) -> None:
        if self.top_k > self.documents:
            raise self.bad("top_k", f"must be <= documents ({self.documents}), got {self.top_k}")

    def sessions(self, ctx: Context) -> Iterator[Iterator[Turn]]:
        (system,) = ctx.pool("sys", 1, self.system_tokens, self.system_sigma)
        docs = ctx.pool("doc", self.documents, self.doc_tokens, self.doc_sigma)
        popularity = Zipf(self.documents, self.doc_zipf)
        # Queries are independent and each is used at once, so one stream serves them all.
        rng = ctx.rng("queries")
        index = 0
        while True:
            ranks = popularity.sample_distinct(rng, self.top_k)
            if self.doc_order == "popularity":
                ranks.sort()
            chain = ctx.prefix((system, *(docs[r] for r in ranks))).copy()
            chain.append(
                ctx.segment(
                    f"q{index}", lognormal_int(rng, self.question_tokens, self.question_sigma)
                )
            )
            output = lognormal_int(rng, self.answer_tokens, self.answer_sigma)
            yield iter((Turn(chain.num_tokens, chain.request_keys(), output, None),))
            index += 1
