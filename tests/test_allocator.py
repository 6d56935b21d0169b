"""keep_freed_memory: glibc serves large tensors from the heap instead of a fresh mmap each, and an operator's own
allocator choice stands. Each case runs in a process of its own: the setting is process-wide."""

import ctypes
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc >= 2.33 only (mallinfo2)",
)

# Allocates a 64 MiB tensor and reports how many bytes glibc holds in mmapped blocks while it lives.
CHILD = """
import ctypes, json, torch
from genprint.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks \
fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.ones(64 << 20, dtype=torch.uint8)
print(json.dumps({"applied": applied, "mmapped": libc.mallinfo2().hblkhd - before}))
"""


def run_child(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env={**base, **env}, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_large_tensors_come_from_the_heap_once_applied():
    report = run_child()
    assert report["applied"] is True
    assert report["mmapped"] == 0


def test_an_operators_malloc_setting_stands():
    report = run_child(MALLOC_ARENA_MAX="2")
    assert report["applied"] is False
    assert report["mmapped"] >= 64 << 20  # glibc's default: a block this large is mmapped
