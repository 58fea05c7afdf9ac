"""The tokenize phase: per input shard, tokenize the kept documents, pack them, write token shards.

Runs after the per-document stages of the same part (reading their output), or straight from
the reader for text sources when no such stage is configured. Outputs under OUT/tokens/
(Megatron users look for token shards there; the stage is still called `tokenize`):
  part-NNNNN-SSSSS.bin/.idx   Megatron indexed dataset (one Megatron document per packed sample)
  _provenance/part-NNNNN.parquet  one row per packed piece: sample, document id, token offsets
  _samples/part-NNNNN.parquet     one row per sample: tokens, padding, pieces
  _meta/part-NNNNN.json           the shards of this part (tokens, samples, padding, sha256)
plus _rejects, _errors, _stats and the _SUCCESS marker, like every stage.
"""

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import zstandard

from pipelines import io
from pipelines.config import TokenizeConfig, sha256_json
from pipelines.documents import ERROR_SCHEMA, REJECT_SCHEMA, STATS_SCHEMA, encodable, exception_error, reject
from pipelines.shard_task import BATCH_DOCS, OfShard, ShardTask, _batches, _stats_rows, _write_read_outputs, input_docs
from tokenize_stage.megatron import MegatronWriter, dtype_for_vocab
from tokenize_stage.packing import pack
from tokenize_stage.tokenizers import load_tokenizer

NAME = "tokenize"  # the stage, as named in config, stats and rejects
FOLDER = "tokens"  # where its outputs go (OUT/tokens/)
PROVENANCE_SCHEMA = pa.schema([
    ("part", pa.string()), ("shard", pa.string()), ("sample", pa.int64()), ("seq", pa.int32()),
    ("doc_id", pa.string()), ("source", pa.string()), ("url", pa.string()),
    ("doc_token_start", pa.int64()), ("tokens", pa.int32()), ("doc_tokens", pa.int64()), ("split", pa.bool_()),
])
SAMPLES_SCHEMA = pa.schema([
    ("part", pa.string()), ("shard", pa.string()), ("sample", pa.int64()),
    ("tokens", pa.int32()), ("padding", pa.int32()), ("pieces", pa.int32()),
])


@dataclass(frozen=True)
class TokenizeTask(OfShard):
    shard: ShardTask  # the per-document task of the same part (its chain may be empty)
    cfg: TokenizeConfig
    upstream: str | None  # the stage whose part-NNNNN.parquet is tokenized; None = read the source
    upstream_fingerprint: str

    def fingerprint(self) -> str:
        return sha256_json({"upstream": self.upstream_fingerprint, "tokenize": self.cfg.model_dump(mode="json")})

    def path(self, *parts: str) -> str:
        return io.join(self.shard.output, FOLDER, *parts)


class _ShardFiles:
    """Token shards of one part, cut after `shard_tokens` tokens, each committed by rename."""

    def __init__(self, task: TokenizeTask, dtype: np.dtype):
        self.task, self.dtype = task, dtype
        self.fs, _ = fsspec.core.url_to_fs(task.shard.output)
        self.done: list[dict] = []
        self.writer = None
        self._open()

    @property
    def name(self) -> str:
        return f"{self.task.part}-{len(self.done):05d}"

    def _open(self) -> None:
        _, self._bin_final = fsspec.core.url_to_fs(self.task.path(f"{self.name}.bin"))
        self.fs.makedirs(os.path.dirname(self._bin_final), exist_ok=True)
        self._bin_tmp = f"{os.path.dirname(self._bin_final)}/.tmp-{uuid.uuid4().hex}-{self.name}.bin"
        self._fh = self.fs.open(self._bin_tmp, "wb")
        self.writer = MegatronWriter(self._fh, self.dtype)
        self.padding = 0

    def add(self, sequences: list[np.ndarray], padding: int) -> tuple[str, int]:
        """Writes one sample; returns (shard name, sample index in it)."""
        name, index = self.name, self.writer.samples
        self.writer.add_sample(sequences)
        self.padding += padding
        if self.writer.tokens >= self.task.cfg.shard_tokens:
            self._close()
            self._open()
        return name, index

    def _close(self) -> None:
        self._fh.close()
        name = self.name
        io.write_bytes_atomic(self.task.path(f"{name}.idx"), self.writer.index_bytes())
        self.fs.mv(self._bin_tmp, self._bin_final)
        entry = {"shard": name, "tokens": self.writer.tokens, "samples": self.writer.samples,
                 "documents": len(self.writer.lengths), "padding": self.padding,
                 "sha256": io.sha256_file(self.fs.unstrip_protocol(self._bin_final))}
        if self.task.cfg.compress:
            _, zst_final = fsspec.core.url_to_fs(self.task.path(f"{name}.bin.zst"))
            zst_tmp = f"{os.path.dirname(zst_final)}/.tmp-{uuid.uuid4().hex}-{name}.bin.zst"
            with self.fs.open(self._bin_final, "rb") as src, self.fs.open(zst_tmp, "wb") as dst:
                zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
            self.fs.mv(zst_tmp, zst_final)
        self.done.append(entry)

    def finish(self) -> list[dict]:
        if self.writer.samples:  # no empty shards: Megatron cannot memory-map an empty .bin
            self._close()
        else:
            self._fh.close()
            self.fs.rm(self._bin_tmp)
        return self.done


def run_tokenize_task(task: TokenizeTask) -> dict:
    marker = task.path(f"_SUCCESS.{task.part}")
    report = {"part": task.part, "input_file": task.input_file, "skipped": False, "stages": {}}
    if io.marker_matches(marker, task.fingerprint()):
        return {**report, "skipped": True}

    cfg, shard = task.cfg, task.shard
    tok = load_tokenizer(cfg.tokenizer, cfg.threads)
    began = time.perf_counter()  # after the (once per worker) tokenizer load
    read_errors: list[dict] = []
    docs = input_docs(shard, task.upstream, read_errors)

    rejects = io.ParquetSink(task.path("_rejects", f"{task.part}.parquet"), REJECT_SCHEMA)
    errors = io.ParquetSink(task.path("_errors", f"{task.part}.parquet"), ERROR_SCHEMA)
    provenance = io.ParquetSink(task.path("_provenance", f"{task.part}.parquet"), PROVENANCE_SCHEMA)
    samples = io.ParquetSink(task.path("_samples", f"{task.part}.parquet"), SAMPLES_SCHEMA)
    files = _ShardFiles(task, dtype_for_vocab(tok.vocab_size))
    counts = {"docs_in": 0, "docs_out": 0, "rejected": 0, "errors": 0}
    meta: dict[int, dict] = {}  # documents with pieces still to be packed

    def encode(good: list[dict]) -> list[list[int] | None]:
        try:
            return tok.encode_batch([d["text"] for d in good])
        except Exception:  # noqa: BLE001 - find the document that breaks the batch
            encoded = []
            for doc in good:
                try:
                    encoded.extend(tok.encode_batch([doc["text"]]))
                except Exception as exc:  # noqa: BLE001
                    errors.write([exception_error(NAME, doc, exc)])
                    counts["errors"] += 1
                    encoded.append(None)
            return encoded

    def accepted(batch: list[dict]) -> list[dict]:
        counts["docs_in"] += len(batch)
        good = []
        for doc in batch:
            text = doc.get("text")
            reason = "empty_text" if not text or not text.strip() else None
            reason = reason or (None if encodable(text) else "unencodable_text")
            if reason:
                rejects.write([reject(doc, NAME, reason)])
                counts["rejected"] += 1
            else:
                good.append(doc)
        return good

    def documents() -> Iterator[tuple[int, np.ndarray]]:
        position = 0
        for batch in _batches(docs, BATCH_DOCS):
            good = accepted(batch)
            for doc, ids in zip(good, encode(good)):
                if ids is None:
                    continue
                ids = ([tok.bos_id] if cfg.bos else []) + ids + ([tok.eos_id] if cfg.eos else [])
                meta[position] = {"id": doc["id"], "source": doc.get("source"), "url": doc.get("url"),
                                  "tokens": len(ids), "pieces": 0}
                counts["docs_out"] += 1
                yield position, np.asarray(ids, dtype=np.int64)
                position += 1

    totals = {"tokens": 0, "samples": 0, "padding": 0, "split_docs": 0, "split_docs_that_fit": 0}
    sample_rows, rows = [], []  # handed to the sinks in blocks: one Arrow conversion per block, not per sample
    for sample in pack(documents(), cfg.pack, cfg.seq_len, cfg.window):
        used = sum(len(p) for p in sample)
        shard_name, index = files.add([p.tokens for p in sample], cfg.seq_len - used)
        sample_rows.append({"part": task.part, "shard": shard_name, "sample": index, "tokens": used,
                            "padding": cfg.seq_len - used, "pieces": len(sample)})
        for j, piece in enumerate(sample):
            m = meta[piece.doc]
            m["pieces"] += 1
            split = len(piece) < m["tokens"]
            rows.append({"part": task.part, "shard": shard_name, "sample": index, "seq": j, "doc_id": m["id"],
                         "source": m["source"], "url": m["url"], "doc_token_start": piece.start,
                         "tokens": len(piece), "doc_tokens": m["tokens"], "split": split})
            if piece.start + len(piece) == m["tokens"]:  # the document's last piece
                if m["pieces"] > 1:
                    totals["split_docs"] += 1
                    totals["split_docs_that_fit"] += m["tokens"] <= cfg.seq_len
                del meta[piece.doc]
        if len(rows) >= 4096:
            provenance.write(rows)
            samples.write(sample_rows)
            sample_rows, rows = [], []
        totals["tokens"] += used
        totals["samples"] += 1
        totals["padding"] += cfg.seq_len - used

    provenance.write(rows)
    samples.write(sample_rows)
    if task.upstream is None:
        _write_read_outputs(shard, counts["docs_in"], read_errors)
    shards = files.finish()
    for sink in (rejects, errors, provenance, samples):
        sink.commit()
    io.write_json_atomic(task.path("_meta", f"{task.part}.json"), {"part": task.part, "shards": shards})
    metrics = {**counts, **totals, "shards": len(shards)}
    io.write_table_atomic(task.path("_stats", f"{task.part}.parquet"), _stats_rows(shard, NAME, metrics),
                          STATS_SCHEMA)
    io.write_marker(marker, task.fingerprint(), input_file=task.input_file)
    report["stages"][NAME] = {**metrics, "seconds": round(time.perf_counter() - began, 3)}
    return report


def write_tokens_manifest(output: str, cfg: TokenizeConfig, parts: list[str]) -> dict:
    """OUT/tokens/manifest.json: tokenizer identity, packing settings, every shard with its sha256."""
    tok = load_tokenizer(cfg.tokenizer, cfg.threads)
    shards = [s for part in parts for s in io.read_json(io.join(output, FOLDER, "_meta", f"{part}.json"))["shards"]]
    total = {k: sum(s[k] for s in shards) for k in ("tokens", "samples", "documents", "padding")}
    slots = total["samples"] * cfg.seq_len
    manifest = {
        "format": "megatron-mmididx-v1", "tokenizer": tok.identity,
        "dtype": dtype_for_vocab(tok.vocab_size).name, "seq_len": cfg.seq_len, "pack": cfg.pack,
        "window": cfg.window, "eos": cfg.eos, "bos": cfg.bos,
        "sample_layout": "one Megatron document per packed sample; its sequences are the packed documents",
        "totals": {**total, "utilization": round(total["tokens"] / slots, 6) if slots else None},
        "shards": [{**s, "bin": f"{s['shard']}.bin", "idx": f"{s['shard']}.idx"} for s in shards],
    }
    io.write_json_atomic(io.join(output, FOLDER, "manifest.json"), manifest)
    return manifest


def decompress_shards(output: str) -> list[str]:
    """Restores every .bin from its .bin.zst copy and checks it against the manifest's sha256."""
    manifest = io.read_json(io.join(output, FOLDER, "manifest.json"))
    fs, root = fsspec.core.url_to_fs(io.join(output, FOLDER))
    restored = []
    for s in manifest["shards"]:
        tmp = f"{root}/.tmp-{uuid.uuid4().hex}-{s['bin']}"
        digest = hashlib.sha256()
        with fs.open(f"{root}/{s['bin']}.zst", "rb") as src, fs.open(tmp, "wb") as dst:
            for chunk in zstandard.ZstdDecompressor().read_to_iter(src, read_size=1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != s["sha256"]:
            fs.rm(tmp)
            raise ValueError(f"{s['bin']}.zst does not match the manifest's sha256")
        fs.mv(tmp, f"{root}/{s['bin']}")
        restored.append(s["bin"])
    return restored
