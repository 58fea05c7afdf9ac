"""A byte-level n-gram language model on numpy: the CPU loss backend for PreSelect and CLIMB proxies.

p_c(b | last c bytes) = (N(context, b) + beta * p_{c-1}(b)) / (N(context) + beta), down to a uniform
p over 256 bytes: an interpolated (Dirichlet-smoothed) model, a proper distribution at every order.
Counts live in sorted uint64 hash tables; scoring a document is a few vectorised lookups per order.
"""

import numpy as np

_MUL = np.uint64(0x100000001B3)


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.uint64)


def _keys(data: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(context hash, context+next-byte hash) for every position; the text start is padded with 0s."""
    padded = np.concatenate([np.zeros(context, dtype=np.uint64), data + np.uint64(1)])
    ctx = np.full(len(data), np.uint64(context + 1), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(context):
            ctx = ctx * _MUL + padded[k : k + len(data)]
        full = ctx * _MUL + data + np.uint64(1 << 20)
    return ctx, full


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(query), dtype=np.float64)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, counts[i], 0).astype(np.float64)


class ByteNgramLM:
    def __init__(self, order: int, tables: list[tuple[np.ndarray, ...]], beta: float = 2.0):
        self.order, self.tables, self.beta = order, tables, beta

    @classmethod
    def train(cls, texts: list[str], order: int, beta: float = 2.0) -> "ByteNgramLM":
        tables = []
        for context in range(order):
            ctx_all, full_all = [], []
            for text in texts:
                ctx, full = _keys(_bytes(text), context)
                ctx_all.append(ctx)
                full_all.append(full)
            ctx_keys, ctx_counts = np.unique(np.concatenate(ctx_all) if ctx_all else np.zeros(0, np.uint64),
                                             return_counts=True)
            full_keys, full_counts = np.unique(np.concatenate(full_all) if full_all else np.zeros(0, np.uint64),
                                               return_counts=True)
            tables.append((ctx_keys, ctx_counts, full_keys, full_counts))
        return cls(order, tables, beta)

    def bits(self, text: str) -> float:
        """Total -log2 p of the text's bytes."""
        data = _bytes(text)
        if not len(data):
            return 0.0
        p = np.full(len(data), 1 / 256)
        for context, (ctx_keys, ctx_counts, full_keys, full_counts) in enumerate(self.tables):
            ctx, full = _keys(data, context)
            p = (_lookup(full_keys, full_counts, full) + self.beta * p) / (_lookup(ctx_keys, ctx_counts, ctx)
                                                                          + self.beta)
        return float(-np.log2(p).sum())

    def bits_per_char(self, text: str) -> float:
        return self.bits(text) / max(len(text), 1)

    def save(self, path: str) -> None:
        arrays = {f"{name}{c}": table[i] for c, table in enumerate(self.tables)
                  for i, name in enumerate(("ctx_keys", "ctx_counts", "full_keys", "full_counts"))}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, order=self.order, beta=self.beta, **arrays)

    @classmethod
    def load(cls, path: str) -> "ByteNgramLM":
        try:
            z = np.load(path)
            order = int(z["order"])
            tables = [tuple(z[f"{n}{c}"] for n in ("ctx_keys", "ctx_counts", "full_keys", "full_counts"))
                      for c in range(order)]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a gristmill n-gram model: {exc}") from exc
        return cls(order, tables, float(z["beta"]))
