"""Reading the Megatron shards back for training without Megatron: each sample with the positions,
loss mask and document boundaries Megatron's GPTDataset derives from the end-of-text token
(`reset_position_ids`, `reset_attention_mask`, `eod_mask_loss`).

`dtype`, `seq_len` and `pad_id` come from the `manifest.json` of the tokenize folder (checked
against the .idx). Use from PyTorch:

    from torch.utils.data import DataLoader, Dataset
    from tokenize_stage.megatron.reader import PackedSamples

    class Shard(Dataset):
        def __init__(self, prefix):
            self.samples = PackedSamples(prefix)
        def __len__(self):
            return len(self.samples)
        def __getitem__(self, i):
            return {k: torch.from_numpy(v) for k, v in self.samples[i].items() if k != "cu_seqlens"}

    loader = DataLoader(Shard("out/sample/tokenize/megatron/part-00000-00000"), batch_size=8)

`cu_seqlens` has a different length per sample: pass it through a custom `collate_fn` (e.g. offset
and concatenate them for flash-attention's varlen kernels).
"""

import os
import struct

import numpy as np

from tokenize_stage.manifest import read_manifest
from tokenize_stage.megatron.writer import DTYPE_CODES, HEADER

CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}


class MegatronIndex:
    """Reads an .idx file (memory-mapped arrays)."""

    def __init__(self, idx_path: str):
        with open(idx_path, "rb") as fh:
            head = fh.read(34)
        if len(head) < 34 or head[:9] != HEADER:
            raise ValueError(f"{idx_path}: not a Megatron index (bad header)")
        version, code, n_seq, n_doc = struct.unpack("<QBQQ", head[9:34])
        if version != 1 or code not in CODE_DTYPES:
            raise ValueError(f"{idx_path}: unsupported index version {version} or dtype code {code}")
        self.dtype = CODE_DTYPES[code]
        raw = np.memmap(idx_path, mode="r", dtype=np.uint8)
        if len(raw) != 34 + n_seq * 12 + n_doc * 8:
            raise ValueError(f"{idx_path}: {len(raw)} bytes, expected {34 + n_seq * 12 + n_doc * 8}")
        offset = 34
        self.lengths = np.frombuffer(raw, np.int32, n_seq, offset)
        offset += self.lengths.nbytes
        self.pointers = np.frombuffer(raw, np.int64, n_seq, offset)
        offset += self.pointers.nbytes
        self.doc_index = np.frombuffer(raw, np.int64, n_doc, offset)


class PackedSamples:
    """The samples of one Megatron shard (`OUT/tokenize/megatron/<shard>`, as listed in the manifest)."""

    def __init__(self, prefix: str):
        folder = os.path.dirname(os.path.dirname(prefix))
        manifest = read_manifest(folder)
        self.index = MegatronIndex(f"{prefix}.idx")
        if self.index.dtype != np.dtype(manifest["dtype"]):
            raise ValueError(f"{prefix}.idx holds {self.index.dtype}, the manifest says {manifest['dtype']}")
        self.seq_len, self.eod = manifest["seq_len"], manifest["pad_id"]
        self.tokens = np.memmap(f"{prefix}.bin", dtype=self.index.dtype, mode="r").reshape(-1, self.seq_len)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        tokens = np.asarray(self.tokens[i], dtype=np.int64)
        ends = np.flatnonzero(tokens == self.eod) + 1  # a document (or a pad) ends at each end-of-text token
        cu_seqlens = np.unique(np.concatenate([[0], ends, [self.seq_len]])).astype(np.int32)
        starts = np.repeat(cu_seqlens[:-1], np.diff(cu_seqlens))
        return {"tokens": tokens, "cu_seqlens": cu_seqlens, "position_ids": np.arange(self.seq_len) - starts,
                "loss_mask": (tokens != self.eod).astype(np.int64)}
