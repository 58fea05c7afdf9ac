"""Ray runner: each shard-task is a Ray task with retries, on an existing cluster or a local one.

`address` connects to a running cluster (`auto`, `ray://head:10001`); without it a local cluster
of `workers` CPUs is started. `runtime_env` ships the code (working_dir, pip) to the workers;
`resources` sets each stage's CPUs, GPUs and memory; at most `max_in_flight` tasks are submitted
at a time, so the driver never holds more than that many tasks' results.
"""

import sys

from pipelines.errors import ConfigError


def _call(fn, item):
    return fn(item)


class RayRunner:
    def __init__(self, cfg):
        self.cfg = cfg
        self._remote = None

    def start(self):
        """Connects (or starts a local cluster) and checks that every stage's resources can be had."""
        import ray

        if ray.is_initialized() and self.cfg.runtime_env:
            print("warning: Ray was already initialized in this process; runner.runtime_env is not applied",
                  file=sys.stderr)
        if not ray.is_initialized():
            kwargs = {"log_to_driver": False, "runtime_env": self.cfg.runtime_env}
            if self.cfg.address:
                ray.init(address=self.cfg.address, **kwargs)
            else:  # a local cluster sized by `workers`
                ray.init(num_cpus=self.cfg.workers, include_dashboard=False, **kwargs)
        self._check_resources(ray)
        self._remote = ray.remote(_call)
        return ray

    def close(self) -> None:
        pass  # the cluster outlives the run (a local one ends with the driver)

    def _check_resources(self, ray) -> None:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        for stage, need in self.cfg.resources.items():
            for key, name, amount in (("cpus", "CPU", need.cpus), ("gpus", "GPU", need.gpus),
                                      ("memory", "memory", need.memory or 0)):
                if amount and not any(node.get(name, 0) >= amount for node in nodes):
                    have = max((node.get(name, 0) for node in nodes), default=0)
                    message = (f"runner.resources.{stage}.{key}: a task needs {amount:g} {name} but no node of "
                               f"the cluster has that much (largest: {have:g})")
                    if not self.cfg.address:  # a local cluster will not grow
                        raise ConfigError(message)
                    print(f"warning: {message}; its tasks wait until the autoscaler adds such a node",
                          file=sys.stderr)

    def map_unordered(self, fn, items, resources=None):
        import ray

        if self._remote is None:
            self.start()
        options = {"max_retries": self.cfg.max_retries, "retry_exceptions": True, "num_cpus": 1,
                   "name": getattr(fn, "name", getattr(fn, "__name__", "task"))}
        if resources is not None:
            options.update(num_cpus=resources.cpus, num_gpus=resources.gpus)
            if resources.memory:
                options["memory"] = resources.memory
        if self.cfg.max_tasks_per_worker:
            options["max_calls"] = self.cfg.max_tasks_per_worker
        remote = self._remote.options(**options)
        limit = self.cfg.max_in_flight or max(1, int(2 * ray.cluster_resources().get("CPU", 1) / options["num_cpus"]))
        waiting, pending = iter(items), {}
        while True:
            for item in waiting:  # top up to the limit
                pending[remote.remote(fn, item)] = item
                if len(pending) >= limit:
                    break
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                item = pending.pop(ref)
                try:
                    yield item, ray.get(ref), None
                except Exception as exc:  # noqa: BLE001 - reported per shard by the caller
                    yield item, None, exc
