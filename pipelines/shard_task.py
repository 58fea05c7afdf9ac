"""One shard-task: read one input file and run the per-document stages over it.

Each stage writes its documents, rejects, errors and stats for the shard, then a completion
marker `OUT/<stage>/_SUCCESS.<part>` holding a fingerprint of the input and of the configs of
this stage and those before it. A rerun resumes after the last stage whose marker matches (so
changing only the filter config reuses the extract output), whatever the number of workers.
"""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipelines import io
from pipelines.config import ExtractConfig, SourceConfig, sha256_json
from pipelines.documents import ERROR_SCHEMA, REJECT_SCHEMA, STATS_SCHEMA, doc_schema, error
from pipelines.readers import read_shard
from pipelines.stages import STAGES

MARKER_VERSION = 1


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


def _done(task: ShardTask, i: int) -> bool:
    path = task.marker(task.chain[i][0])
    return io.exists(path) and io.read_json(path).get("fingerprint") == task.fingerprint(i)


class _Counted:
    """Wraps a document iterator and counts what the stage consumed."""

    def __init__(self, docs: Iterable[dict]):
        self._docs, self.count = docs, 0

    def __iter__(self) -> Iterator[dict]:
        for doc in self._docs:
            self.count += 1
            yield doc


def _safe_reader(task: ShardTask, errors: list[dict], max_payload: int) -> Iterator[dict]:
    try:
        yield from read_shard(task.source, task.input_file, errors, max_payload)
    except Exception as exc:  # noqa: BLE001 - report the file, keep the records already read
        errors.append(error("read", task.source.name, task.input_file, None, type(exc).__name__,
                            f"reader stopped: {exc}"))


def _stats_rows(task: ShardTask, stage: str, metrics: dict[str, float]) -> list[dict]:
    return [
        {"stage": stage, "part": task.part, "source": task.source.name, "input_file": task.input_file,
         "metric": k, "value": float(v)}
        for k, v in metrics.items()
    ]


def run_shard_task(task: ShardTask) -> dict:
    """Runs the stages not yet done for this shard; returns a small report (counts and seconds)."""
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
        docs = io.read_table(task.path(names[start - 1])).to_pylist()

    added = [f for name in names[:start] for f in STAGES[name].ADDED_COLUMNS]
    for i in range(start, len(names)):
        name, cfg = task.chain[i]
        counted = _Counted(docs)
        began = time.perf_counter()
        result = STAGES[name].run(counted, cfg)
        seconds = time.perf_counter() - began
        if i == 0:
            _write_read_outputs(task, counted.count, read_errors)
        added += STAGES[name].ADDED_COLUMNS
        io.write_table_atomic(task.path(name), result.docs, doc_schema(added))
        io.write_table_atomic(task.path(name, "_rejects"), result.rejects, REJECT_SCHEMA)
        io.write_table_atomic(task.path(name, "_errors"), result.errors, ERROR_SCHEMA)
        metrics = {"docs_in": counted.count, "docs_out": len(result.docs), "rejected": len(result.rejects),
                   "errors": len(result.errors), **result.metrics}
        io.write_table_atomic(task.path(name, "_stats"), _stats_rows(task, name, metrics), STATS_SCHEMA)
        io.write_json_atomic(task.marker(name), {"fingerprint": task.fingerprint(i), "input_file": task.input_file})
        report["stages"][name] = {**metrics, "seconds": seconds}
        docs = result.docs
    return report


def _write_read_outputs(task: ShardTask, docs_read: int, read_errors: list[dict]) -> None:
    """The reader is fused into the first stage; its errors and counts get a `read` folder of their own."""
    io.write_table_atomic(task.path("read", "_errors"), read_errors, ERROR_SCHEMA)
    metrics = {"docs_in": docs_read + len(read_errors), "docs_out": docs_read, "rejected": 0,
               "errors": len(read_errors), "input_bytes": task.input_size}
    io.write_table_atomic(task.path("read", "_stats"), _stats_rows(task, "read", metrics), STATS_SCHEMA)
