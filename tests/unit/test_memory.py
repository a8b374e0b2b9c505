"""Freed memory goes back to the system (trainer.memory), in a child process: malloc's settings are process-wide."""

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    from trainer.memory import keep_less_freed_memory, release_freed_memory

    def resident_mib():
        with open("/proc/self/status") as status:
            return int(dict(line.split(":", 1) for line in status)["VmRSS"].split()[0]) // 1024

    print(keep_less_freed_memory(), keep_less_freed_memory())
    blocks = [bytearray(256 << 10) for _ in range(800)]  # 200 MiB of blocks below the mmap threshold
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    pinned = blocks[::50]  # a few stay alive, so the heap cannot simply shrink from its top
    del blocks
    before = resident_mib()
    release_freed_memory()
    print(before, resident_mib())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim and mallopt are glibc's")
def test_freed_heap_blocks_are_returned_to_the_system_once_released():
    output = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    settings, figures = output.splitlines()
    assert settings == "True True"  # set, and setting it again is harmless
    before, after = map(int, figures.split())
    assert before > 150, f"the freed blocks should still be resident before the release ({before} MiB)"
    assert after < before - 100, f"{before} MiB resident before the release, {after} MiB after"
