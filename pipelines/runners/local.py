"""Local runner: a process pool over shard-tasks; `workers: 1` runs in-process (the debug path)."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed


class LocalRunner:
    def __init__(self, cfg):
        self.cfg = cfg

    def map_unordered(self, fn, items):
        if self.cfg.workers == 1 or len(items) <= 1:
            for item in items:
                try:
                    yield item, fn(item), None
                except Exception as exc:  # noqa: BLE001 - reported per shard by the caller
                    yield item, None, exc
            return
        # spawn, not fork: workers must not inherit the driver's threads (tqdm, Ray) or loaded models
        with ProcessPoolExecutor(
            max_workers=min(self.cfg.workers, len(items)),
            mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=self.cfg.max_tasks_per_worker,
        ) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result(), None
                except Exception as exc:  # noqa: BLE001
                    yield futures[future], None, exc
