"""Transfer graphs: what a GET, PUT or prefetch must move, and in which order.

A graph is a handful of ops (one per path and block range) with dependencies. The
planner builds it and holds the locks it needs; whoever moves the bytes (the engine's
workers, the twin's SimPy devices, or nobody in hit-rate mode) reports each op done or
failed through :meth:`flexkv_engine.core.planner.Planner.complete`, which marks written
blocks ready, and releases every lock once the last op has ended.

Block ranges are positions in the request's key list: op ``[start, end)`` moves blocks
``start .. end - 1`` of the request. Tier block ids are resolved on demand
(:meth:`Planner.block_ids`), since the twin never needs them.
"""

from __future__ import annotations

from .index import Node, TierIndex

PENDING, DONE, FAILED, CANCELLED = "pending", "done", "failed", "cancelled"


class TransferOp:
    """Move blocks ``[start, end)`` of a request along ``path`` once ``deps`` are done."""

    __slots__ = ("deps", "dst", "end", "op_id", "path", "src", "start", "status")

    def __init__(
        self,
        op_id: int,
        path: str,
        start: int,
        end: int,
        src: tuple[TierIndex, Node] | None,
        dst: tuple[TierIndex, Node] | None,
        deps: tuple[int, ...] = (),
    ) -> None:
        self.op_id = op_id
        self.path = path
        self.start = start
        self.end = end
        self.src = src  # (tier, path handle covering [start, end)); None for the GPU
        self.dst = dst  # (tier, node being written, or handle); None for the GPU
        self.deps = deps
        self.status = PENDING

    @property
    def blocks(self) -> int:
        return self.end - self.start

    def __repr__(self) -> str:
        return (
            f"TransferOp(#{self.op_id} {self.path} [{self.start},{self.end}) "
            f"deps={self.deps} {self.status})"
        )


class TransferGraph:
    """The ops of one GET, PUT or prefetch, and the bookkeeping to finish it."""

    __slots__ = (
        "done",
        "doomed",
        "gpu_blocks",
        "graph_id",
        "in_flight",
        "keys",
        "kind",
        "locks",
        "now",
        "num_tokens",
        "ops",
        "pending",
        "request_id",
        "served",
        "writers",
    )

    def __init__(
        self,
        graph_id: int,
        kind: str,
        request_id: str,
        keys: list[int],
        num_tokens: int,
        now: float,
    ) -> None:
        self.graph_id = graph_id
        self.kind = kind  # "get", "put" or "prefetch"
        self.request_id = request_id
        self.keys = keys
        self.num_tokens = num_tokens
        self.now = now
        self.ops: list[TransferOp] = []
        self.locks: list[tuple[TierIndex, Node]] = []  # path locks released at the end
        # Inserted node -> ops still writing into it; committed when that reaches zero.
        self.writers: dict[Node, int] = {}
        # Inserted nodes one of whose writers failed while others were still writing into
        # them: aborted when the last of those ends (None until a node needs it).
        self.doomed: set[Node] | None = None
        self.pending = 0
        self.done = False
        self.in_flight = False  # a GET stopped at blocks still being written
        self.gpu_blocks = 0  # blocks already in the serving engine's GPU prefix cache
        # GET/prefetch: tier -> (start, end) block range it serves (or stages).
        self.served: dict[str, tuple[int, int]] = {}

    def add(
        self,
        path: str,
        start: int,
        end: int,
        src: tuple[TierIndex, Node] | None,
        dst: tuple[TierIndex, Node] | None,
        deps: tuple[int, ...] = (),
    ) -> TransferOp:
        op = TransferOp(len(self.ops), path, start, end, src, dst, deps)
        self.ops.append(op)
        self.pending += 1
        if dst is not None and dst[1] in self.writers:
            self.writers[dst[1]] += 1
        return op

    def runnable(self) -> list[TransferOp]:
        """Pending ops whose dependencies are all done."""
        ops = self.ops
        return [
            op for op in ops if op.status == PENDING and all(ops[d].status == DONE for d in op.deps)
        ]

    def __repr__(self) -> str:
        return f"TransferGraph(#{self.graph_id} {self.kind} {self.request_id} {self.ops})"
