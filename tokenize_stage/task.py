"""The tokenize phase: per input shard, tokenize the kept documents, pack them, stage the samples.

Runs after the stages before it for the same part (reading their output), or straight from the
reader for text sources when nothing comes before it. Outputs under OUT/tokenize/:
  _packed, _samples, _provenance /part-NNNNN.*   the part's full samples (staging.py)
  _leftover/part-NNNNN.bin/.parquet              pieces of samples not yet full, for the release step
plus _rejects, _errors, _stats and the _SUCCESS marker, like every stage. The release-level step
(shuffle.py) packs the leftovers and orders every sample; the writers (write.py) write the formats.
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
from tokenize_stage.packing import Piece, pack
from tokenize_stage.staging import StagedSamples
from tokenize_stage.token_cache import cached_ids
from tokenize_stage.tokenizers import load_tokenizer

NAME = "tokenize"
LEFTOVER_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("source", pa.string()), ("url", pa.string()), ("doc_token_start", pa.int64()),
    ("tokens", pa.int32()), ("doc_tokens", pa.int64()),
])
PACKING_KEYS = ("tokenizer", "eos", "bos", "seq_len", "pack", "window", "dtype")  # what staged samples depend on


def packing_fingerprint(cfg: TokenizeConfig) -> dict:
    data = fingerprint_data(cfg)
    return {k: data[k] for k in PACKING_KEYS}


def token_dtype(cfg: TokenizeConfig, vocab_size: int) -> np.dtype:
    """The configured dtype; auto: uint16 when every id fits (as Megatron's optimal_dtype decides), else int32."""
    if cfg.dtype != "auto":
        return np.dtype(cfg.dtype)
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def pad_id(tok) -> int:
    """Samples are padded with the end-of-text token: Megatron then masks the padding's loss and
    attention (`eod_mask_loss`, `reset_attention_mask`) and resets positions after it."""
    return tok.eos_id if tok.eos_id is not None else 0


@dataclass(frozen=True)
class TokenizeTask(OfShard):
    shard: ShardTask
    cfg: TokenizeConfig
    upstream: Upstream  # the stage whose part-NNNNN.parquet is tokenized (None: the source)

    @property
    def marker(self) -> str:
        return self.path(f"_SUCCESS.{self.part}")

    def fingerprint(self) -> str:
        return io.sha256_json({"upstream": self.upstream.fingerprint, "tokenize": packing_fingerprint(self.cfg)})

    def path(self, *parts: str) -> str:
        return io.join(self.shard.output, NAME, *parts)

    def run(self) -> dict:
        return tokenize_part(self)


def tokenize_part(task: TokenizeTask) -> dict:
    """Tokenizes, packs and stages one part; returns its counts (documents, tokens, samples, padding)."""
    cfg, shard = task.cfg, task.shard
    tok = load_tokenizer(cfg.tokenizer, cfg.threads)
    began = time.perf_counter()  # after the (once per worker) tokenizer load
    docs = Documents(shard, task.upstream.stage, record=True)
    outputs = ShardOutputs(shard, NAME, None)  # rejects and errors; the kept documents become samples
    dtype = token_dtype(cfg, tok.vocab_size)
    staged = StagedSamples(task.path(), task.part, cfg.seq_len, dtype, pad_id(tok))
    cache = cached_ids(shard, task.upstream, cfg.tokenizer)  # the mixture stage's token ids, when it ran
    prefix = np.array([tok.bos_id] if cfg.bos else [], dtype)
    suffix = np.array([tok.eos_id] if cfg.eos else [], dtype)
    meta: dict[int, tuple] = {}  # position -> (id, source, url, tokens): documents with pieces to place
    tokenized = 0

    def encode(good: list[dict]) -> list[np.ndarray | None]:
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
        for batch in docs.batches():
            good = accepted(batch)
            encoded = cache.ids(good) if cache else [None] * len(good)
            missing = [i for i, ids in enumerate(encoded) if ids is None]
            for i, ids in zip(missing, encode([good[i] for i in missing])):
                encoded[i] = ids
            for doc, ids in zip(good, encoded):
                if ids is None:
                    continue
                if not len(ids) and not (cfg.bos or cfg.eos):
                    outputs.write(rejects=[reject(doc, NAME, "empty_tokens")])  # the tokenizer dropped every character
                    continue
                ids = np.concatenate((prefix, ids, suffix), dtype=dtype, casting="unsafe")  # ids < vocab: checked
                meta[tokenized] = (doc["id"], doc.get("source"), doc.get("url"), len(ids))
                yield tokenized, ids
                tokenized += 1

    packed = pack(documents(), cfg.pack, cfg.seq_len, cfg.window)
    split_docs = split_fitting = 0
    while True:
        try:
            sample = next(packed)
        except StopIteration as done:
            leftovers = done.value
            break
        staged.add(sample, meta.__getitem__)
        for piece in sample:
            doc_tokens = meta[piece.doc][3]
            if piece.start + len(piece) == doc_tokens:  # its last piece: the others were placed before it
                if piece.start:
                    split_docs += 1
                    split_fitting += doc_tokens <= cfg.seq_len
                del meta[piece.doc]
    docs.close()
    if cache:
        cache.close()
    totals = staged.commit()
    write_leftovers(task.path("_leftover"), task.part, leftovers, meta, dtype)
    left = sum(len(p) for p in leftovers)
    metrics = outputs.commit(docs_in=docs.count, docs_out=tokenized, tokens=totals["tokens"] + left,
                             staged_samples=totals["samples"], padding=totals["padding"], leftover_tokens=left,
                             split_docs=split_docs, split_docs_that_fit=split_fitting,
                             cached_docs=tokenized if cache else 0)
    return {NAME: {**metrics, "seconds": round(time.perf_counter() - began, 3)}}


def write_leftovers(folder: str, part: str, pieces: list[Piece], meta: dict, dtype: np.dtype) -> None:
    """The open pieces of a part: their tokens back to back (.bin) and one row per piece (.parquet)."""
    rows = [dict(zip(("doc_id", "source", "url"), meta[p.doc][:3]), doc_token_start=p.start, tokens=len(p),
                 doc_tokens=meta[p.doc][3]) for p in pieces]
    tokens = np.concatenate([p.tokens for p in pieces]).astype(dtype) if pieces else np.empty(0, dtype)
    io.write_bytes_atomic(io.join(folder, f"{part}.bin"), tokens.tobytes())
    io.write_table_atomic(io.join(folder, f"{part}.parquet"), rows, LEFTOVER_SCHEMA)
