"""The tokenize phase: per input shard, tokenize the kept documents, pack them, write token shards.

Runs after the stages before it for the same part (reading their output), or straight from the
reader for text sources when nothing comes before it. Outputs under OUT/tokenize/:
  part-NNNNN-SSSSS.bin/.idx       Megatron indexed dataset (one Megatron document per packed sample)
  _provenance/part-NNNNN.parquet  one row per packed piece: sample, document id, token offsets
  _samples/part-NNNNN.parquet     one row per sample: tokens, padding, pieces
  _meta/part-NNNNN.json           the shards of this part (tokens, samples, padding, sha256)
  manifest.json                   written once every part is done (megatron/manifest.py)
plus _rejects, _errors, _stats and the _SUCCESS marker, like every stage.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines import io
from pipelines.documents import encodable, exception_error, reject
from pipelines.phase import ShardOutputs, fingerprint_data
from pipelines.shard_task import Documents, OfShard, ShardTask
from pipelines.stage import Upstream
from tokenize_stage.config import TokenizeConfig
from tokenize_stage.megatron.writer import ShardFiles, dtype_for_vocab
from tokenize_stage.packing import pack
from tokenize_stage.tokenizers import load_tokenizer

NAME = "tokenize"
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
    shard: ShardTask
    cfg: TokenizeConfig
    upstream: Upstream  # the stage whose part-NNNNN.parquet is tokenized (None: the source)

    @property
    def marker(self) -> str:
        return self.path(f"_SUCCESS.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"upstream": self.upstream.fingerprint, "tokenize": fingerprint_data(self.cfg)})

    def path(self, *parts: str) -> str:
        return io.join(self.shard.output, NAME, *parts)

    def run(self) -> dict:
        return tokenize_part(self)


def tokenize_part(task: TokenizeTask) -> dict:
    """Tokenizes, packs and writes one part; returns its counts (documents, tokens, samples, padding)."""
    cfg, shard = task.cfg, task.shard
    tok = load_tokenizer(cfg.tokenizer, cfg.threads)
    began = time.perf_counter()  # after the (once per worker) tokenizer load
    docs = Documents(shard, task.upstream.stage, record=True)
    outputs = ShardOutputs(shard, NAME, None)  # rejects and errors; the kept documents become token shards
    provenance = io.ParquetSink(task.path("_provenance", f"{task.part}.parquet"), PROVENANCE_SCHEMA)
    samples = io.ParquetSink(task.path("_samples", f"{task.part}.parquet"), SAMPLES_SCHEMA)
    files = ShardFiles(task.path(), task.part, dtype_for_vocab(tok.vocab_size), cfg.shard_tokens, cfg.compress)
    tokenized = 0
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
                    outputs.write(errors=[exception_error(NAME, doc, exc)])
                    encoded.append(None)
            return encoded

    def accepted(batch: list[dict]) -> list[dict]:
        good = []
        for doc in batch:
            text = doc.get("text")
            reason = "empty_text" if not text or not text.strip() else None
            reason = reason or (None if encodable(text) else "unencodable_text")
            if reason:
                outputs.write(rejects=[reject(doc, NAME, reason)])
            else:
                good.append(doc)
        return good

    def documents() -> Iterator[tuple[int, np.ndarray]]:
        nonlocal tokenized
        position = 0
        for batch in docs.batches():
            good = accepted(batch)
            for doc, ids in zip(good, encode(good)):
                if ids is None:
                    continue
                ids = ([tok.bos_id] if cfg.bos else []) + ids + ([tok.eos_id] if cfg.eos else [])
                meta[position] = {"id": doc["id"], "source": doc.get("source"), "url": doc.get("url"),
                                  "tokens": len(ids), "pieces": 0}
                tokenized += 1
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
    docs.close()
    shards = files.finish()
    for sink in (provenance, samples):
        sink.commit()
    io.write_json_atomic(task.path("_meta", f"{task.part}.json"), {"part": task.part, "shards": shards})
    metrics = outputs.commit(docs_in=docs.count, docs_out=tokenized, **totals, shards=len(shards))
    return {NAME: {**metrics, "seconds": round(time.perf_counter() - began, 3)}}
