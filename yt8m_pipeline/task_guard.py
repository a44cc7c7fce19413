"""``python -m yt8m_pipeline.task_guard PARENT_PID COMMAND...``: run COMMAND so that it dies with PARENT_PID.

The guard asks the kernel (Linux ``PR_SET_PDEATHSIG``) for SIGTERM when the thread that started
it exits, which happens however that process ends, SIGKILL included. It runs COMMAND as the
leader of a new process group and, on that signal (or SIGINT/SIGTERM from anyone), kills the
whole group: the kfp task is ``sh -ec '... python3 -m kfp.dsl.executor_main ...'``, so the
work happens in a grandchild that a signal to ``sh`` alone would leave running. A local
pipeline task therefore never outlives ``yt8m run --local`` (an orphan would go on and publish).
Elsewhere (no prctl) only the signal forwarding applies. The guard exits with COMMAND's status.
"""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def _arm_parent_death_signal() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            sys.exit(f"task_guard: prctl failed (errno {ctypes.get_errno()})")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit("usage: python -m yt8m_pipeline.task_guard PARENT_PID COMMAND...")
    parent, command = int(argv[0]), argv[1:]
    _arm_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the guard was armed
        sys.exit(f"task_guard: parent {parent} is gone; not starting the task")
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    child = None

    def stop(signum, _frame):
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(128 + signum)

    for signum in signals:
        signal.signal(signum, stop)
    # Signals wait until the child is known (the guard has no threads, so preexec_fn is safe here).
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    child = subprocess.Popen(command, start_new_session=True,
                             preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, signals))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
