"""Engines are adapters: each decides only where and when shard-tasks run.

A runner implements `map_unordered(fn, items, resources=None)`, yielding (item, result, exception)
as tasks finish; a task that failed (raised, or its worker died) is retried `max_retries` times
before its exception is yielded. At most `max_in_flight` tasks are submitted and unfinished at any
time (back-pressure). Outputs are written by the tasks themselves, so every runner gives the same bytes.
"""


def make_runner(cfg, scratch: str | None = None):
    """`scratch`: a folder every worker can write (the release's `_logs`), for engines that need one."""
    if cfg.kind == "local":
        from pipelines.runners.local import LocalRunner

        return LocalRunner(cfg)
    if cfg.kind == "ray":
        from pipelines.runners.ray_runner import RayRunner

        return RayRunner(cfg)
    if cfg.kind == "beam":
        from pipelines.runners.beam_runner import BeamRunner

        return BeamRunner(cfg, scratch)
    raise ValueError(f"runner.kind: unknown runner {cfg.kind!r}")


def combined(resources: list):
    """What a task running several stages in a row needs: the most any of them needs (TaskResources)."""
    given = [r for r in resources if r is not None]
    if not given:
        return None
    memory = [r.memory for r in given if r.memory is not None]
    return given[0].model_copy(update={"cpus": max(r.cpus for r in given), "gpus": max(r.gpus for r in given),
                                       "memory": max(memory) if memory else None})
