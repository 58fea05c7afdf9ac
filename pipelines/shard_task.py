"""The per-document task of one input shard: read the input file and run the per-document stages over it.

Each stage writes its documents, rejects, errors and stats for the shard, then a completion
marker `OUT/<stage>/_SUCCESS.<part>` holding a fingerprint of the input and of the configs of
this stage and those before it. A rerun resumes after the last stage whose marker matches (so
changing only the filter config reuses the extract output), whatever the number of workers.
The later phases' tasks are bound to a shard too (`OfShard`) and read its documents with `Documents`.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar

import pyarrow as pa

from pipelines import io
from pipelines.documents import ERROR_SCHEMA, STATS_SCHEMA, doc_schema, error
from pipelines.phase import ShardOutputs, fingerprint_data, stats_rows
from pipelines.readers import MAX_PAYLOAD_BYTES, SourceConfig, read_shard
from pipelines.stage import Stage, Upstream

MARKER_VERSION = 1
BATCH_DOCS = 256  # documents per batch through the stages (raw HTML is held for one batch only)


@dataclass(frozen=True)
class ShardTask:
    part: str  # "part-00000": position of the input file in the release's sorted input list
    source: SourceConfig
    input_file: str
    input_size: int
    chain: tuple[tuple[Stage, object], ...]  # the per-document stages that apply, with their configs, in order
    output: str
    max_payload_bytes: int = MAX_PAYLOAD_BYTES  # the reader keeps no more of a payload (the HTML stage's limit)
    after: Upstream | None = None  # the global stage whose output the chain reads; None: the input file

    def fingerprint_upto(self, i: int) -> str:
        """Of the input (or of what it reads) and the configs of stages 0..i (i = -1: the input alone)."""
        chain = [[stage.name, fingerprint_data(cfg)] for stage, cfg in self.chain[: i + 1]]
        if self.after is not None:
            return io.sha256_json({"version": MARKER_VERSION, "upstream": self.after.fingerprint, "chain": chain})
        return io.sha256_json({
            "version": MARKER_VERSION,
            "input": [self.input_file, self.input_size],
            "source": self.source.model_dump(mode="json", exclude={"storage_options"}),
            "chain": chain,
        })

    def fingerprint(self) -> str:
        return self.fingerprint_upto(len(self.chain) - 1)

    @property
    def marker(self) -> str:
        return self.stage_marker(len(self.chain) - 1)

    def stage_marker(self, i: int) -> str:
        return io.join(self.output, self.chain[i][0].name, f"_SUCCESS.{self.part}")

    def path(self, stage: str, kind: str = "") -> str:
        folder = io.join(self.output, stage, kind) if kind else io.join(self.output, stage)
        return io.join(folder, f"{self.part}.parquet")

    def run(self) -> dict:
        return run_chain(self)


class OfShard:
    """For a later phase's task bound to one input shard (`shard`): its part and input file are the shard's."""

    shard: ShardTask

    @property
    def part(self) -> str:
        return self.shard.part

    @property
    def input_file(self) -> str:
        return self.shard.input_file


@dataclass(frozen=True)
class ApplyTask(OfShard):
    """A global stage's last step for one shard: it reads the shard's `upstream` documents and writes the
    stage's own. Done when OUT/<stage>/_SUCCESS.<part> holds `stage_fingerprint` (of every earlier step
    of the stage, which read the whole release)."""

    shard: ShardTask
    cfg: Any
    upstream: Upstream
    stage_fingerprint: str
    stage: ClassVar[str]

    @property
    def marker(self) -> str:
        return io.join(self.shard.output, self.stage, f"_SUCCESS.{self.part}")

    def fingerprint(self) -> str:
        return self.stage_fingerprint


class Documents:
    """The documents a task reads for one part: the output of stage `upstream`, or the input file
    itself. The first phase to read an input file records the reader's errors and counts in
    OUT/read/ (`record`); `close()` writes them once every record was read."""

    def __init__(self, shard: ShardTask, upstream: str | None, record: bool = False):
        self.shard, self.upstream, self.record = shard, upstream, record and upstream is None
        self.read_errors: list[dict] = []
        self.count = 0

    def __iter__(self) -> Iterator[dict]:
        docs = io.iter_rows(self.shard.path(self.upstream)) if self.upstream else self._read()
        for doc in docs:
            self.count += 1
            yield doc

    def batches(self) -> Iterator[list[dict]]:
        it = iter(self)
        while batch := list(islice(it, BATCH_DOCS)):
            yield batch

    def schema(self):
        """The Parquet schema of the documents (the upstream stage's, or the reader's)."""
        return io.read_schema(self.shard.path(self.upstream)) if self.upstream else doc_schema([])

    def _read(self) -> Iterator[dict]:
        shard = self.shard
        try:
            yield from read_shard(shard.source, shard.input_file, self.read_errors, shard.max_payload_bytes)
        except Exception as exc:  # noqa: BLE001 - report the file, keep the records already read
            self.read_errors.append(error("read", shard.source.name, shard.input_file, None, type(exc).__name__,
                                          f"reader stopped: {exc}"))

    def close(self) -> None:
        """The reader's errors and counts get a `read` folder of their own (the reader is fused into the
        first phase that reads the file)."""
        if not self.record:
            return
        shard = self.shard
        io.write_table_atomic(shard.path("read", "_errors"), self.read_errors, ERROR_SCHEMA)
        metrics = {"docs_in": self.count + len(self.read_errors), "docs_out": self.count, "rejected": 0,
                   "errors": len(self.read_errors), "input_bytes": shard.input_size}
        io.write_table_atomic(shard.path("read", "_stats"),
                              stats_rows("read", shard.part, shard.source.name, shard.input_file, metrics),
                              STATS_SCHEMA)


def _with_columns(schema: pa.Schema, stage: Stage, cfg) -> pa.Schema:
    for column in stage.fields(cfg):
        schema = schema.append(column)
    return schema


def run_chain(task: ShardTask) -> dict:
    """Runs the stages not yet done for this shard; returns their counts and seconds.

    Documents stream through the stages in batches of BATCH_DOCS, and every output is written as
    it goes, so a worker's memory is bounded by a batch, not by the size of the input file.
    """
    start = next((i + 1 for i in reversed(range(len(task.chain)))
                  if io.marker_matches(task.stage_marker(i), task.fingerprint_upto(i))), 0)
    before = task.after.stage if task.after else None
    schema = Documents(task, before).schema()  # what the chain reads: the input file's records, or a stage's
    for stage, cfg in task.chain[:start]:
        schema = _with_columns(schema, stage, cfg)
    docs = Documents(task, task.chain[start - 1][0].name if start else before, record=True)
    todo = task.chain[start:]
    outputs = {}
    for stage, cfg in todo:
        schema = _with_columns(schema, stage, cfg)
        outputs[stage.name] = ShardOutputs(task, stage.name, schema)
    seconds = dict.fromkeys(outputs, 0.0)
    for batch in docs.batches():
        for stage, cfg in todo:
            began = time.perf_counter()
            result = stage.run(batch, cfg)
            seconds[stage.name] += time.perf_counter() - began
            out = outputs[stage.name]
            out.write(result.docs, result.rejects, result.errors)
            out.counts.update({"docs_in": len(batch), **result.metrics})
            batch = result.docs
    docs.close()
    report = {}
    for i, (stage, _) in enumerate(todo, start):
        metrics = outputs[stage.name].commit()
        if i < len(task.chain) - 1:  # the last stage's marker is the task's own, written by run_task
            io.write_marker(task.stage_marker(i), task.fingerprint_upto(i), input_file=task.input_file)
        report[stage.name] = {**metrics, "seconds": round(seconds[stage.name], 3)}
    return report
