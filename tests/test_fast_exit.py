"""yt8m.fast_exit: a process with a large heap exits without the final garbage collection, and nothing
else about its exit changes (other exit handlers run, the exit status is kept)."""

import subprocess
import sys
import time

CHILD = """
import atexit, sys, time
from yt8m import fast_exit
atexit.register(lambda: open(sys.argv[1], "w").write("flushed"))  # registered first: runs last
if sys.argv[2] == "fast":
    fast_exit.skip_final_garbage_collection()
class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the collector frees it (TensorFlow's import leaves many)
heap = [Node() for _ in range(500_000)]
print(time.time(), flush=True)
sys.exit(3)
"""


def _exit_seconds(tmp_path, mode: str) -> float:
    marker = tmp_path / f"{mode}.txt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), mode], stdout=subprocess.PIPE, text=True)
    last_line = float(proc.stdout.readline())
    assert proc.wait() == 3  # the exit status is the program's
    ended = time.time()
    assert marker.read_text() == "flushed"  # exit handlers registered before still run
    return ended - last_line


def test_skipping_the_final_collection_keeps_exit_handlers_and_status_and_exits_sooner(tmp_path):
    slow, fast = _exit_seconds(tmp_path, "slow"), _exit_seconds(tmp_path, "fast")
    assert fast < slow / 3, (fast, slow)
