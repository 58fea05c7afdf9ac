"""Engines are adapters: each decides only where and when shard-tasks run.

A runner implements `map_unordered(fn, items)` yielding (item, result, exception) as tasks finish.
Outputs are written by the tasks themselves, so every runner gives the same bytes.
"""

from pipelines.config import RunnerConfig


def make_runner(cfg: RunnerConfig):
    if cfg.kind == "local":
        from pipelines.runners.local import LocalRunner

        return LocalRunner(cfg)
    if cfg.kind == "ray":
        from pipelines.runners.ray_runner import RayRunner

        return RayRunner(cfg)
    raise NotImplementedError(f"runner.kind: {cfg.kind!r} is not available yet (local and ray are)")
