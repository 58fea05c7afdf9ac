"""Ray runner: each shard-task is a Ray task with retries, on an existing cluster or a local one."""


class RayRunner:
    def __init__(self, cfg):
        self.cfg = cfg

    def _init(self):
        import ray

        if not ray.is_initialized():
            if self.cfg.address:
                ray.init(address=self.cfg.address, log_to_driver=False)
            else:  # a local cluster sized by `workers`
                ray.init(num_cpus=self.cfg.workers, include_dashboard=False, log_to_driver=False)
        return ray

    def map_unordered(self, fn, items):
        ray = self._init()
        options = {"max_retries": self.cfg.max_retries, "retry_exceptions": True, "num_cpus": 1}
        if self.cfg.max_tasks_per_worker:
            options["max_calls"] = self.cfg.max_tasks_per_worker
        remote = ray.remote(fn).options(**options)
        pending = {remote.remote(item): item for item in items}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                item = pending.pop(ref)
                try:
                    yield item, ray.get(ref), None
                except Exception as exc:  # noqa: BLE001 - reported per shard by the caller
                    yield item, None, exc
