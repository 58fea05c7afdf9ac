"""One shard-task: read one input file and run the per-document stages over it.

Each stage writes its documents, rejects, errors and stats for the shard, then a completion
marker `OUT/<stage>/_SUCCESS.<part>` holding a fingerprint of the input and of the configs of
this stage and those before it. A rerun resumes after the last stage whose marker matches (so
changing only the filter config reuses the extract output), whatever the number of workers.
"""

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from pipelines import io
from pipelines.config import ExtractConfig, SourceConfig, sha256_json
from pipelines.documents import ERROR_SCHEMA, REJECT_SCHEMA, STATS_SCHEMA, doc_schema, error
from pipelines.readers import read_shard
from pipelines.stages import STAGES

MARKER_VERSION = 1
BATCH_DOCS = 256  # documents per batch through the stages (raw HTML is held for one batch only)


@dataclass(frozen=True)
class ShardTask:
    part: str  # "part-00000": position of the input file in the release's sorted input list
    source: SourceConfig
    input_file: str
    input_size: int
    chain: tuple[tuple[str, object], ...]  # (stage name, stage config) in order
    output: str

    def fingerprint(self, upto: int) -> str:
        return sha256_json({
            "version": MARKER_VERSION,
            "input": [self.input_file, self.input_size],
            "source": self.source.model_dump(mode="json", exclude={"storage_options"}),
            "chain": [[name, cfg.model_dump(mode="json")] for name, cfg in self.chain[: upto + 1]],
        })

    def path(self, stage: str, kind: str = "") -> str:
        folder = io.join(self.output, stage, kind) if kind else io.join(self.output, stage)
        return io.join(folder, f"{self.part}.parquet")

    def marker(self, stage: str) -> str:
        return io.join(self.output, stage, f"_SUCCESS.{self.part}")


class OfShard:
    """For a later phase's task bound to one input shard (`shard`): its part and input file are the shard's."""

    shard: ShardTask

    @property
    def part(self) -> str:
        return self.shard.part

    @property
    def input_file(self) -> str:
        return self.shard.input_file


def _done(task: ShardTask, i: int) -> bool:
    return io.marker_matches(task.marker(task.chain[i][0]), task.fingerprint(i))


def _safe_reader(task: ShardTask, errors: list[dict], max_payload: int) -> Iterator[dict]:
    try:
        yield from read_shard(task.source, task.input_file, errors, max_payload)
    except Exception as exc:  # noqa: BLE001 - report the file, keep the records already read
        errors.append(error("read", task.source.name, task.input_file, None, type(exc).__name__,
                            f"reader stopped: {exc}"))


def input_docs(task: ShardTask, stage: str | None, read_errors: list[dict]) -> Iterable[dict]:
    """Rows of `stage`'s output for this part, or the reader's records (for a phase with nothing before it)."""
    if stage is not None:
        return io.iter_rows(task.path(stage))
    return _safe_reader(task, read_errors, ExtractConfig().max_payload_bytes)


def last_stage(task: ShardTask) -> str | None:
    return task.chain[-1][0] if task.chain else None


def _stats_rows(task: ShardTask, stage: str, metrics: dict[str, float]) -> list[dict]:
    base = ["docs_in", "docs_out", "rejected", "errors"]
    order = [k for k in base if k in metrics] + sorted(k for k in metrics if k not in base)
    return [
        {"stage": stage, "part": task.part, "source": task.source.name, "input_file": task.input_file,
         "metric": k, "value": float(metrics[k])}
        for k in order
    ]


def run_shard_task(task: ShardTask) -> dict:
    """Runs the stages not yet done for this shard; returns a small report (counts and seconds).

    Documents stream through the stages in batches of BATCH_DOCS, and every output is written as
    it goes, so a worker's memory is bounded by a batch, not by the size of the input file.
    """
    names = [name for name, _ in task.chain]
    start = next((i + 1 for i in reversed(range(len(names))) if _done(task, i)), 0)
    report = {"part": task.part, "input_file": task.input_file, "skipped": start == len(names), "stages": {}}
    if report["skipped"]:
        return report

    read_errors: list[dict] = []
    if start == 0:
        extract_cfg = dict(task.chain).get("extract") or ExtractConfig()
        docs: Iterable[dict] = _safe_reader(task, read_errors, extract_cfg.max_payload_bytes)
    else:
        docs = io.iter_rows(task.path(names[start - 1]))

    todo = task.chain[start:]
    added = [f for name in names[:start] for f in STAGES[name].ADDED_COLUMNS]
    sinks, totals, seconds = {}, {}, {}
    for name, _ in todo:
        added = added + STAGES[name].ADDED_COLUMNS
        sinks[name] = (io.ParquetSink(task.path(name), doc_schema(added)),
                       io.ParquetSink(task.path(name, "_rejects"), REJECT_SCHEMA),
                       io.ParquetSink(task.path(name, "_errors"), ERROR_SCHEMA))
        totals[name], seconds[name] = Counter(), 0.0

    docs_read = 0
    for batch in _batches(docs, BATCH_DOCS):
        docs_read += len(batch)
        for name, cfg in todo:
            began = time.perf_counter()
            result = STAGES[name].run(batch, cfg)
            seconds[name] += time.perf_counter() - began
            for sink, rows in zip(sinks[name], (result.docs, result.rejects, result.errors)):
                sink.write(rows)
            totals[name].update({"docs_in": len(batch), "docs_out": len(result.docs),
                                 "rejected": len(result.rejects), "errors": len(result.errors), **result.metrics})
            batch = result.docs

    if start == 0:
        _write_read_outputs(task, docs_read, read_errors)
    for i, (name, _) in enumerate(todo, start):
        for sink in sinks[name]:
            sink.commit()
        metrics = {"docs_in": 0, "docs_out": 0, "rejected": 0, "errors": 0, **totals[name]}
        io.write_table_atomic(task.path(name, "_stats"), _stats_rows(task, name, metrics), STATS_SCHEMA)
        io.write_marker(task.marker(name), task.fingerprint(i), input_file=task.input_file)
        report["stages"][name] = {**metrics, "seconds": round(seconds[name], 3)}
    return report


def _batches(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def _write_read_outputs(task: ShardTask, docs_read: int, read_errors: list[dict]) -> None:
    """The reader is fused into the first stage; its errors and counts get a `read` folder of their own."""
    io.write_table_atomic(task.path("read", "_errors"), read_errors, ERROR_SCHEMA)
    metrics = {"docs_in": docs_read + len(read_errors), "docs_out": docs_read, "rejected": 0,
               "errors": len(read_errors), "input_bytes": task.input_size}
    io.write_table_atomic(task.path("read", "_stats"), _stats_rows(task, "read", metrics), STATS_SCHEMA)
