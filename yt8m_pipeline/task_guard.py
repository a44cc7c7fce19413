"""``python -m yt8m_pipeline.task_guard PARENT_PID COMMAND...``: exec COMMAND so that it dies with PARENT_PID.

Linux's ``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to this process when the thread that
started it exits, which survives ``exec``: a local pipeline task cannot outlive ``yt8m run --local``,
even when that process is killed with SIGKILL (an orphaned task would otherwise go on and publish).
Elsewhere (no prctl) the command runs unguarded.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m yt8m_pipeline.task_guard PARENT_PID COMMAND...")
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            sys.exit(f"task_guard: prctl failed (errno {ctypes.get_errno()})")
    if os.getppid() != parent:  # the parent died before the guard was armed
        sys.exit(f"task_guard: parent {parent} is gone; not starting the task")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
