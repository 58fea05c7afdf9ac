"""Reading token shards back for training: tokens padded to seq_len plus the document boundaries.

The shard's dtype and seq_len come from the `manifest.json` beside it (checked against the .idx).

Use from PyTorch:

    from torch.utils.data import DataLoader, Dataset
    from tokenize_stage.megatron.reader import PackedSamples

    class Shard(Dataset):
        def __init__(self, prefix):
            self.samples = PackedSamples(prefix)
        def __len__(self):
            return len(self.samples)
        def __getitem__(self, i):
            s = self.samples[i]
            return {k: torch.from_numpy(v) for k, v in s.items() if k != "cu_seqlens"}

    loader = DataLoader(Shard("out/sample/tokenize/part-00000-00000"), batch_size=8)

`cu_seqlens` has a different length per sample, so pass it through a custom `collate_fn`
(e.g. offset and concatenate them for flash-attention's varlen kernels) or rebuild a block-diagonal
attention mask from `position_ids` (a document starts wherever it is 0).
"""

import os
import struct

import numpy as np

from tokenize_stage.megatron.manifest import read_manifest
from tokenize_stage.megatron.writer import DTYPE_CODES, HEADER

CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


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


class PackedSamples:
    """The samples of one shard (`<folder>/<part>-SSSSS`, as listed in `<folder>/manifest.json`)."""

    def __init__(self, prefix: str, pad_id: int = 0):
        folder, shard = os.path.split(prefix)
        manifest = read_manifest(folder)
        if shard not in {s["shard"] for s in manifest["shards"]}:
            raise ValueError(f"{prefix}: not a shard listed in {folder}/manifest.json")
        self.index = MegatronIndex(f"{prefix}.idx")
        if self.index.dtype != np.dtype(manifest["dtype"]):
            raise ValueError(f"{prefix}.idx holds {self.index.dtype}, the manifest says {manifest['dtype']}")
        self.tokens = np.memmap(f"{prefix}.bin", dtype=self.index.dtype, mode="r")
        self.seq_len, self.pad_id = manifest["seq_len"], pad_id

    def __len__(self) -> int:
        return len(self.index.doc_index) - 1

    def sequences(self, i: int) -> list[np.ndarray]:
        """The documents (or chunks) packed into sample i, unpadded."""
        lo, hi = self.index.doc_index[i], self.index.doc_index[i + 1]
        size = self.index.dtype.itemsize
        return [self.tokens[p // size : p // size + n] for p, n in zip(self.index.pointers[lo:hi],
                                                                          self.index.lengths[lo:hi])]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo, hi = self.index.doc_index[i], self.index.doc_index[i + 1]
        lengths = self.index.lengths[lo:hi].astype(np.int64)
        n = int(lengths.sum())
        first = self.index.pointers[lo] // self.index.dtype.itemsize if hi > lo else 0
        tokens = np.full(self.seq_len, self.pad_id, dtype=np.int64)
        tokens[:n] = self.tokens[first : first + n]  # a sample's sequences are contiguous in .bin
        cu_seqlens = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        position_ids = np.zeros(self.seq_len, dtype=np.int64)
        position_ids[:n] = np.arange(n) - np.repeat(cu_seqlens[:-1], lengths)
        loss_mask = np.zeros(self.seq_len, dtype=np.int64)
        loss_mask[:n] = 1
        return {"tokens": tokens, "cu_seqlens": cu_seqlens, "position_ids": position_ids, "loss_mask": loss_mask}
