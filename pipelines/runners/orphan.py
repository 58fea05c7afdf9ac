"""Child processes end when their parent dies: a driver killed with SIGKILL leaves no idle workers.

`die_with_parent()` is called first thing in every process we start (pool workers, the extractor):
a daemon thread polls the parent pid and exits when the process is orphaned. With `kernel=True`
Linux also delivers SIGKILL at once (prctl PR_SET_PDEATHSIG), which reaches a process stuck in C
code too; it fires when the *thread* that started the process ends, so only use it where that
thread lives as long as the parent (not for pools whose workers are started from helper threads).
"""

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def die_with_parent(kernel: bool = False) -> None:
    parent = os.getppid()
    if kernel and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or parent == 1:  # the parent is already gone
        os._exit(1)

    def watch():
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
