"""Local runner: a process pool over shard-tasks; `workers: 1` runs in-process (the debug path).

A task that raises is retried. A worker that dies (killed, out of memory) breaks the pool: the pool
is rebuilt and the tasks that were in flight are rerun one at a time, so the one that kills its
worker is found and charged the attempt, not the tasks that happened to run beside it.
"""

import multiprocessing
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from pipelines.runners.orphan import die_with_parent


class WorkerDied(RuntimeError):
    """A shard-task's worker process died every time the task ran."""


class LocalRunner:
    def __init__(self, cfg):
        self.cfg = cfg
        self._pool = None  # kept from phase to phase: workers import the pipeline once per run

    def start(self) -> None:
        pass

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map_unordered(self, fn, items, resources=None):
        items = list(items)
        if self.cfg.workers == 1 or len(items) <= 1:
            yield from self._in_process(fn, items)
        else:
            yield from self._in_pool(fn, items)

    def _in_process(self, fn, items):
        for item in items:
            for attempt in range(self.cfg.max_retries + 1):
                try:
                    result = fn(item)
                except Exception as exc:  # noqa: BLE001 - reported per shard by the caller
                    if attempt == self.cfg.max_retries:
                        yield item, None, exc
                else:
                    yield item, result, None
                    break

    def _pool_of_workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: workers must not inherit the driver's threads (tqdm, Ray) or loaded models
            self._pool = ProcessPoolExecutor(self.cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                             max_tasks_per_child=self.cfg.max_tasks_per_worker,
                                             initializer=die_with_parent)
        return self._pool

    def _submit(self, fn, item):
        try:
            return self._pool_of_workers().submit(fn, item)
        except BrokenProcessPool:  # a worker died while idle (e.g. between phases): start afresh
            self.close()
            return self._pool_of_workers().submit(fn, item)

    def _in_pool(self, fn, items):
        limit = self.cfg.max_in_flight or 2 * self.cfg.workers
        todo, suspects = deque(range(len(items))), deque()
        failures = [0] * len(items)
        running, alone = {}, set()
        while todo or suspects or running:
            # after a worker died, the tasks that were in flight run alone until each is cleared
            queue, room = (suspects, 1) if suspects or alone else (todo, limit)
            while queue and len(running) < room:
                i = queue.popleft()
                running[self._submit(fn, items[i])] = i
                if queue is suspects:
                    alone.add(i)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = []
            for future in done:
                i, exc = running.pop(future), future.exception()
                alone.discard(i)
                if isinstance(exc, BrokenProcessPool):
                    broken.append(i)
                elif exc is None:
                    yield items[i], future.result(), None
                elif failures[i] < self.cfg.max_retries:
                    failures[i] += 1
                    todo.append(i)
                else:
                    yield items[i], None, exc
            if broken:  # the pool is gone: everything in flight reruns in a new one
                broken += list(running.values())
                running.clear()
                alone.clear()
                self.close()
                if len(broken) == 1:  # it ran alone: it is the one that kills its worker
                    i = broken[0]
                    failures[i] += 1
                    if failures[i] > self.cfg.max_retries:
                        yield items[i], None, WorkerDied(f"worker process died {failures[i]} times")
                        broken = []
                suspects.extend(broken)
