"""Packed samples before the release-wide shuffle: per part (and once for the release-level leftovers)

  _packed/<name>.bin            samples back to back, exactly seq_len tokens each (padded with `pad`)
  _samples/<name>.parquet       one row per sample: tokens, padding, pieces, piece lengths
  _provenance/<name>.parquet    one row per piece: which document (id, source, url) and token offsets

Fixed-size samples make any sample readable by offset, which the shuffled writers need.
"""

import numpy as np
import pyarrow as pa

from pipelines import io
from tokenize_stage.packing import Piece

PROVENANCE_SCHEMA = pa.schema([
    ("part", pa.string()), ("sample", pa.int64()), ("seq", pa.int32()), ("doc_id", pa.string()),
    ("source", pa.string()), ("url", pa.string()), ("doc_token_start", pa.int64()), ("tokens", pa.int32()),
    ("doc_tokens", pa.int64()), ("split", pa.bool_()),
])
SAMPLES_SCHEMA = pa.schema([
    ("part", pa.string()), ("sample", pa.int64()), ("tokens", pa.int32()), ("padding", pa.int32()),
    ("pieces", pa.int32()), ("lengths", pa.list_(pa.int32())),
])
BLOCK = 256  # samples per write


class _Columns:
    """Rows kept as columns and handed to a ParquetSink as one Arrow table per block: per-row dicts
    cost more than the packing itself."""

    def __init__(self, path: str, schema: pa.Schema, block: int = 4096):
        self.sink, self.schema, self.block = io.ParquetSink(path, schema), schema, block
        self.columns = {name: [] for name in schema.names}

    def add(self, **row) -> None:
        for name, value in row.items():
            self.columns[name].append(value)
        if len(self.columns[self.schema.names[0]]) >= self.block:
            self._flush()

    def _flush(self) -> None:
        if self.columns[self.schema.names[0]]:
            self.sink.write_table(pa.table(self.columns, schema=self.schema))
            self.columns = {name: [] for name in self.schema.names}

    def commit(self) -> int:
        self._flush()
        return self.sink.commit()


def packed_path(folder: str, name: str) -> str:
    return io.join(folder, "_packed", f"{name}.bin")


class StagedSamples:
    """Writes one staged file set; `meta` maps a piece's document to its id, source, url and length."""

    def __init__(self, folder: str, name: str, seq_len: int, dtype: np.dtype, pad: int):
        self.name, self.seq_len, self.dtype, self.pad = name, seq_len, np.dtype(dtype), pad
        self._bin = io.AtomicFile(packed_path(folder, name))
        self.samples = _Columns(io.join(folder, "_samples", f"{name}.parquet"), SAMPLES_SCHEMA)
        self.provenance = _Columns(io.join(folder, "_provenance", f"{name}.parquet"), PROVENANCE_SCHEMA)
        self.block = np.full((BLOCK, seq_len), pad, dtype=self.dtype)
        self.in_block = 0
        self.count = 0
        self.totals = {"tokens": 0, "padding": 0, "pieces": 0}

    def add(self, sample: list[Piece], meta) -> None:
        row, at = self.block[self.in_block], 0
        lengths = []
        for j, piece in enumerate(sample):
            n = len(piece)
            row[at : at + n] = piece.tokens
            at += n
            lengths.append(n)
            doc_id, source, url, doc_tokens = meta(piece.doc)
            self.provenance.add(part=self.name, sample=self.count, seq=j, doc_id=doc_id, source=source, url=url,
                                doc_token_start=piece.start, tokens=n, doc_tokens=doc_tokens, split=n < doc_tokens)
        self.samples.add(part=self.name, sample=self.count, tokens=at, padding=self.seq_len - at,
                         pieces=len(sample), lengths=lengths)
        self.totals["tokens"] += at
        self.totals["padding"] += self.seq_len - at
        self.totals["pieces"] += len(sample)
        self.count += 1
        self.in_block += 1
        if self.in_block == BLOCK:
            self._flush()

    def _flush(self) -> None:
        self._bin.write(self.block[: self.in_block].tobytes())
        self.block[: self.in_block] = self.pad
        self.in_block = 0

    def commit(self) -> dict:
        self._flush()
        self._bin.commit()
        self.samples.commit()
        self.provenance.commit()
        return {**self.totals, "samples": self.count}


def read_packed(folder: str, name: str, seq_len: int, dtype: np.dtype) -> np.ndarray:
    """The staged samples of `name` as a (samples, seq_len) array (memory-mapped when local)."""
    return io.read_array(packed_path(folder, name), dtype).reshape(-1, seq_len)
