"""Beam runner: each phase's shard-tasks are one Apache Beam pipeline.

The pipeline is `Create(task numbers) | Reshuffle | ParDo(run task)`: the reshuffle spreads the
tasks over the workers, and each task writes its outputs itself, as under every runner. A task's
outcome (its report, or the exception of its last attempt) is left as a small file in a scratch
folder on the release's storage; the driver reads those while the pipeline runs (progress) and once
it ends. A task that raises is retried `max_retries` times inside the DoFn; a shard that fails every
attempt is reported and the pipeline still completes the others.

Beam runs DoFns in threads, so each Beam worker process runs the tasks in a pool of `workers` task
processes that it keeps for its life: a task process that dies is replaced and its task retried
(the Beam worker survives it), and extraction memory is given back with
`max_tasks_per_worker`, as with the local runner. On a cluster, set `workers` to the cores of one
Beam worker.

Locally this is Beam's DirectRunner with `workers` threads handing tasks to that pool (no
downloads); `options` picks any other Beam runner (FlinkRunner, SparkRunner, DataflowRunner) and
its settings.
"""

import multiprocessing
import pickle
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import fsspec

from pipelines import io
from pipelines.runners.beam_options import pipeline_options
from pipelines.runners.orphan import die_with_parent

POLL_SECONDS = 0.5


class TaskFailed(RuntimeError):
    """A shard-task's exception as recorded by a Beam worker (when the exception itself could not travel)."""


def _outcome_bytes(result, exc) -> bytes:
    try:
        return pickle.dumps((result, exc))
    except Exception:  # noqa: BLE001 - an exception that cannot be pickled travels as its text
        return pickle.dumps((result, TaskFailed(f"{type(exc).__name__}: {exc}")))


_pools: dict[tuple, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(size: int, max_tasks: int | None) -> ProcessPoolExecutor:
    """The worker process's pool of task processes, kept for its life (across bundles and pipelines)."""
    with _pools_lock:
        if (size, max_tasks) not in _pools:
            _pools[size, max_tasks] = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"),
                                                          max_tasks_per_child=max_tasks, initializer=die_with_parent)
        return _pools[size, max_tasks]


def _replace_pool(size: int, max_tasks: int | None, broken: ProcessPoolExecutor) -> None:
    with _pools_lock:
        if _pools.get((size, max_tasks)) is broken:  # another thread may have replaced it already
            del _pools[size, max_tasks]
            broken.shutdown(wait=False, cancel_futures=True)


class _RunTasks:
    """The DoFn's body (free of Beam imports, so it pickles small): run task `index`, retry, record."""

    def __init__(self, fn, items, outcomes: str, cfg):
        self.fn, self.items, self.outcomes = fn, items, outcomes
        self.size, self.max_tasks, self.max_retries = cfg.workers, cfg.max_tasks_per_worker, cfg.max_retries

    def run(self, index: int) -> None:
        """A task whose process dies in the shared pool (maybe killed by a neighbour's crash) reruns in
        a process of its own; only a death there, or an exception, uses up one of its attempts."""
        result, exc, failures, alone = None, None, 0, False
        while failures <= self.max_retries:
            isolated = alone
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if isolated \
                else _pool(self.size, self.max_tasks)
            try:
                result, exc = pool.submit(self.fn, self.items[index]).result(), None
                break
            except BrokenProcessPool as died:
                exc = died
                if isolated:
                    failures += 1
                else:
                    _replace_pool(self.size, self.max_tasks, pool)
                    alone = True
            except Exception as raised:  # noqa: BLE001 - recorded for the driver after the last attempt
                exc, failures = raised, failures + 1
            finally:
                if isolated:
                    pool.shutdown(wait=False)
        io.write_bytes_atomic(io.join(self.outcomes, f"{index}.pkl"), _outcome_bytes(result, exc))


def _pipeline(options, tasks: _RunTasks, count: int, hints: dict):
    import apache_beam as beam

    class RunTasks(beam.DoFn):
        def process(self, index):
            tasks.run(index)
            yield index

    pipeline = beam.Pipeline(options=options)
    run = beam.ParDo(RunTasks())
    if hints:
        run = run.with_resource_hints(**hints)
    _ = pipeline | "tasks" >> beam.Create(list(range(count))) | "spread" >> beam.Reshuffle() | "run" >> run
    return pipeline


class BeamRunner:
    def __init__(self, cfg, scratch: str | None):
        self.cfg = cfg
        self.scratch = scratch or io.join(tempfile.gettempdir(), "gristmill-beam")

    def start(self) -> None:
        pipeline_options(self.cfg)

    def close(self) -> None:
        pass  # the task processes belong to the Beam worker processes and end with them

    def map_unordered(self, fn, items, resources=None):
        items = list(items)
        if not items:
            return
        outcomes = io.join(self.scratch, f"beam-{uuid.uuid4().hex}")
        hints = {}
        if resources is not None:
            hints["cpu_count"] = max(1, round(resources.cpus))
            if resources.memory:
                hints["min_ram"] = resources.memory
        tasks = _RunTasks(fn, items, outcomes, self.cfg)
        pipeline = _pipeline(pipeline_options(self.cfg), tasks, len(items), hints)
        ended: dict = {}

        def run():
            try:
                pipeline.run().wait_until_finish()
            except BaseException as exc:  # noqa: BLE001 - handed to the driver below
                ended["error"] = exc
            ended["done"] = True

        thread = threading.Thread(target=run, name="beam-pipeline", daemon=True)
        thread.start()
        seen: set[int] = set()
        try:
            while True:
                finished = ended.get("done", False)
                yield from self._collect(outcomes, items, seen)
                if finished:
                    break
                time.sleep(POLL_SECONDS)
            thread.join()
            error = ended.get("error")
            for i in sorted(set(range(len(items))) - seen):
                yield items[i], None, TaskFailed(f"the Beam pipeline ended before this task finished: {error!r}")
        finally:
            fs, root = fsspec.core.url_to_fs(outcomes)
            if fs.exists(root):
                fs.rm(root, recursive=True)

    @staticmethod
    def _collect(outcomes: str, items: list, seen: set[int]):
        fs, root = fsspec.core.url_to_fs(outcomes)
        if not fs.exists(root):
            return
        for path in sorted(fs.ls(root, detail=False)):
            name = path.rsplit("/", 1)[-1]
            stem = name.removesuffix(".pkl")
            if name == stem or not stem.isdigit() or int(stem) >= len(items) or int(stem) in seen:
                continue
            index = int(stem)
            seen.add(index)
            # the only unpickling in gristmill: `outcomes` is a folder this run named with a fresh uuid
            # and its tasks alone write to, so no file from elsewhere (nor a user's input) is ever loaded
            with fs.open(path, "rb") as fh:
                result, exc = pickle.load(fh)
            yield items[index], result, exc
