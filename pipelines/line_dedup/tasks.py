"""The line_dedup phase as runner tasks: map per input shard, reduce per bucket, apply per shard.

map     per document, the distinct keys of its units (xxh64 of the normalised unit); per shard, how
        many documents hold each key, hash-partitioned to OUT/line_dedup/_units/bucket-B/part-N.parquet
        (the shuffle through storage). Memory: the shard's distinct keys and counts (numpy).
reduce  per bucket: this release's counts summed over the parts -> _counts/bucket-B.parquet (the index
        a later release adds, with _index.json); plus the counts of the earlier releases in `against`
        -> the keys found in more than `max_docs` documents, _frequent/bucket-B.parquet
apply   per input shard: every unit whose key is frequent is removed from the text (they are few:
        all buckets' frequent keys are held at once); a document that lost units and keeps fewer
        than `min_doc_chars` characters is a `boilerplate_only` reject
"""

import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import xxhash

from pipelines import io
from pipelines.documents import STATS_SCHEMA, reject
from pipelines.line_dedup.config import LineDedupConfig
from pipelines.phase import ShardOutputs
from pipelines.shard_task import ApplyTask, Documents, OfShard, ShardTask
from pipelines.stage import Upstream, bucket_name

NAME = "line_dedup"
COLUMN = pa.field("line_dedup_chars_removed", pa.int64())
COUNT_SCHEMA = pa.schema([("key", pa.uint64()), ("docs", pa.int64())])
COMPACT_KEYS = 1 << 21  # the map folds its pending keys into counts past this many


def path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


def index_params(cfg: LineDedupConfig) -> dict:
    """What must match for two releases' unit counts to be added."""
    return {"version": 1, "unit": cfg.unit, "lowercase": cfg.lowercase, "min_unit_chars": cfg.min_unit_chars,
            "buckets": cfg.buckets}


def pieces(text: str, unit: str) -> list[str]:
    """The text cut into pieces that join back to it: each line with its line break, or each paragraph
    (consecutive non-blank lines) with the blank lines after it; blank lines before the first
    paragraph are a piece of their own. Removing a unit removes its piece."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    if unit == "line":
        return lines
    paragraphs: list[list[str]] = []
    in_tail = True  # the last piece has reached its blank lines (or there is none)
    for line in lines:
        if not line.strip():
            if paragraphs:
                paragraphs[-1].append(line)
            else:
                paragraphs.append([line])
            in_tail = True
        elif in_tail:
            paragraphs.append([line])
            in_tail = False
        else:
            paragraphs[-1].append(line)
    return ["".join(p) for p in paragraphs]


def unit_key(piece: str, cfg: LineDedupConfig) -> int | None:
    """xxh64 of the normalised unit (NFC, whitespace collapsed, optionally lowercased); None when it is
    shorter than min_unit_chars (never counted, never removed)."""
    norm = " ".join((piece if piece.isascii() else unicodedata.normalize("NFC", piece)).split())
    if len(norm) < cfg.min_unit_chars:
        return None
    if cfg.lowercase:
        norm = norm.lower()
    return xxhash.xxh64_intdigest(norm.encode("utf-8", "surrogatepass"))


def _fold(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys with their summed counts."""
    if not len(keys):
        return keys, counts
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inverse, weights=counts, minlength=len(distinct)).astype(np.int64)


def _counts_table(keys: np.ndarray, counts: np.ndarray) -> pa.Table:
    return pa.table([pa.array(keys, pa.uint64()), pa.array(counts, pa.int64())], schema=COUNT_SCHEMA)


def _write(file: str, table: pa.Table) -> None:
    io.write_bytes_atomic(file, io.table_bytes(table))


def _read_counts(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    tables = [io.read_table(f).cast(COUNT_SCHEMA) for f in files]
    if not tables:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    table = pa.concat_tables(tables)
    return _fold(table.column("key").to_numpy(), table.column("docs").to_numpy())


@dataclass(frozen=True)
class LineDedupMapTask(OfShard):
    shard: ShardTask
    cfg: LineDedupConfig
    upstream: Upstream

    @property
    def marker(self) -> str:
        return path(self.shard.output, f"_SUCCESS.map.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"upstream": self.upstream.fingerprint, NAME: index_params(self.cfg)})

    def run(self) -> dict:
        cfg = self.cfg
        keys, counts = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        pending: list[int] = []
        units = 0
        docs = Documents(self.shard, self.upstream.stage, record=True)
        for doc in docs:
            distinct = {k for p in pieces(doc.get("text") or "", cfg.unit) if (k := unit_key(p, cfg)) is not None}
            units += len(distinct)
            pending.extend(distinct)
            if len(pending) >= COMPACT_KEYS:
                keys, counts = self._folded(keys, counts, pending)
                pending = []
        docs.close()
        keys, counts = self._folded(keys, counts, pending)
        for b in range(cfg.buckets):
            chosen = keys % np.uint64(cfg.buckets) == b
            _write(path(self.shard.output, "_units", bucket_name(b), f"{self.part}.parquet"),
                   _counts_table(keys[chosen], counts[chosen]))
        return {f"{NAME}_map": {"docs": docs.count, "units": units, "unit_keys": len(keys)}}

    @staticmethod
    def _folded(keys, counts, pending: list[int]):
        new = np.fromiter(pending, dtype=np.uint64, count=len(pending))
        return _fold(np.concatenate([keys, new]), np.concatenate([counts, np.ones(len(new), np.int64)]))


@dataclass(frozen=True)
class LineDedupReduceTask:
    """One bucket: this release's counts (the index) and the frequent keys; depends on every map."""

    output: str
    cfg: LineDedupConfig
    parts: tuple[str, ...]
    counts_fingerprint: str  # of all maps, max_docs and the earlier releases' indexes
    bucket: int
    input_file: str = ""

    @property
    def part(self) -> str:
        return bucket_name(self.bucket)

    @property
    def marker(self) -> str:
        return path(self.output, f"_SUCCESS.reduce.{self.part}")

    def fingerprint(self) -> str:
        return self.counts_fingerprint

    def run(self) -> dict:
        cfg, out, name = self.cfg, self.output, self.part
        keys, counts = _read_counts([path(out, "_units", name, f"{p}.parquet") for p in self.parts])
        _write(path(out, "_counts", f"{name}.parquet"), _counts_table(keys, counts))
        earlier_keys, earlier_counts = _read_counts([path(r, "_counts", f"{name}.parquet") for r in cfg.against])
        total = counts.copy()
        if len(earlier_keys):
            at = np.searchsorted(earlier_keys, keys)
            found = at < len(earlier_keys)
            found[found] = earlier_keys[at[found]] == keys[found]
            total[found] += earlier_counts[at[found]]
        frequent = total > cfg.max_docs
        _write(path(out, "_frequent", f"{name}.parquet"), _counts_table(keys[frequent], total[frequent]))
        metrics = {"unit_keys": len(keys), "frequent_units": int(frequent.sum()),
                   "frequent_with_earlier": int((frequent & (counts <= cfg.max_docs)).sum())}
        io.write_table_atomic(path(out, "_stats", f"{name}.parquet"),
                              [{"stage": f"{NAME}_units", "part": name, "source": None, "input_file": None,
                                "metric": k, "value": float(v)} for k, v in metrics.items()], STATS_SCHEMA)
        return {f"{NAME}_reduce": metrics}


def frequent_keys(output: str, buckets: int) -> set[int]:
    found: set[int] = set()
    for b in range(buckets):
        found.update(io.read_table(path(output, "_frequent", f"{bucket_name(b)}.parquet")).column("key").to_pylist())
    return found


@dataclass(frozen=True)
class LineDedupApplyTask(ApplyTask):
    stage = NAME

    def run(self) -> dict:
        cfg = self.cfg
        frequent = frequent_keys(self.shard.output, cfg.buckets)
        docs = Documents(self.shard, self.upstream.stage)  # a source read twice: its errors were kept by map
        outputs = ShardOutputs(self.shard, NAME, docs.schema().append(COLUMN))
        units_removed = chars_removed = docs_changed = 0
        for doc in docs:
            text = doc.get("text") or ""
            keep, removed, lost = [], 0, 0
            for p in pieces(text, cfg.unit) if frequent else ():
                if unit_key(p, cfg) in frequent:
                    removed += 1
                else:
                    keep.append(p)
            if removed:
                new = "".join(keep)
                lost = len(text) - len(new)
                units_removed += removed
                chars_removed += lost
                docs_changed += 1
                if len(new.strip()) < cfg.min_doc_chars:
                    detail = f"{removed} units, {lost} chars removed"
                    outputs.write(rejects=[reject(doc, NAME, "boilerplate_only", detail)])
                    continue
                doc = doc | {"text": new}
            outputs.write(docs=[doc | {COLUMN.name: lost}])
        return {NAME: outputs.commit(docs_in=docs.count, units_removed=units_removed, chars_removed=chars_removed,
                                     docs_changed=docs_changed)}
