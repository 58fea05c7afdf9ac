"""Tokenize once per release: the mixture stage counts tokens with the release's tokenizer and keeps
the ids it computed (OUT/mixture/_token_ids/part-NNNNN.parquet: id, ids as little-endian uint32);
the tokenize stage reads them instead of encoding again when it reads the mixture's output, whose
documents are the same texts in the same order (upsampled copies back to back)."""

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import io

SCHEMA = pa.schema([("id", pa.string()), ("chars", pa.int64()), ("ids", pa.binary())])
STAGE = "mixture"


def cache_path(output: str, part: str) -> str:
    return io.join(output, STAGE, "_token_ids", f"{part}.parquet")


class CacheWriter:
    """What the mixture stage's map writes, batch by batch, for one part."""

    def __init__(self, output: str, part: str, tokenizer: str):
        self.schema = SCHEMA.with_metadata({"tokenizer": tokenizer})
        self.sink = io.ParquetSink(cache_path(output, part), self.schema)

    def write(self, docs: list[dict], encoded: list[np.ndarray]) -> None:
        blobs = [e.astype("<u4", copy=False).tobytes() for e in encoded]
        table = {"id": [d["id"] for d in docs], "chars": [len(d.get("text") or "") for d in docs], "ids": blobs}
        self.sink.write_table(pa.table(table, schema=self.schema))

    def commit(self) -> None:
        self.sink.commit()


class TokenCache:
    """Walks one part's cached ids alongside the documents (a subsequence of them, with repeats). A
    document is matched by id and length; one not found (ids repeated in a part) gets None: encode it."""

    def __init__(self, path: str):
        self.path = path
        self._fh = fsspec.open(path, "rb").open()
        self._batches = pq.ParquetFile(self._fh).iter_batches(batch_size=1000)
        self._rows: list[tuple] = []
        self._at = 0
        self._done = False

    def _get(self, doc: dict) -> np.ndarray | None:
        key = (doc["id"], len(doc["text"]))
        while not self._done:
            if self._at == len(self._rows):
                batch = next(self._batches, None)
                if batch is None:
                    self._done = True  # out of step (an id repeated with another text): encode the rest
                    break
                self._rows = list(zip(*(batch.column(c).to_pylist() for c in ("id", "chars", "ids"))))
                self._at = 0
            doc_id, chars, blob = self._rows[self._at]
            if (doc_id, chars) == key:
                return np.frombuffer(blob, dtype="<u4")
            self._at += 1
        return None

    def ids(self, docs: list[dict]) -> list[np.ndarray | None]:
        return [self._get(d) for d in docs]

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
