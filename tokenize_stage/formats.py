"""The output formats of the tokenize stage. Each writes a run of shuffled samples (a (n, seq_len)
array, padded with the end-of-text token) and their piece lengths (document boundaries):

  megatron   megatron/<shard>.bin/.idx   one indexed-dataset sequence (and document) per sample, exactly
             seq_len tokens: stock GPTDataset's windows then coincide with our samples (megatron/README.md)
  mds        mds/<part>/                 MosaicML streaming's MDSWriter: input_ids, lengths; merged index.json
  parquet    parquet/<shard>.parquet     input_ids, lengths (Hugging Face `datasets.load_dataset("parquet")`)

Each writer takes blocks of samples (`write`) and returns, on `close`, the manifest entries of the files
it wrote (path relative to OUT/tokenize, sha256).
"""

import hashlib
import os
import sys
import types

import fsspec
import numpy as np
import pyarrow as pa
import zstandard

from pipelines import io
from tokenize_stage.megatron.writer import index_bytes


def _entry(folder: str, rel: str, **extra) -> dict:
    return {"path": rel, "sha256": io.sha256_file(io.join(folder, rel)), **extra}


class MegatronShard:
    """`megatron/<shard>.bin` streamed block by block (and its .bin.zst with `compress`), then the .idx."""

    def __init__(self, folder: str, shard: str, compress: bool):
        self.rel, self.folder, self.samples = f"megatron/{shard}", folder, 0
        self.bin = io.AtomicFile(io.join(folder, f"{self.rel}.bin"))
        self.zst = io.AtomicFile(io.join(folder, f"{self.rel}.bin.zst")) if compress else None
        self.compressor = zstandard.ZstdCompressor(level=3).compressobj() if compress else None

    def write(self, rows: np.ndarray, lengths: list[np.ndarray]) -> None:
        data = rows.tobytes()
        self.bin.write(data)
        if self.zst:
            self.zst.write(self.compressor.compress(data))
        self.samples += len(rows)
        self.seq_len, self.dtype = rows.shape[1], rows.dtype

    def close(self) -> list[dict]:
        entries = [{"path": f"{self.rel}.bin", "sha256": self.bin.commit(), "samples": self.samples}]
        idx = index_bytes(self.samples, self.seq_len, self.dtype)
        io.write_bytes_atomic(io.join(self.folder, f"{self.rel}.idx"), idx)
        entries.append({"path": f"{self.rel}.idx", "sha256": hashlib.sha256(idx).hexdigest()})
        if self.zst:
            self.zst.write(self.compressor.flush())
            entries.append({"path": f"{self.rel}.bin.zst", "sha256": self.zst.commit()})
        return entries


def lengths_array(lengths: list[np.ndarray]) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum([len(x) for x in lengths], out=offsets[1:])
    values = np.concatenate(lengths).astype(np.int32) if lengths else np.empty(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


PARQUET_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("lengths", pa.list_(pa.int32()))])


class ParquetShard:
    """`parquet/<shard>.parquet`, in row groups of io.GROUP_ROWS samples."""

    def __init__(self, folder: str, shard: str):
        self.folder, self.rel, self.samples = folder, f"parquet/{shard}.parquet", 0
        self.sink = io.ParquetSink(io.join(folder, self.rel), PARQUET_SCHEMA)

    def write(self, rows: np.ndarray, lengths: list[np.ndarray]) -> None:
        offsets = pa.array(np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int32))
        input_ids = pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1).astype(np.int32)))
        self.sink.write_table(pa.table([input_ids, lengths_array(lengths)], schema=PARQUET_SCHEMA))
        self.samples += len(rows)

    def close(self) -> list[dict]:
        self.sink.commit()
        return [_entry(self.folder, self.rel, samples=self.samples)]


def import_streaming():
    """mosaicml-streaming imports its vision datasets (torchvision) on import. Where torchvision cannot
    load (PyPI's wheels are CUDA builds; CPU-only torch here), register that subpackage empty: the
    MDS writer and reader do not use it."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or RuntimeError from a CUDA build on CPU torch
        sys.modules.setdefault("streaming.vision", types.ModuleType("streaming.vision"))
    import streaming

    return streaming


class MdsWriter:
    """One MDS dataset per part (`mds/<part>/`, shards cut by `shard_bytes`); `merge_mds` joins them."""

    def __init__(self, folder: str, part: str, seq_len: int, dtype: np.dtype, shard_bytes: int):
        streaming = import_streaming()
        self.folder, self.rel = folder, f"mds/{part}"
        columns = {"input_ids": f"ndarray:{np.dtype(dtype).name}:{seq_len}", "lengths": "ndarray:int32"}
        self.writer = streaming.MDSWriter(out=io.join(folder, self.rel), columns=columns, compression=None,
                                          size_limit=shard_bytes)

    def write(self, rows: np.ndarray, lengths: list[np.ndarray]) -> None:
        for row, n in zip(rows, lengths):
            self.writer.write({"input_ids": row, "lengths": np.asarray(n, dtype=np.int32)})

    def close(self) -> list[dict]:
        self.writer.finish()
        fs, root = fsspec.core.url_to_fs(io.join(self.folder, self.rel))
        return [_entry(self.folder, f"{self.rel}/{name}") for name in sorted(os.path.basename(p) for p in fs.ls(root))]


def merge_mds(folder: str, parts: list[str]) -> dict | None:
    """`mds/index.json` over every part's MDS dataset (what streaming's merge_index writes: each shard's
    entry with its file named from `mds/`), so `StreamingDataset(local=OUT/tokenize/mds)` reads all.
    Rewritten whole on every run; None (and no index) when no part wrote one."""
    shards = []
    for part in parts:
        path = io.join(folder, "mds", part, "index.json")
        if not io.exists(path):  # a part with an empty slice wrote none
            continue
        for shard in io.read_json(path)["shards"]:
            for key in ("raw_data", "zip_data"):
                if shard.get(key):
                    shard[key] = {**shard[key], "basename": f"{part}/{shard[key]['basename']}"}
            shards.append(shard)
    index = io.join(folder, "mds", "index.json")
    if not shards:
        if io.exists(index):
            fsspec.core.url_to_fs(index)[0].rm(fsspec.core.url_to_fs(index)[1])
        return None
    io.write_json_atomic(index, {"version": 2, "shards": shards})
    return _entry(folder, "mds/index.json")
