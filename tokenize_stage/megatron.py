"""Megatron-LM indexed dataset files (`.bin` + `.idx`, "MMIDIDX" version 1), written and read with numpy.

Layout of the .idx (little endian), as `megatron.core.datasets.indexed_dataset` reads it:
  b"MMIDIDX\\x00\\x00", u64 version = 1, u8 dtype code (uint16 = 8, int32 = 4),
  u64 sequence count, u64 document count (= documents + 1),
  int32[sequences] lengths, int64[sequences] byte offsets into .bin, int64[documents + 1] document
  indices (the sequence index where each document starts, then the total).
gristmill writes one Megatron *document* per packed training sample whose *sequences* are the
documents (or chunks) packed into it, so attention can be masked at document boundaries.
"""

import struct

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (as Megatron's optimal_dtype decides), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


class MegatronWriter:
    """Streams samples into `<prefix>.bin` (through an open binary file) and writes `.idx` at the end."""

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


class MegatronIndex:
    """Reads an .idx file (memory-mapped arrays)."""

    def __init__(self, idx_path: str):
        with open(idx_path, "rb") as fh:
            head = fh.read(34)
        if head[:9] != HEADER:
            raise ValueError(f"{idx_path}: not a Megatron index (bad header)")
        version, code, n_seq, n_doc = struct.unpack("<QBQQ", head[9:34])
        if version != 1:
            raise ValueError(f"{idx_path}: unsupported index version {version}")
        self.dtype = CODE_DTYPES[code]
        raw = np.memmap(idx_path, mode="r", dtype=np.uint8)
        offset = 34
        self.lengths = np.frombuffer(raw, np.int32, n_seq, offset)
        offset += self.lengths.nbytes
        self.pointers = np.frombuffer(raw, np.int64, n_seq, offset)
        offset += self.pointers.nbytes
        self.doc_index = np.frombuffer(raw, np.int64, n_doc, offset)
