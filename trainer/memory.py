"""Give freed memory back to the system, so an attempt's peak is what it holds, not what it once held.

glibc's malloc keeps freed memory for the process: large blocks land on its heaps once it has raised
its mmap threshold to their size, and each of up to 8 x cores arenas keeps its own free pages, so a
frame freed before training still counts in the attempt's resident memory. Arrow's pool (mimalloc)
keeps freed pages for Arrow alone. With both, one attempt on 3M rows peaked at 1.09 GiB against 1.22 GiB
without, training as fast (bench/bench_scale.py, same run; bench/README.md "Data size"). Linux with glibc
only; elsewhere these do nothing. No TensorFlow import here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

import pyarrow as pa

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20
"""Blocks from 1 MiB up are mapped on their own and unmapped when freed (a fixed threshold also stops
glibc raising it to the largest block freed so far, which sends later blocks to the heaps)."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@functools.cache
def keep_less_freed_memory() -> bool:
    """Set malloc to keep less freed memory (once per process; it is process-wide): large blocks
    mapped on their own, one arena per core. True where it was set."""
    libc = _glibc()
    if libc is None:
        return False
    arenas = max(2, os.cpu_count() or 2)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_freed_memory() -> None:
    """Hand the pages Arrow's pool and malloc's heaps hold free back to the system (after a large
    frame is dropped: mimalloc keeps Arrow's for Arrow alone, so TensorFlow could not reuse them)."""
    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
