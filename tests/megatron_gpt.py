"""Runs megatron-core's own, unmodified GPTDataset over one indexed dataset prefix (<prefix>.bin/.idx).

The tests use it to check that our token shards give the training windows Megatron would build. GPTDataset is
built directly, not through BlendedMegatronDatasetBuilder, so torch.distributed is never needed.
"""

from __future__ import annotations

import numpy as np


class _Tokenizer:
    """The little GPTDataset asks of a tokenizer: the EOD id and a JSON-serialisable identity for its cache key.

    Having no `pad` attribute, it makes Megatron pad with -1 (which it then masks), never with EOD.
    """

    vocab_size = None  # None: the token dtype is read from the .idx file

    def __init__(self, eod: int) -> None:
        self.eod = eod
        self.unique_identifiers = {"class": "gristmill-test-tokenizer", "eod": eod}


def gpt_dataset_samples(
    prefix: str, seq_len: int, eod: int, cache_dir: str, add_extra_token: bool, limit: int | None = None
) -> list[dict[str, np.ndarray]]:
    """The first `limit` items (all if None) of a one-epoch GPTDataset over `prefix`, in the dataset's own order.

    Each item maps "tokens", "labels", "loss_mask", "position_ids" and "attention_mask" to numpy arrays.
    `cache_dir` must be fresh for each call: Megatron keys its index cache on the path and settings, not on
    the files' contents, and would reuse a stale one.
    """
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=seq_len,
        blend=([prefix], None),  # a blend keeps mock off; the dataset itself is built below
        split="1,0,0",
        path_to_cache=cache_dir,
        tokenizer=_Tokenizer(eod),
        reset_position_ids=True,
        reset_attention_mask=True,
        eod_mask_loss=True,
        add_extra_token_to_sequence=add_extra_token,
    )
    indexed = IndexedDataset(prefix)
    every_sequence = np.arange(len(indexed), dtype=np.int32)
    dataset = GPTDataset(indexed, prefix, every_sequence, None, Split.train, config)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return [{key: value.numpy() for key, value in dataset[i].items()} for i in range(count)]
