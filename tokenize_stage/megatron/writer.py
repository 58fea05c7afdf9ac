"""Writing token shards: Megatron-LM indexed datasets (`.bin` + `.idx`, MMIDIDX v1; layout in README.md)."""

import os
import struct
import uuid

import fsspec
import numpy as np
import zstandard

from pipelines import io

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (as Megatron's optimal_dtype decides), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


class MegatronWriter:
    """Streams samples into `<prefix>.bin` (through an open binary file) and makes the `.idx` at the end:
    one Megatron document per sample, whose sequences are the pieces packed into it."""

    def __init__(self, bin_file, dtype: np.dtype):
        self._bin, self.dtype = bin_file, np.dtype(dtype)
        self.lengths: list[int] = []
        self.doc_index: list[int] = [0]
        self.tokens = 0

    def add_sample(self, sequences: list[np.ndarray]) -> None:
        self._bin.write(np.concatenate(sequences).astype(self.dtype, copy=False).tobytes())
        self.lengths.extend(len(seq) for seq in sequences)
        self.tokens += sum(len(seq) for seq in sequences)
        self.doc_index.append(len(self.lengths))

    @property
    def samples(self) -> int:
        return len(self.doc_index) - 1

    def index_bytes(self) -> bytes:
        lengths = np.asarray(self.lengths, dtype=np.int32)
        pointers = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths):
            pointers[1:] = np.cumsum(lengths[:-1], dtype=np.int64) * self.dtype.itemsize
        return b"".join([
            HEADER, struct.pack("<Q", 1), struct.pack("<B", DTYPE_CODES[self.dtype]),
            struct.pack("<Q", len(lengths)), struct.pack("<Q", len(self.doc_index)),
            lengths.tobytes(), pointers.tobytes(), np.asarray(self.doc_index, dtype=np.int64).tobytes(),
        ])


class ShardFiles:
    """The token shards of one part, `<folder>/<part>-SSSSS.bin/.idx`, cut after `shard_tokens` tokens,
    each committed by rename (with a `.bin.zst` copy when `compress`)."""

    def __init__(self, folder: str, part: str, dtype: np.dtype, shard_tokens: int, compress: bool):
        self.folder, self.part, self.dtype = folder, part, dtype
        self.shard_tokens, self.compress = shard_tokens, compress
        self.fs, _ = fsspec.core.url_to_fs(folder)
        self.done: list[dict] = []
        self.writer = None
        self._open()

    @property
    def name(self) -> str:
        return f"{self.part}-{len(self.done):05d}"

    def _open(self) -> None:
        _, self._bin_final = fsspec.core.url_to_fs(io.join(self.folder, f"{self.name}.bin"))
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
        if self.writer.tokens >= self.shard_tokens:
            self._close()
            self._open()
        return name, index

    def _close(self) -> None:
        self._fh.close()
        name = self.name
        io.write_bytes_atomic(io.join(self.folder, f"{name}.idx"), self.writer.index_bytes())
        self.fs.mv(self._bin_tmp, self._bin_final)
        entry = {"shard": name, "tokens": self.writer.tokens, "samples": self.writer.samples,
                 "documents": len(self.writer.lengths), "padding": self.padding,
                 "sha256": io.sha256_file(self.fs.unstrip_protocol(self._bin_final))}
        if self.compress:
            _, zst_final = fsspec.core.url_to_fs(io.join(self.folder, f"{name}.bin.zst"))
            zst_tmp = f"{os.path.dirname(zst_final)}/.tmp-{uuid.uuid4().hex}-{name}.bin.zst"
            with self.fs.open(self._bin_final, "rb") as src, self.fs.open(zst_tmp, "wb") as dst:
                zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
            self.fs.mv(zst_tmp, zst_final)
        self.done.append(entry)

    def finish(self) -> list[dict]:
        """The shards written (none empty: Megatron cannot memory-map an empty .bin)."""
        if self.writer.samples:
            self._close()
        else:
            self._fh.close()
            self.fs.rm(self._bin_tmp)
        return self.done
