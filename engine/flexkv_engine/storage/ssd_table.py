"""The SSD tier's slot table: one record per block slot, to check every block read back
and to rebuild the tier's index after a restart.

The table is the file ``slots.bin`` in the first cache directory: a 64-byte header, then
record ``b`` for SSD block ``b`` at byte ``64 * (b + 1)``. It is mapped into memory
(``MAP_SHARED``), so storing a record is a memory write that the kernel keeps, and
writes back, even when the process is killed the next instant. Record (little-endian)::

     0   4  magic b"FKVB" (anything else: an empty slot)
     4   4  flags: 1 = keyed (key and parent are set: the block can be restored),
                   2 = has a parent (0 for the first block of a sequence)
     8   8  sequence number of the write (restore ranks blocks by it, oldest first)
    16  16  key (128 bits)
    32  16  parent key (the block before it in its sequence)
    48   4  crc32c of the block's ``stride`` bytes, as written
    52   4  stride
    56   4  reserved (0)
    60   4  crc32 (zlib) of bytes 0..59: a record torn by a kill does not verify

Protocol. Before a slot is written, its record is cleared; once the data write has
completed, the record is stored (the block is then marked ready). A process killed in
between leaves a cleared record: the blocks being written are lost, nothing else. A
read is checked against the record (key and crc32c) before its blocks are marked ready,
so a block that changed on disk is a miss, never wrong bytes. At start, the valid keyed
records of a reopened cache (block files that existed, long enough) are the blocks to
restore; the caller clears the rest (:meth:`SlotTable.keep_only`).

Records are not cleared on eviction: a slot evicted and not yet reused still holds its
block, with the right bytes for its key, so a restart may bring it back.

Ordering holds for a killed process, not for a power loss (no fsync between the data
and its record); after a crash of the machine, the checksums still turn a block whose
bytes did not reach the disk into a miss.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .ssd_files import SsdFiles

RECORD_SIZE = 64
_MAGIC = b"FKVB"
_HEADER_MAGIC = b"flexkv-slots-v1\0"
KEYED, HAS_PARENT = 1, 2
_RECORD = struct.Struct("<4sIQ16s16sIII")  # without the trailing crc
_FULL = struct.Struct("<4sIQ16s16sIIII")  # with it
_HEADER = struct.Struct("<16sQQ")  # magic, num_blocks, stride
_KEY_LIMIT = 1 << 128
_EMPTY = bytes(4)


class SlotRecord(NamedTuple):
    """A valid record: what SSD block ``slot`` holds."""

    slot: int
    seq: int
    key: int | None  # None when the block was stored without a key (not restorable)
    parent: int | None
    crc: int


class SlotTable:
    """The mapped ``slots.bin`` of one :class:`SsdFiles`. Build with :meth:`open`.

    :meth:`clear` and :meth:`store` may run on different threads for different slots (the
    index never lets two requests write, or read and write, one slot at a time).
    """

    def __init__(self, path: str, fd: int, mm: mmap.mmap, num_blocks: int, stride: int) -> None:
        self.path = path
        self._fd = fd
        self._mm = mm
        self.num_blocks = num_blocks
        self.stride = stride
        # The records as opened: what restorable() and keep_only() work on.
        self._opened = self.records()
        self._seq = itertools.count(max((r.seq for r in self._opened), default=0) + 1)
        self.closed = False

    @classmethod
    def open(cls, files: SsdFiles) -> SlotTable:
        """Open the table of ``files``, or start an empty one when it is missing, of
        another geometry, or the block files were not reopened (a new cache)."""
        path = files.slot_table_path
        size = RECORD_SIZE * (files.num_blocks + 1)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            header = os.pread(fd, _HEADER.size, 0)
            wanted = _HEADER.pack(_HEADER_MAGIC, files.num_blocks, files.stride)
            fresh = not files.reopened or header != wanted or os.fstat(fd).st_size != size
            if fresh:
                os.ftruncate(fd, 0)  # every record cleared
                os.ftruncate(fd, size)
                os.pwrite(fd, wanted, 0)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, mm, files.num_blocks, files.stride)

    # -- records ---------------------------------------------------------------------
    def clear(self, slots: Iterable[int]) -> None:
        """Mark ``slots`` empty (before their blocks are overwritten)."""
        mm = self._mm
        for slot in slots:
            start = RECORD_SIZE * (slot + 1)
            mm[start : start + 4] = _EMPTY

    def store(
        self,
        slots: Sequence[int],
        crcs: Sequence[int],
        keys: Sequence[int] = (),
        parent: int | None = None,
    ) -> None:
        """Record blocks just written: slot ``slots[i]`` holds the block of ``keys[i]``
        (whose predecessor is ``keys[i - 1]``, or ``parent`` for ``i == 0``) with checksum
        ``crcs[i]``. Without keys, or with a key outside 128 bits, the records only serve
        the checks on read (those blocks are not restored after a restart)."""
        mm = self._mm
        keyed = len(keys) == len(slots) and all(
            0 <= k < _KEY_LIMIT for k in (*keys, *(() if parent is None else (parent,)))
        )
        prev = parent
        for i, slot in enumerate(slots):
            key = keys[i] if keyed else None
            flags = (KEYED if keyed else 0) | (HAS_PARENT if keyed and prev is not None else 0)
            body = _RECORD.pack(
                _MAGIC,
                flags,
                next(self._seq),
                _key_bytes(key),
                _key_bytes(prev if keyed else None),
                crcs[i] & 0xFFFFFFFF,
                self.stride,
                0,
            )
            start = RECORD_SIZE * (slot + 1)
            mm[start : start + RECORD_SIZE] = body + struct.pack("<I", zlib.crc32(body))
            prev = key

    def get(self, slot: int) -> SlotRecord | None:
        """The valid record of ``slot``, or None (empty, torn, or of another stride)."""
        start = RECORD_SIZE * (slot + 1)
        raw = self._mm[start : start + RECORD_SIZE]
        if raw[:4] != _MAGIC:
            return None
        body, (check,) = raw[:60], struct.unpack_from("<I", raw, 60)
        if zlib.crc32(body) != check:
            return None
        _, flags, seq, key, parent, crc, stride, _ = _RECORD.unpack(body)
        if stride != self.stride:
            return None
        return SlotRecord(
            slot,
            seq,
            int.from_bytes(key, "little") if flags & KEYED else None,
            int.from_bytes(parent, "little") if flags & HAS_PARENT else None,
            crc,
        )

    def records(self) -> list[SlotRecord]:
        """Every valid record, in slot order (one pass over the table)."""
        out = []
        view = memoryview(self._mm)[RECORD_SIZE : RECORD_SIZE * (self.num_blocks + 1)]
        crc32, from_bytes = zlib.crc32, int.from_bytes
        try:
            for slot, fields in enumerate(_FULL.iter_unpack(view)):
                magic, flags, seq, key, parent, crc, stride, _, check = fields
                if magic != _MAGIC or stride != self.stride:
                    continue
                start = RECORD_SIZE * slot
                if crc32(view[start : start + 60]) != check:
                    continue
                out.append(SlotRecord(
                    slot,
                    seq,
                    from_bytes(key, "little") if flags & KEYED else None,
                    from_bytes(parent, "little") if flags & HAS_PARENT else None,
                    crc,
                ))  # fmt: skip
        finally:
            view.release()  # the map cannot be closed while a view is out
        return out

    def restorable(self, files: SsdFiles) -> list[tuple[int, int | None, int]]:
        """``(key, parent, slot)`` of the keyed records found when the table was opened
        whose bytes are still on disk (in a block file that existed when reopened, and
        long enough), oldest write first: the input of
        :meth:`flexkv_engine.core.index.TierIndex.restore`."""
        if not files.reopened:
            return []
        found, stride, nfiles = files.found_sizes, files.stride, files.nfiles
        keep = [
            r
            for r in self._opened
            if r.key is not None and (r.slot // nfiles + 1) * stride <= found[r.slot % nfiles]
        ]
        keep.sort(key=lambda r: r.seq)
        return [(r.key, r.parent, r.slot) for r in keep if r.key is not None]

    def keep_only(self, slots: Iterable[int]) -> int:
        """Clear every record found when the table was opened but those of ``slots``
        (what the index restored); returns how many were cleared. Call once, at start."""
        kept = set(slots)
        gone = [r.slot for r in self._opened if r.slot not in kept]
        self.clear(gone)
        self._opened = []
        return len(gone)

    def close(self) -> None:
        """Write the records back and unmap. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._mm.flush()
        self._mm.close()
        os.close(self._fd)

    def __enter__(self) -> SlotTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key_bytes(key: int | None) -> bytes:
    return bytes(16) if key is None else key.to_bytes(16, "little")
