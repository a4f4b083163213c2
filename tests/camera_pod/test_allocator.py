"""A camera pod limits glibc's malloc arenas (one per allocating thread by default) unless its environment says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Eight threads allocate at once, then glibc prints one "Arena N:" block per arena to stderr.
PROGRAM = """
import ctypes, sys, threading
sys.path.append(sys.argv[1])
from camera_pod import allocator
print(allocator.limit_arenas() if sys.argv[2] == "limit" else None, flush=True)
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    kept = [bytearray(1000) for _ in range(100)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str, **environment: str) -> tuple[str, int]:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"} | environment
    done = subprocess.run([sys.executable, "-P", "-c", PROGRAM, str(REPO), mode], capture_output=True, text=True,
                          timeout=60, check=True, env=env)
    return done.stdout.strip(), sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_two_arenas_instead_of_one_per_thread() -> None:
    printed, found = arenas("none")
    assert printed == "None" and found > 2  # the main thread's and one per thread (up to 8 per core)
    assert arenas("limit") == ("True", 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_environment_wins() -> None:
    assert arenas("limit", MALLOC_ARENA_MAX="4") == ("False", 4)
