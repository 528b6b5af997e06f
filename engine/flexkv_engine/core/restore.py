"""What an index rebuilds from stored blocks after a restart (``TierIndex.restore``).

Shared by the Python index and the native one (:mod:`.native_index`), so both build the
same nodes from the same entries.
"""

from __future__ import annotations

from collections.abc import Iterable

RestoreRun = tuple[int, list[int], list[int], int]


def restore_runs(entries: Iterable[tuple[int, int | None, int]], capacity: int) -> list[RestoreRun]:
    """The nodes :meth:`TierIndex.restore` builds from ``entries``, parents first.

    Each run is ``(index of its parent run or -1 for the root, keys, block ids, order of
    its newest entry)``: one node per chain of blocks until the chain branches or ends.
    Skipped: a block whose parent is not restored, an id out of ``range(capacity)``, and
    an entry whose key or id a later entry uses again.
    """
    by_key: dict[int, tuple[int | None, int, int]] = {}  # key -> (parent, id, order)
    owner: dict[int, int] = {}  # id -> key of the latest entry using it
    for order, (key, parent, block) in enumerate(entries):
        if not 0 <= block < capacity:
            continue
        old = by_key.get(key)
        if old is not None and owner.get(old[1]) == key:
            del owner[old[1]]
        stale = owner.get(block)
        if stale is not None:
            del by_key[stale]
        by_key[key] = (parent, block, order)
        owner[block] = key
    kids: dict[int | None, list[int]] = {}
    for key, (parent, _, _) in by_key.items():
        kids.setdefault(parent, []).append(key)
    runs: list[RestoreRun] = []
    stack: list[tuple[int, int]] = [(-1, k) for k in kids.get(None, ())]
    while stack:
        above, key = stack.pop()
        keys, ids, newest = [key], [by_key[key][1]], by_key[key][2]
        while len(kids.get(key, ())) == 1:  # one run until the chain branches or ends
            key = kids[key][0]
            keys.append(key)
            ids.append(by_key[key][1])
            newest = max(newest, by_key[key][2])
        runs.append((above, keys, ids, newest))
        here = len(runs) - 1
        stack.extend((here, k) for k in kids.get(key, ()))
    return runs
