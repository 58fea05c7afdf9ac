"""Runner contract: every item comes back once, with its result or its exception; Ray retries."""

import os
from pathlib import Path

import pytest

from pipelines.config import RunnerConfig
from pipelines.runners import make_runner


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("shard 3 is broken")
    return x * x


def fail_first_attempt(path: str) -> str:
    marker = Path(path)
    if not marker.exists():
        marker.write_text("tried once")
        os._exit(1)  # the worker process dies, as if killed
    return "ok after retry"


def collect(runner, fn, items):
    return {item: (result, type(exc).__name__ if exc else None) for item, result, exc in runner.map_unordered(fn, items)}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_runner_reports_each_item(workers):
    runner = make_runner(RunnerConfig(kind="local", workers=workers))
    got = collect(runner, square_or_fail, [1, 2, 3, 4])
    assert got == {1: (1, None), 2: (4, None), 3: (None, "ValueError"), 4: (16, None)}


def test_ray_runner_reports_each_item(ray_cluster):
    runner = make_runner(RunnerConfig(kind="ray", workers=2, max_retries=0))
    got = collect(runner, square_or_fail, [1, 2, 3, 4])
    assert got[3][1] is not None and got[1] == (1, None) and got[4] == (16, None)


def test_ray_runner_retries_a_dead_worker(ray_cluster, tmp_path):
    runner = make_runner(RunnerConfig(kind="ray", workers=2, max_retries=2))
    marker = str(tmp_path / "attempted")
    assert collect(runner, fail_first_attempt, [marker]) == {marker: ("ok after retry", None)}


def test_beam_is_not_available_yet():
    with pytest.raises(NotImplementedError, match="runner.kind: 'beam'"):
        make_runner(RunnerConfig(kind="beam"))
