"""The `.idx` of a Megatron-LM indexed dataset (MMIDIDX v1; layout in README.md) for shards of
fixed-size samples: one sequence, and one document, per sample."""

import struct

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def index_bytes(samples: int, seq_len: int, dtype: np.dtype) -> bytes:
    dtype = np.dtype(dtype)
    lengths = np.full(samples, seq_len, dtype=np.int32)
    pointers = np.arange(samples, dtype=np.int64) * (seq_len * dtype.itemsize)
    documents = np.arange(samples + 1, dtype=np.int64)
    return b"".join([
        HEADER, struct.pack("<Q", 1), struct.pack("<B", DTYPE_CODES[dtype]),
        struct.pack("<Q", samples), struct.pack("<Q", samples + 1),
        lengths.tobytes(), pointers.tobytes(), documents.tobytes(),
    ])
