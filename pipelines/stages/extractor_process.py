"""The extractor process: the per-document time limit holds for C code too.

HTML decoding and extraction (resiliparse and uchardet are C; a page of 100,000 nested `<div>`s
keeps resiliparse busy for minutes, and no signal interrupts C code) run in a child process: one
per thread that extracts (in practice one per worker process), a fresh interpreter started lazily
and reused across batches. `extract_batch` sends a batch's payloads; the child extracts them in
order, writes which document it is on and since when to a small shared memory block, and sends the
results back in chunks (every FLUSH_SECONDS of work: few wake-ups of the parent). The parent sleeps
until the current document's deadline; past it, it kills the child (SIGKILL), that document is a
timeout, and a fresh child gets the documents without a result (those after it, and those whose
results were not sent yet: they come out the same, extraction is deterministic). A child that dies
on its own (a crash in C code) costs the document it was on an error, the same way.

The child dies with the thread that started it (`die_with_parent(kernel=True)`: SIGKILL from the
kernel, which reaches C code), so a killed worker leaves no extractor behind; an exiting worker
kills its children (atexit).
"""

import atexit
import json
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection

from pipelines.runners.orphan import die_with_parent
from pipelines.stages.charset import decode_html

STARTUP_SECONDS = 120.0  # for a child to start and import its extractor (not counted against documents)
FLUSH_SECONDS = 0.05  # the child sends its results at least this often (work lost when it is killed)
FLUSH_CHARS = 4_000_000  # ... or when they hold this much text
TIMEOUT = ("timeout",)
_READY = "ready"
_PROGRESS_SIZE = 16  # int64 document (-1: none), float64 time.monotonic() it started at; written start first


class ExtractorFailed(RuntimeError):
    """The extractor process could not be started, or keeps dying outside any document."""


class ExtractorDied(RuntimeError):
    """The extractor process died while extracting a document (the document's error)."""


def _import_extractor(extractor: str) -> None:
    if extractor == "trafilatura":
        import trafilatura  # noqa: F401
    else:
        import resiliparse.extract.html2text  # noqa: F401


def _extract(html: str, extractor: str, main_content: bool) -> str:
    if extractor == "trafilatura":
        import trafilatura

        return trafilatura.extract(html, include_comments=False, favor_precision=main_content) or ""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=main_content, alt_texts=False, links=False,
                              comments=False, list_bullets=True)


def extract_text(payload: bytes, content_type: str | None, extractor: str,
                 main_content: bool) -> tuple[str, str, str]:
    """(text, charset, charset_source) of one payload, in this process."""
    html, charset, charset_source = decode_html(payload, content_type)
    return _extract(html, extractor, main_content).strip(), charset, charset_source


def _set_progress(progress: mmap.mmap, doc: int, started: float) -> None:
    struct.pack_into("d", progress, 8, started)  # the start first: a reader never pairs a new document
    struct.pack_into("q", progress, 0, doc)      # with an older start (see _Child.progress)


def _child_loop(conn: Connection, progress: mmap.mmap) -> None:
    """A batch is a header `(extractor, main_content, content types)` and one `send_bytes` per payload;
    the reply is READY, then lists of results, in order: `(True, text, charset, charset_source)` or
    `(False, exception type, message)` per document."""
    while True:
        try:
            extractor, main_content, content_types = conn.recv()
            payloads = [conn.recv_bytes() for _ in content_types]
        except (EOFError, OSError):  # the parent closed its end: done
            return
        _set_progress(progress, -1, 0.0)
        try:
            _import_extractor(extractor)
        except Exception:  # noqa: BLE001, S110 - reported per document below, as the import fails again there
            pass
        conn.send(_READY)
        pending, pending_chars, flushed = [], 0, time.monotonic()
        for doc, (payload, content_type) in enumerate(zip(payloads, content_types, strict=True)):
            now = time.monotonic()
            if pending and (now - flushed >= FLUSH_SECONDS or pending_chars >= FLUSH_CHARS):
                conn.send(pending)
                pending, pending_chars, now = [], 0, time.monotonic()
                flushed = now
            _set_progress(progress, doc, now)
            try:
                result = (True, *extract_text(payload, content_type, extractor, main_content))
                pending_chars += len(result[1])
            except Exception as exc:  # noqa: BLE001 - a broken page must not stop the batch
                result = (False, type(exc).__name__, str(exc) or repr(exc))
            pending.append(result)
        conn.send(pending)


def child_main(fd: int, progress_fd: int) -> None:
    """The child's entry point: its end of the socket pair, and the shared progress block."""
    die_with_parent(kernel=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it kills this process)
    progress = mmap.mmap(progress_fd, _PROGRESS_SIZE)
    os.close(progress_fd)
    _child_loop(Connection(fd), progress)


_CHILD_CODE = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
               "from pipelines.stages.extractor_process import child_main; "
               "child_main(int(sys.argv[2]), int(sys.argv[3]))")


def _shared_block(size: int) -> int:
    """An fd of `size` zero bytes that a child can map too."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gristmill-extractor-progress")
    else:
        fd, name = tempfile.mkstemp(prefix="gristmill-extractor-")
        os.unlink(name)
    os.ftruncate(fd, size)
    return fd


class _Child:
    """A fresh interpreter (`subprocess`, not multiprocessing: neither fork, as the parent may have
    threads, nor spawn, which would import the parent's `__main__` again) on a socket pair."""

    def __init__(self):
        mine, theirs = socket.socketpair()
        progress_fd = _shared_block(_PROGRESS_SIZE)
        try:
            self.progress_block = mmap.mmap(progress_fd, _PROGRESS_SIZE)
            _set_progress(self.progress_block, -1, 0.0)
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE, json.dumps(sys.path), str(theirs.fileno()), str(progress_fd)],
                pass_fds=(theirs.fileno(), progress_fd), stdin=subprocess.DEVNULL)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
            os.close(progress_fd)
        self.conn = Connection(mine.detach())
        self.thread = threading.current_thread()  # the child dies when this thread ends (PR_SET_PDEATHSIG)

    def progress(self) -> tuple[int, float]:
        """(the document it is on, or -1; time.monotonic() it started at). The start may be that of
        the next document (written first), never that of an earlier one."""
        while True:
            doc = struct.unpack_from("q", self.progress_block, 0)[0]
            started = struct.unpack_from("d", self.progress_block, 8)[0]
            if struct.unpack_from("q", self.progress_block, 0)[0] == doc:
                return doc, started

    def usable(self) -> bool:
        return self.process.poll() is None and self.thread.is_alive()

    def kill(self) -> int | None:
        """Kills the child (if alive) and returns its exit code."""
        self.conn.close()
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        self.progress_block.close()
        return code


_local = threading.local()
_children: set[_Child] = set()
_children_lock = threading.Lock()


def _child() -> _Child:
    child = getattr(_local, "child", None)
    if child is not None and not child.usable():
        _discard(child)
        child = None
    if child is None:
        child = _local.child = _Child()
        with _children_lock:
            _children.add(child)
    return child


def _discard(child: _Child) -> int | None:
    if getattr(_local, "child", None) is child:
        _local.child = None
    with _children_lock:
        _children.discard(child)
    return child.kill()


def child_pids() -> list[int]:
    """The pids of this process's extractor children (for tests and diagnostics)."""
    with _children_lock:
        return [c.process.pid for c in _children if c.process.poll() is None]


@atexit.register
def shutdown() -> None:
    """Kills every extractor child of this process (at exit; also safe to call any time)."""
    with _children_lock:
        children = list(_children)
    for child in children:
        _discard(child)


def _forget_after_fork() -> None:  # a forked process must not talk to (or kill) its parent's children
    global _local, _children_lock
    for child in _children:
        child.conn.close()
    _children.clear()
    _local = threading.local()
    _children_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _start_batch(child: _Child, jobs: list[tuple[bytes, str | None]], extractor: str, main_content: bool) -> None:
    conn = child.conn
    conn.send((extractor, main_content, [content_type for _, content_type in jobs]))
    for payload, _ in jobs:
        conn.send_bytes(payload)
    if not conn.poll(STARTUP_SECONDS):
        raise ExtractorFailed(f"the extractor process sent nothing for {STARTUP_SECONDS:g}s")
    if conn.recv() != _READY:
        raise ExtractorFailed("the extractor process is out of step")


def extract_batch(jobs: list[tuple[bytes, str | None]], extractor: str, main_content: bool,
                  timeout_seconds: float) -> list[tuple]:
    """Extracts `(payload, content_type)` jobs in the extractor process, each within `timeout_seconds`
    of the moment the child started it. Per job, in order: `(True, text, charset, charset_source)`,
    `(False, exception type, message)`, or TIMEOUT."""
    results: list[tuple | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))  # the jobs without a result, in order
    failures = 0  # child deaths in a row that no document is to blame for
    while todo:
        child = _child()
        try:
            _start_batch(child, [jobs[i] for i in todo], extractor, main_content)
        except (EOFError, OSError, ExtractorFailed) as exc:  # it died before any document: start another
            code = _discard(child)
            failures += 1
            if failures > 1:
                raise ExtractorFailed(f"the extractor process did not start (exit code {code}): {exc}") from exc
            continue
        try:
            todo, blamed = _collect(child, todo, results, timeout_seconds)
        except BaseException:  # interrupted: its replies can no longer be matched to documents
            _discard(child)
            raise
        failures = 0 if blamed else failures + 1
        if failures > 1:
            raise ExtractorFailed("the extractor process keeps dying between documents")
    return results


def _collect(child: _Child, todo: list[int], results: list, timeout_seconds: float) -> tuple[list[int], bool]:
    """Receives the results of the batch `todo` into `results`. Returns the jobs still without a
    result (none, unless the child was killed or died) and whether a document was to blame."""
    conn, received = child.conn, 0
    while received < len(todo):
        doc, started = child.progress()
        wait = started + timeout_seconds - time.monotonic() if doc >= received else timeout_seconds
        if conn.poll(max(wait, 0.0)):
            try:
                chunk = conn.recv()
            except EOFError:  # it died (e.g. a crash in C code) on the document it was on, if any
                doc, _ = child.progress()
                code = _discard(child)
                if doc < received:
                    return todo[received:], False
                results[todo[doc]] = (False, ExtractorDied.__name__, f"the extractor process died (exit code {code})")
                return todo[received:doc] + todo[doc + 1:], True
            for result in chunk:
                results[todo[received]] = result
                received += 1
            continue
        doc, started = child.progress()
        if doc >= received and time.monotonic() - started >= timeout_seconds:
            _discard(child)
            results[todo[doc]] = TIMEOUT
            return todo[received:doc] + todo[doc + 1:], True
    return [], True
