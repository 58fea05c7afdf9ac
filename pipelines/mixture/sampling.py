"""Filling a token budget stratum by stratum (pure functions over a table of document features).

Every order here is deterministic: ties and random draws come from the seed and the document ids,
never from the order in which shards arrived.
"""

import numpy as np
import xxhash


def seeded_keys(ids: list[str], seed: int) -> np.ndarray:
    """A reproducible pseudo-random uint64 per id (the tie-break and sampling order)."""
    return np.array([xxhash.xxh64_intdigest(i.encode(), seed=seed) for i in ids], dtype=np.uint64)


def targets(pool_tokens: dict[str, int], budget: int, weights: dict[str, float] | None) -> dict[str, float]:
    """Tokens each stratum should contribute: its weight (default: its share of `pool_tokens`, the tokens its
    share is counted over) times the budget."""
    shares = weights if weights is not None else pool_tokens
    total = sum(shares.get(s, 0) for s in pool_tokens)
    if total <= 0:
        return {s: 0.0 for s in pool_tokens}
    return {s: budget * shares.get(s, 0) / total for s in pool_tokens}


def fill(tokens: np.ndarray, order_score: np.ndarray | None, tiebreak: np.ndarray, target: float,
         upsample: bool, seed: int, max_copies: int = 1 << 30) -> np.ndarray:
    """Copies of each candidate (0, 1, or more when upsampled) so that their tokens come close to `target`.

    Candidates are taken best `order_score` first (ties by `tiebreak`), or by `tiebreak` alone; one that
    would overshoot the target is passed over for later, smaller ones, and at the end the candidate
    that brings the total closest to the target is added if it helps. When every candidate is taken
    and the target is not reached, further copies are drawn with replacement (seeded), as DataMan
    does, never more than `max_copies` of one.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    copies = np.zeros(len(tokens), dtype=np.int64)
    if not len(tokens) or target <= 0:
        return copies
    order = np.lexsort((tiebreak,) if order_score is None else (tiebreak, -order_score))
    taken = 0
    for i in order:
        if taken + tokens[i] <= target:
            copies[i] = 1
            taken += int(tokens[i])
    taken = _closest(tokens, copies, taken, target, copies == 0, order)
    if not upsample or taken >= target or copies.min() == 0:
        return copies
    rng = np.random.default_rng(seed)
    while taken < target:
        fits = np.flatnonzero((copies < max_copies) & (tokens > 0) & (taken + tokens <= target))
        if not len(fits):
            taken = _closest(tokens, copies, taken, target, copies < max_copies, order)
            break
        i = fits[rng.integers(len(fits))]
        copies[i] += 1
        taken += int(tokens[i])
    return copies


def _closest(tokens: np.ndarray, copies: np.ndarray, taken: int, target: float, allowed: np.ndarray,
             order: np.ndarray) -> int:
    """Adds one more copy of the allowed candidate that brings `taken` closest to `target`, if that helps
    (the first in `order` among equals)."""
    index = order[(allowed & (tokens > 0))[order]]
    if taken >= target or not len(index):
        return taken
    best = index[np.argmin(np.abs(taken + tokens[index] - target))]
    if abs(taken + tokens[best] - target) < target - taken:
        copies[best] += 1
        taken += int(tokens[best])
    return taken
