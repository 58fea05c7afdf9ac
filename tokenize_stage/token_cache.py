"""Tokenize once per release: the mixture stage counts tokens with the release's tokenizer and keeps
the ids it computed (OUT/mixture/_token_ids/part-NNNNN.parquet: id, ids as little-endian uint32);
the tokenize stage reads them instead of encoding again when it reads the mixture's output, whose
documents are the same texts in the same order (upsampled copies back to back)."""

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import io

SCHEMA = pa.schema([("id", pa.string()), ("ids", pa.binary())])
STAGE = "mixture"


def cache_path(output: str, part: str) -> str:
    return io.join(output, STAGE, "_token_ids", f"{part}.parquet")


class CacheWriter:
    """What the mixture stage's map writes, batch by batch, for one part."""

    def __init__(self, output: str, part: str, tokenizer: str):
        self.schema = SCHEMA.with_metadata({"tokenizer": tokenizer})
        self.sink = io.ParquetSink(cache_path(output, part), self.schema)

    def write(self, ids: list[str], encoded: list[np.ndarray]) -> None:
        blobs = [e.astype("<u4", copy=False).tobytes() for e in encoded]
        self.sink.write_table(pa.table({"id": ids, "ids": blobs}, schema=self.schema))

    def commit(self) -> None:
        self.sink.commit()


class TokenCache:
    """Walks one part's cached ids alongside the documents (a subsequence of them, with repeats)."""

    def __init__(self, path: str):
        self.path = path
        self._fh = fsspec.open(path, "rb").open()
        self._batches = pq.ParquetFile(self._fh).iter_batches(batch_size=1000)
        self._ids: list[str] = []
        self._blobs: list[bytes] = []
        self._at = 0

    def _get(self, doc_id: str) -> np.ndarray:
        while True:
            if self._at == len(self._ids):
                batch = next(self._batches, None)
                if batch is None:
                    raise ValueError(f"{self.path}: no cached token ids for document {doc_id!r} (out of order?)")
                self._ids, self._blobs, self._at = batch.column(0).to_pylist(), batch.column(1).to_pylist(), 0
            if self._ids[self._at] == doc_id:
                return np.frombuffer(self._blobs[self._at], dtype="<u4")
            self._at += 1

    def ids(self, docs: list[dict]) -> list[np.ndarray]:
        return [self._get(d["id"]) for d in docs]

    def close(self) -> None:
        self._fh.close()


def cached_ids(shard, upstream, tokenizer: str) -> TokenCache | None:
    """The cache of this part, when the documents are the mixture's and were counted with `tokenizer`."""
    if upstream.stage != STAGE:
        return None
    path = cache_path(shard.output, shard.part)
    if not io.exists(path) or io.read_schema(path).metadata.get(b"tokenizer") != tokenizer.encode():
        return None
    return TokenCache(path)
