"""The envelope every task of every phase runs in, and the outputs a stage writes for one shard.

A task is resumable: it has a `part` and an `input_file` (what the run log and failures name), a
completion `marker` path, a `fingerprint()` of everything its outputs depend on (inputs and
configs), and a body `run()` that writes its outputs and returns its report's metrics per stage.
`run_task` skips a task whose marker holds its fingerprint, else runs the body, then writes the
marker last: a task killed at any point leaves no marker and reruns.
"""

import functools
import os
import resource
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
from pydantic import BaseModel

from pipelines import io
from pipelines.documents import ERROR_SCHEMA, REJECT_SCHEMA, STATS_SCHEMA
from pipelines.spill import not_fingerprinted
from scorers.rule import RuleConfig

BASE_METRICS = ("docs_in", "docs_out", "rejected", "errors")


class Task(Protocol):
    part: str
    input_file: str
    marker: str

    def fingerprint(self) -> str: ...

    def run(self) -> dict: ...


def run_task(task: Task) -> dict:
    """Skip-check, body, marker; returns the task's report with where and how long it ran, and the
    worker's peak resident memory during the task (`peak_rss_mb`)."""
    began = time.time()
    _reset_peak_rss()
    report = {"part": task.part, "input_file": task.input_file, "skipped": True, "stages": {}}
    fingerprint = task.fingerprint()
    if not io.marker_matches(task.marker, fingerprint):
        report.update(skipped=False, stages=task.run() or {})
        io.write_marker(task.marker, fingerprint, **({"input_file": task.input_file} if task.input_file else {}))
    return {**report, "host": socket.gethostname(), "pid": os.getpid(), "started": round(began, 3),
            "seconds": round(time.time() - began, 3), "peak_rss_mb": _peak_rss_mb()}


def _reset_peak_rss() -> None:
    """Linux: resets this process's peak RSS, so a reused worker's peak is the task's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the peak is then the worker's since it started
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return round(kb / 1024, 1)


@dataclass(frozen=True)
class Envelope:
    """`run_task` under a phase's name, as runners take it (Ray titles a worker `ray::<name>`)."""

    name: str

    def __call__(self, task: Task) -> dict:
        return run_task(task)


@functools.lru_cache(maxsize=16)
def task_output(path: str, fingerprint: str):
    """A JSON file a global task wrote, read once per worker rather than per batch: the task with this
    fingerprint always writes the same file (a new one has another fingerprint). Callers must not change it."""
    return io.read_json(path)


READ_LATER = {"read_later": True}  # a setting of a stage that a later stage acts on (score's buckets, select)


def fingerprint_data(cfg: BaseModel) -> dict:
    """A config as its fingerprint sees it: blocks (nested configs) that are absent and rules that are
    off are left out, so adding one of either does not invalidate finished work; nor do settings marked
    not fingerprinted (how a step runs, e.g. its memory limit) or READ_LATER (the later stage's task that
    reads them has them in its own fingerprint; the manifest keeps them)."""
    data = cfg.model_dump(mode="json")
    for name, spec in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if not_fingerprinted(spec) or (spec.json_schema_extra or {}).get("read_later"):
            del data[name]
        elif (value is None and _is_block(spec.annotation)) or (isinstance(value, RuleConfig) and not value.enabled):
            del data[name]
        elif isinstance(value, BaseModel):
            data[name] = fingerprint_data(value)
    return data


def _is_block(annotation) -> bool:
    options = getattr(annotation, "__args__", (annotation,))
    return any(isinstance(t, type) and issubclass(t, BaseModel) for t in options)


def stats_rows(stage: str, part: str, source: str | None, input_file: str | None, metrics: dict) -> list[dict]:
    """Rows of the stats table: the base counts first, then the stage's own metrics by name."""
    order = [k for k in BASE_METRICS if k in metrics] + sorted(k for k in metrics if k not in BASE_METRICS)
    return [{"stage": stage, "part": part, "source": source, "input_file": input_file, "metric": k,
             "value": float(metrics[k])} for k in order]


class ShardOutputs:
    """One stage's outputs for one part, under OUT/<stage>/: the documents it keeps (when it writes
    documents), its rejects and errors, streamed to Parquet; `commit` renames them into place and
    writes the part's stats."""

    def __init__(self, shard, stage: str, schema: pa.Schema | None):
        self.shard, self.stage = shard, stage
        self.kept = io.ParquetSink(shard.path(stage), schema) if schema is not None else None
        self.rejects = io.ParquetSink(shard.path(stage, "_rejects"), REJECT_SCHEMA)
        self.errors = io.ParquetSink(shard.path(stage, "_errors"), ERROR_SCHEMA)
        self.counts: Counter = Counter()

    def write(self, docs: list[dict] = (), rejects: list[dict] = (), errors: list[dict] = ()) -> None:
        if self.kept is not None:
            self.kept.write(list(docs))
        self.rejects.write(list(rejects))
        self.errors.write(list(errors))
        self.counts.update(docs_out=len(docs), rejected=len(rejects), errors=len(errors))

    def commit(self, **metrics) -> dict:
        """Renames the files into place and writes the stats: docs_in (given) and the counts written,
        with the stage's own metrics."""
        for sink in (self.kept, self.rejects, self.errors):
            if sink is not None:
                sink.commit()
        metrics = {k: 0 for k in BASE_METRICS} | dict(self.counts) | metrics
        shard = self.shard
        io.write_table_atomic(shard.path(self.stage, "_stats"),
                              stats_rows(self.stage, shard.part, shard.source.name, shard.input_file, metrics),
                              STATS_SCHEMA)
        return metrics
