"""The release lock `OUT/_lock`: one run writes a release at a time.

A run's start-up deletes the half-written `.tmp-*` files of crashed runs, which would be another
live run's files if two ran at once. The lock holds the host, pid and start time of its run; a
second run refuses to start, unless the lock's run is gone: a dead pid on this host is taken over
with a warning, and `gristmill run --force` takes over any lock (a run on a host that died).
"""

import datetime as dt
import json
import logging
import os
import socket

import fsspec

from pipelines import io

log = logging.getLogger(__name__)


class ReleaseLocked(RuntimeError):
    """Another run holds the release's lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def _read(path: str) -> dict:
    try:
        return io.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}  # half-written by a run killed while taking it: nobody holds it


class ReleaseLock:
    def __init__(self, output: str, force: bool = False):
        self.path = io.join(output, "_lock")
        self.force = force
        self.mine = {"host": socket.gethostname(), "pid": os.getpid(),
                     "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    def __enter__(self):
        fs, path = fsspec.core.url_to_fs(self.path)
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        data = json.dumps(self.mine).encode()
        try:
            with fs.open(path, "xb") as fh:  # atomic where the filesystem can create exclusively
                fh.write(data)
            return self
        except FileExistsError:
            pass
        except (ValueError, NotImplementedError):  # no exclusive create here: a check, then a write
            if not fs.exists(path):
                io.write_bytes_atomic(self.path, data)
                return self
        held = _read(self.path)
        gone = held.get("host") == self.mine["host"] and isinstance(held.get("pid"), int) and not _alive(held["pid"])
        if held and not gone and not self.force:
            raise ReleaseLocked(f"{self.path}: another run is writing this release (pid {held.get('pid')} on "
                                f"{held.get('host')}, started {held.get('started')}); wait for it, or if it is "
                                f"gone (e.g. its host died) rerun with --force")
        log.warning("taking over the release lock %s of %s", self.path,
                    f"pid {held.get('pid')} on {held.get('host')} (started {held.get('started')})"
                    if held else "a run that left it unreadable")
        io.write_bytes_atomic(self.path, data)
        return self

    def __exit__(self, *exc):
        held = _read(self.path)
        if (held.get("host"), held.get("pid")) == (self.mine["host"], self.mine["pid"]):  # not taken over
            fs, path = fsspec.core.url_to_fs(self.path)
            fs.rm(path)
        return False
