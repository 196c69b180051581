"""The C heap during a loop of same-sized batches (glibc only; elsewhere nothing is done).

glibc serves allocations above a moving threshold with fresh ``mmap`` pages and gives small
freed chunks back as soon as the top of the heap is free, so every batch's tensors were
page-faulted in again (vt-embed, 480 clips of the tiny model: 590k minor faults, 3.3 s of
system time), while a heap left alone fragments and its peak creeps up with the number of
clips. The policy: batch-sized buffers come from the heap and are reused (mmap threshold at
glibc's 32 MiB maximum, no automatic trimming), and :meth:`Heap.batch_done` trims explicitly
every few batches, which keeps the peak flat in the number of clips.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20                      # glibc's largest accepted value on 64-bit
TRIM_EVERY = 8                                 # batches between explicit trims


class Heap:
    def __init__(self, trim_every: int = TRIM_EVERY):
        self.trim_every, self.batches = trim_every, 0
        self._trim = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt, self._trim = libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):    # not glibc: its own policy stands
            return
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, 1 << 30)

    def batch_done(self) -> None:
        self.batches += 1
        if self._trim is not None and self.batches % self.trim_every == 0:
            self._trim(0)
