"""Runner contract, for local, Ray and Beam: every item comes back once, with its result or its
exception; failed tasks and dead workers are retried; back-pressure and per-stage resources hold."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.config import ConfigError, RunnerConfig, TaskResources
from pipelines.runners import combined, make_runner

KINDS = ["local", "ray", "beam"]


@pytest.fixture(params=KINDS)
def kind(request):
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


def runner_for(kind: str, tmp_path: Path, **settings):
    return make_runner(RunnerConfig(kind=kind, **settings), scratch=str(tmp_path / "scratch"))


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


def always_die(x: int) -> int:
    if x == 0:
        os._exit(1)
    return x


def record_interval(arg: tuple[str, int]) -> int:
    """Sleeps a little and leaves its start and end time, to measure how many ran at once."""
    folder, i = arg
    began = time.time()
    time.sleep(0.3)
    Path(folder, f"{i}.json").write_text(json.dumps([began, time.time()]))
    return i


def most_at_once(folder: Path) -> int:
    spans = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


def collect(runner, fn, items, resources=None):
    got = {}
    for item, result, exc in runner.map_unordered(fn, items, resources):
        assert item not in got, "an item came back twice"
        got[item] = (result, type(exc).__name__ if exc else None)
    return got


@pytest.mark.parametrize("workers", [1, 2])
def test_each_item_comes_back_once(kind, workers, tmp_path):
    runner = runner_for(kind, tmp_path, workers=workers, max_retries=1)
    got = collect(runner, square_or_fail, [1, 2, 3, 4])
    assert got[1] == (1, None) and got[2] == (4, None) and got[4] == (16, None)
    assert got[3][0] is None and got[3][1] is not None
    if kind == "beam":
        assert not list((tmp_path / "scratch").glob("beam-*")), "the Beam outcome files are cleaned up"


def test_a_dead_worker_is_retried(kind, tmp_path):
    runner = runner_for(kind, tmp_path, workers=2, max_retries=2)
    markers = [str(tmp_path / f"attempted-{i}") for i in range(3)]
    assert collect(runner, fail_first_attempt, markers) == {m: ("ok after retry", None) for m in markers}


def test_a_task_that_always_kills_its_worker_is_reported_alone(kind, tmp_path):
    """The local runner reruns the tasks that were in flight one at a time, so only the culprit is charged."""
    runner = runner_for(kind, tmp_path, workers=2, max_retries=1)
    got = collect(runner, always_die, [0, 1, 2, 3, 4])
    assert got[0][0] is None and got[0][1] is not None
    assert {i: got[i] for i in range(1, 5)} == {i: (i, None) for i in range(1, 5)}


@pytest.mark.parametrize("kind_", ["local", "ray"])
def test_back_pressure_bounds_tasks_in_flight(kind_, tmp_path, request):
    if kind_ == "ray":
        request.getfixturevalue("ray_cluster")
    folder = tmp_path / "spans"
    folder.mkdir()
    runner = runner_for(kind_, tmp_path, workers=2, max_in_flight=1)
    assert sorted(r for r, _ in collect(runner, record_interval, [(str(folder), i) for i in range(4)]).values()) \
        == [0, 1, 2, 3]
    assert most_at_once(folder) == 1


def test_ray_stage_resources_are_honoured(ray_cluster, tmp_path):
    """Two CPUs per task on a two-CPU cluster: the tasks run one after another."""
    folder = tmp_path / "spans"
    folder.mkdir()
    runner = runner_for("ray", tmp_path)
    collect(runner, record_interval, [(str(folder), i) for i in range(3)], TaskResources(cpus=2))
    assert most_at_once(folder) == 1


def test_ray_resources_no_node_has_fail_before_work(ray_cluster, tmp_path):
    runner = runner_for("ray", tmp_path, resources={"mixture": {"gpus": 1}})
    with pytest.raises(ConfigError, match=r"runner.resources.mixture.gpus: a task needs 1 GPU"):
        runner.start()


def test_combined_resources_take_the_most_of_each():
    both = combined([TaskResources(cpus=2, memory="1GiB"), None, TaskResources(gpus=1, memory=1000)])
    assert (both.cpus, both.gpus, both.memory) == (2, 1, 1 << 30)
    assert combined([None, None]) is None


def test_ray_runtime_env_ships_code_to_an_existing_cluster(ray_cluster, tmp_path):
    """A second driver joins the running cluster by address (as `--address auto` does); the
    function it maps lives only in the shipped working_dir, and env_vars reach the workers."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "only_here.py").write_text(
        "import os\n\ndef probe(x):\n    return x, os.environ['GRISTMILL_PROBE'], os.getcwd()\n")
    address = ray_cluster.get_runtime_context().gcs_address
    driver = (
        "import sys\n"
        f"sys.path.insert(0, {str(shipped)!r})\n"
        "from only_here import probe\n"
        "from pipelines.config import RunnerConfig\n"
        "from pipelines.runners import make_runner\n"
        f"cfg = RunnerConfig(kind='ray', address={address!r}, runtime_env={{'working_dir': {str(shipped)!r}, "
        "'env_vars': {'GRISTMILL_PROBE': 'arrived'}})\n"
        "print(sorted(result for _, result, _ in make_runner(cfg).map_unordered(probe, [1, 2])))\n"
    )
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr
    assert [(x, env) for x, env, _ in results] == [(1, "arrived"), (2, "arrived")]
    assert all("working_dir_files" in cwd for _, _, cwd in results)  # the tasks ran in the shipped copy


def test_local_worker_dying_between_phases_is_replaced(tmp_path):
    """The pool outlives a phase; a worker killed while idle must not fail the next phase."""
    import multiprocessing
    import signal

    runner = runner_for("local", tmp_path, workers=2, max_retries=0)
    try:
        assert collect(runner, square_or_fail, [1, 2]) == {1: (1, None), 2: (4, None)}
        idle = multiprocessing.active_children()
        assert idle
        os.kill(idle[0].pid, signal.SIGKILL)
        time.sleep(0.5)
        assert collect(runner, square_or_fail, [4, 5]) == {4: (16, None), 5: (25, None)}
    finally:
        runner.close()
