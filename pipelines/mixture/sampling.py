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
    """Tokens each stratum should contribute: its weight (default: its token share of the pool) times the budget."""
    shares = weights if weights is not None else pool_tokens
    total = sum(shares.get(s, 0) for s in pool_tokens)
    if total <= 0:
        return {s: 0.0 for s in pool_tokens}
    return {s: budget * shares.get(s, 0) / total for s in pool_tokens}


def fill(tokens: np.ndarray, order_score: np.ndarray | None, tiebreak: np.ndarray, target: float,
         upsample: bool, seed: int) -> np.ndarray:
    """Copies of each candidate (0, 1, or more when upsampled) so that their tokens reach `target`.

    Candidates are taken best `order_score` first (ties by `tiebreak`), or by `tiebreak` alone, while
    the taken tokens are below the target. When all are taken and the target is not reached, further
    copies are drawn with replacement (seeded), in proportion to nothing but chance, as DataMan does.
    """
    copies = np.zeros(len(tokens), dtype=np.int64)
    if not len(tokens) or target <= 0:
        return copies
    order = np.lexsort((tiebreak,) if order_score is None else (tiebreak, -order_score))
    before = np.concatenate([[0], np.cumsum(tokens[order])[:-1]])  # tokens taken before each candidate
    copies[order[before < target]] = 1
    taken = int(tokens[copies > 0].sum())
    if taken >= target or not upsample or tokens.sum() == 0:
        return copies
    rng = np.random.default_rng(seed)
    while taken < target:
        pick = rng.integers(len(tokens), size=max(1, int((target - taken) / max(tokens.mean(), 1)) + 1))
        for i in pick:
            if taken >= target:
                break
            copies[i] += 1
            taken += int(tokens[i])
    return copies
