"""A byte-level n-gram language model on numpy: the CPU loss backend for PreSelect and CLIMB proxies.

p_c(b | last c bytes) = (N(context, b) + w * p_{c-1}(b)) / (N(context) + w), down to a uniform
p over 256 bytes: an interpolated model, a proper distribution at every order. The back-off weight w is
`beta` (smoothing "dirichlet") or T(context), the number of distinct bytes seen after the context
(smoothing "witten_bell": lambda = N / (N + T)); an unseen context (N = 0) falls back to p_{c-1}.
Counts live in sorted uint64 hash tables; scoring a document is a few vectorised lookups per order.
"""

from typing import Literal

import numpy as np

Smoothing = Literal["dirichlet", "witten_bell"]
SMOOTHINGS = ("dirichlet", "witten_bell")
_TABLE = ("ctx_keys", "ctx_counts", "full_keys", "full_counts", "ctx_types")

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
    def __init__(self, order: int, tables: list[tuple[np.ndarray, ...]], beta: float = 2.0,
                 smoothing: Smoothing = "dirichlet"):
        """tables[c]: (ctx_keys, ctx_counts, full_keys, full_counts, ctx_types) for context length c;
        ctx_types (distinct next bytes per context, aligned with ctx_keys) is needed for witten_bell."""
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing: {smoothing!r} is not one of {', '.join(SMOOTHINGS)}")
        if smoothing == "witten_bell" and any(len(t) < 5 for t in tables):
            raise ValueError("smoothing witten_bell needs the distinct-next-byte counts (ctx_types)")
        self.order, self.tables, self.beta, self.smoothing = order, tables, beta, smoothing

    @classmethod
    def train(cls, texts: list[str], order: int, beta: float = 2.0,
              smoothing: Smoothing = "dirichlet") -> "ByteNgramLM":
        encoded = [_bytes(text) for text in texts]
        tables = []
        for context in range(order):
            pairs = [_keys(data, context) for data in encoded]
            ctx = np.concatenate([c for c, _ in pairs]) if pairs else np.zeros(0, np.uint64)
            full = np.concatenate([f for _, f in pairs]) if pairs else np.zeros(0, np.uint64)
            ctx_keys, ctx_counts = np.unique(ctx, return_counts=True)
            full_keys, first, full_counts = np.unique(full, return_index=True, return_counts=True)
            # each distinct (context, byte) key adds one distinct next byte to its context
            ctx_types = np.bincount(np.searchsorted(ctx_keys, ctx[first]), minlength=len(ctx_keys))
            tables.append((ctx_keys, ctx_counts, full_keys, full_counts, ctx_types))
        return cls(order, tables, beta, smoothing)

    def _weight(self, table: tuple[np.ndarray, ...], ctx: np.ndarray) -> np.ndarray:
        if self.smoothing == "witten_bell":
            return _lookup(table[0], table[4], ctx)
        return np.full(len(ctx), float(self.beta))

    def _interpolate(self, p: np.ndarray, table: tuple[np.ndarray, ...], ctx: np.ndarray,
                     full: np.ndarray) -> np.ndarray:
        n_ctx = _lookup(table[0], table[1], ctx)
        w = self._weight(table, ctx)
        denom = n_ctx + w
        safe = np.where(denom > 0, denom, 1.0)
        return np.where(denom > 0, (_lookup(table[2], table[3], full) + w * p) / safe, p)

    def bits(self, text: str) -> float:
        """Total -log2 p of the text's bytes."""
        data = _bytes(text)
        if not len(data):
            return 0.0
        p = np.full(len(data), 1 / 256)
        for context, table in enumerate(self.tables):
            ctx, full = _keys(data, context)
            p = self._interpolate(p, table, ctx, full)
        return float(-np.log2(p).sum())

    def next_byte_probs(self, prefix: str) -> np.ndarray:
        """p(b | prefix) for all 256 next bytes b (sums to 1)."""
        data = np.concatenate([_bytes(prefix), np.zeros(1, np.uint64)])  # a placeholder for the next byte
        nxt = np.arange(256, dtype=np.uint64)
        p = np.full(256, 1 / 256)
        for context, table in enumerate(self.tables):
            ctx = np.full(256, _keys(data, context)[0][-1], dtype=np.uint64)
            with np.errstate(over="ignore"):
                full = ctx * _MUL + nxt + np.uint64(1 << 20)
            p = self._interpolate(p, table, ctx, full)
        return p

    def bits_per_char(self, text: str) -> float:
        return self.bits(text) / max(len(text), 1)

    def save(self, path: str) -> None:
        arrays = {f"{name}{c}": table[i] for c, table in enumerate(self.tables)
                  for i, name in enumerate(_TABLE[: len(table)])}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, order=self.order, beta=self.beta, smoothing=self.smoothing, **arrays)

    @classmethod
    def load(cls, path: str) -> "ByteNgramLM":
        try:
            z = np.load(path)
            order = int(z["order"])
            names = _TABLE if f"{_TABLE[4]}0" in z.files or order == 0 else _TABLE[:4]  # older files: no types
            tables = [tuple(z[f"{n}{c}"] for n in names) for c in range(order)]
            smoothing = str(z["smoothing"]) if "smoothing" in z.files else "dirichlet"
            beta = float(z["beta"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a gristmill n-gram model: {exc}") from exc
        return cls(order, tables, beta, smoothing)
