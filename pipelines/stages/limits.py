"""A per-document wall-clock limit, so one pathological page cannot hang a worker."""

import contextlib
import signal
import threading


class DocumentTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raises DocumentTimeout after `seconds`. SIGALRM only exists in the main thread; elsewhere
    (e.g. a threaded engine) the limit is not enforced and the size limit is the only guard."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise DocumentTimeout(f"exceeded {seconds}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
