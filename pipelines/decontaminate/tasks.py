"""The decontaminate phases as runner tasks.

index   one task: every benchmark's items read (a bad record fails it, naming file and record),
        their n-gram hashes sorted into OUT/decontaminate/_index.npz (with the item ids)
apply   per input shard, batch by batch: the documents' n-grams looked up in the index; a contaminated
        document is rejected, or loses the matching spans; every hit is a row of
        OUT/decontaminate/_contamination/part-N.parquet (DuckDB view `contamination`)
"""

import io as bytes_io
import json
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.decontaminate.config import BenchmarkConfig, DecontaminateConfig
from pipelines.decontaminate.ngrams import Index, Matches, normalise, word_spans, words
from pipelines.documents import reject
from pipelines.phase import ShardOutputs
from pipelines.readers import read_shard
from pipelines.shard_task import ApplyTask, Documents

NAME = "decontaminate"
COLUMN = pa.field("decontaminate_chars_removed", pa.int64())
CHUNK_CHARS = 2_000_000
CONTAMINATION_SCHEMA = pa.schema([("part", pa.string()), ("id", pa.string()), ("benchmark", pa.string()),
                                  ("item", pa.string()), ("ngrams", pa.int64()), ("action", pa.string()),
                                  ("chars_removed", pa.int64())])


def path(output: str, *parts: str) -> str:
    return io.join(output, NAME, *parts)


def _field_text(value) -> str | None:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v is not None)
    return None if value is None else str(value)


def read_items(bench: BenchmarkConfig) -> tuple[list[str], list[str]]:
    """(item ids, item texts) of a benchmark; ValueError naming the file and record of the first bad one,
    or when no item has text: a benchmark is never partly read."""
    ids, texts = [], []
    source = bench.model_copy(update={"text_field": bench.fields[0]})
    files = sorted({f for pattern in bench.paths for f in io.expand_paths(pattern, bench.storage_options)})
    if not files:
        raise ValueError(f"no file matches {bench.paths}")
    for file in files:
        errors: list[dict] = []
        for record in read_shard(source, file, errors):
            extra = json.loads(record["metadata"]) if record.get("metadata") else {}
            parts = [record["text"]]
            for field in bench.fields[1:]:
                if field not in extra:
                    raise ValueError(f"{file}, record {record['input_offset']}: field {field!r} is missing")
                parts.append(_field_text(extra[field]))
            ids.append(record["id"])
            texts.append(" ".join(p for p in parts if p))
        if errors:
            e = errors[0]
            at = "" if e["input_offset"] is None else f", record {e['input_offset']}"
            raise ValueError(f"{e['input_file']}{at}: {e['error']}: {e['message']}")
    if not any(words(t) for t in texts):
        raise ValueError(f"no item with words in {files} (fields {bench.fields})")
    return ids, texts


def benchmark_fingerprint(cfg: DecontaminateConfig) -> str:
    """Of the config and the benchmark files' bytes: an edited benchmark rebuilds the index."""
    files = {b.name: {f: io.sha256_file(f, b.storage_options) for p in b.paths
                      for f in io.expand_paths(p, b.storage_options)} for b in cfg.benchmarks}
    return io.sha256_json({"config": cfg.model_dump(mode="json"), "files": files, "version": 1})


@dataclass(frozen=True)
class DecontaminateIndexTask:
    output: str
    cfg: DecontaminateConfig
    index_fingerprint: str
    part: str = "index"
    input_file: str = ""

    @property
    def marker(self) -> str:
        return path(self.output, "_SUCCESS.index")

    def fingerprint(self) -> str:
        return self.index_fingerprint

    def run(self) -> dict:
        items = [read_items(b) for b in self.cfg.benchmarks]
        index = Index.build([texts for _, texts in items], self.cfg.ngram)
        buffer = bytes_io.BytesIO()
        np.savez(buffer, **index.arrays())
        io.write_bytes_atomic(path(self.output, "_index.npz"), buffer.getvalue())
        io.write_json_atomic(path(self.output, "_items.json"),
                             {b.name: ids for b, (ids, _) in zip(self.cfg.benchmarks, items)})
        return {f"{NAME}_index": {"items": sum(len(ids) for ids, _ in items), "ngrams": index.size}}


def load_index(output: str) -> tuple[Index, dict[str, list[str]]]:
    with fsspec.open(path(output, "_index.npz"), "rb") as fh:
        arrays = dict(np.load(bytes_io.BytesIO(fh.read())))
    return Index.from_arrays(arrays), io.read_json(path(output, "_items.json"))


@dataclass(frozen=True)
class DecontaminateApplyTask(ApplyTask):
    stage = NAME

    def run(self) -> dict:
        index, item_ids = load_index(self.shard.output)
        names = [b.name for b in self.cfg.benchmarks]
        docs = Documents(self.shard, self.upstream.stage, record=True)  # the first phase reading the file
        outputs = ShardOutputs(self.shard, NAME, docs.schema().append(COLUMN))
        rows: list[dict] = []
        totals = {f"{m}.{n}": 0 for n in names for m in ("docs_hit", "ngrams_matched")} | {"chars_removed": 0}
        for batch in _chunks(docs, CHUNK_CHARS):
            found = index.matches([normalise(d.get("text") or "") for d in batch])
            by_text = np.argsort(found.text, kind="stable")  # each text's matches: one slice of it
            bounds = np.searchsorted(found.text[by_text], np.arange(len(batch) + 1))
            for i, doc in enumerate(batch):
                mine = by_text[bounds[i] : bounds[i + 1]]
                hits = _hits(found, mine, self.cfg.min_matches, self.cfg.ngram)
                if not hits:
                    outputs.write(docs=[doc | {COLUMN.name: 0}])
                    continue
                kept, removed = self._apply(doc, found, mine, hits)
                for b, (count, item) in hits.items():
                    totals[f"docs_hit.{names[b]}"] += 1
                    totals[f"ngrams_matched.{names[b]}"] += count
                    rows.append({"part": self.part, "id": doc["id"], "benchmark": names[b],
                                 "item": item_ids[names[b]][item], "ngrams": count,
                                 "action": "spans_removed" if kept else "rejected", "chars_removed": removed})
                totals["chars_removed"] += removed
                first = min(hits)
                if kept is None:
                    count, item = hits[first]
                    detail = f"{count} n-grams matched; item {item_ids[names[first]][item]}"
                    if self.cfg.mode == "remove_spans":
                        detail += f"; {removed} chars removed left fewer than min_doc_chars"
                    outputs.write(rejects=[reject(doc, NAME, f"{NAME}.{names[first]}", detail)])
                else:
                    outputs.write(docs=[kept | {COLUMN.name: removed}])
        docs.close()
        io.write_table_atomic(path(self.shard.output, "_contamination", f"{self.part}.parquet"), rows,
                              CONTAMINATION_SCHEMA)
        return {NAME: outputs.commit(docs_in=docs.count, **totals)}

    def _apply(self, doc: dict, found: Matches, mine: np.ndarray, hits: dict) -> tuple[dict | None, int]:
        """(the kept document, or None when it is rejected; characters removed). `mine`: its matches' rows."""
        if self.cfg.mode == "reject":
            return None, 0
        text = doc.get("text") or ""
        _, spans = word_spans(text)
        mine = mine[np.isin(found.benchmark[mine], list(hits))]
        margin = self.cfg.ngram
        cuts = sorted((max(0, int(s) - margin), min(len(spans), int(s + n) + margin))
                      for s, n in zip(found.start[mine], found.length[mine]))
        pieces, at = [], 0
        for first, end in _merged(cuts):
            pieces.append(text[at : spans[first][0]])
            at = spans[end - 1][1]
        new = "".join(pieces) + text[at:]
        removed = len(text) - len(new)
        if len(new.strip()) < self.cfg.min_doc_chars:
            return None, removed
        return doc | {"text": new}, removed


def _chunks(docs, chars: int):
    """Lists of documents with about `chars` characters of text in all (at least one document): the
    n-gram arrays of a chunk, ~50 bytes per word, are what a worker holds besides the index."""
    chunk, size = [], 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc.get("text") or "")
        if size >= chars:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for first, end in spans:
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([first, end])
    return [(a, b) for a, b in out]


def _hits(found: Matches, mine: np.ndarray, min_matches: int, n: int) -> dict[int, tuple[int, int]]:
    """benchmark -> (distinct n-grams of it matched, the item matched first) for the benchmarks that
    contaminate a text (`mine`: the rows of its matches): some item shares at least `min_matches`
    n-grams with it, or occurs whole."""
    if not len(mine):
        return {}
    out = {}
    for b in np.unique(found.benchmark[mine]).tolist():
        rows = mine[found.benchmark[mine] == b]
        rows = rows[np.argsort(found.start[rows], kind="stable")]
        items, keys = found.item[rows], found.key[rows]
        pairs = np.unique(np.stack([items, keys.view(np.int64)]), axis=1)  # distinct (item, n-gram)
        per_item = dict(zip(*np.unique(pairs[0], return_counts=True)))
        whole = found.length[rows] < n  # a short item, matched whole
        qualifying = [int(it) for it, w in zip(items, whole) if w or per_item[it] >= min_matches]
        if qualifying:
            out[b] = (len(np.unique(keys)), qualifying[0])
    return out
