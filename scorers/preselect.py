"""PreSelect ("Predictive Data Selection", Shum et al. 2025): label documents by how well their
losses under a family of models predict the models' benchmark ranking, then train fastText on them.

- predictive_strength: with models sorted by benchmark score ascending, the share of model pairs
  (i < j, different benchmark scores) whose bits-per-character losses are strictly ordered the same
  way, C_i > C_j (the better model has the lower loss). S in [0, 1].
- seed_labels: positives are the documents with S = 1, negatives are taken from S = 0 upward
  until there are as many (when a small sample has fewer, positives are cut to the same count).
- threshold_for_fraction: the score that keeps the top `fraction` of the pool measured in
  characters (the paper keeps 10 %), estimated on a sample (the select stage's sample of the pool it
  selects from; the thresholds on the training sample stay in the model's sidecar, for information).
- stratified_split / stratified_folds: held-out parts with each class in the same proportion, so
  an accuracy is never measured on one class only.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from scorers import fasttext_model

POSITIVE, NEGATIVE = "1", "0"
SCORE_DECIMALS = 6  # scores are stored rounded (stable across platforms); thresholds are rounded alike


def predictive_strength(losses: np.ndarray, benchmarks: list[float]) -> np.ndarray:
    """losses: (documents, models) bits per character; benchmarks: one score per model."""
    order = np.argsort(np.asarray(benchmarks, dtype=float), kind="stable")
    losses = np.asarray(losses, dtype=float)[:, order]
    scores = np.asarray(benchmarks, dtype=float)[order]
    agree = np.zeros(len(losses))
    pairs = 0
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            if scores[i] == scores[j]:
                continue  # no ranking to predict
            pairs += 1
            agree += losses[:, i] > losses[:, j]
    return agree / pairs if pairs else np.zeros(len(losses))


def seed_labels(strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of positives (S = 1) and of as many negatives, lowest S first (ties by position)."""
    positives = np.flatnonzero(strength >= 1.0)
    rest = np.flatnonzero(strength < 1.0)
    negatives = rest[np.argsort(strength[rest], kind="stable")][: len(positives)]
    return positives[: len(negatives)], negatives  # too few negatives: balance by dropping positives


def threshold_for_fraction(scores: np.ndarray, chars: np.ndarray, fraction: float) -> float:
    """Lowest score kept when documents are taken best-first until `fraction` of all characters: the
    document that crosses it is kept only when that lands closer to `fraction` than stopping before
    it (a 2-million-character page at the boundary would otherwise triple a 10 % selection)."""
    order = np.lexsort((-np.asarray(chars), -np.asarray(scores)))  # by score, then longer first
    cumulative = np.cumsum(np.asarray(chars)[order])
    target = fraction * cumulative[-1]
    cut = min(int(np.searchsorted(cumulative, target)), len(order) - 1)
    if cut > 0 and cumulative[cut] - target > target - cumulative[cut - 1]:
        cut -= 1
    return round(float(np.asarray(scores)[order][cut]), SCORE_DECIMALS)


def stratified_folds(labels: list[str], k: int, seed: int) -> list[np.ndarray]:
    """k disjoint index sets; each class is shuffled (seeded) and dealt round-robin over the folds."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    at = 0
    for label in sorted(set(labels)):
        members = rng.permutation([i for i, y in enumerate(labels) if y == label])
        for i in members:
            folds[at % k].append(int(i))
            at += 1
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def stratified_split(labels: list[str], held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices; every class gives round(held_out x its size) documents, at least one."""
    rng = np.random.default_rng(seed)
    test = []
    for label in sorted(set(labels)):
        members = rng.permutation([i for i, y in enumerate(labels) if y == label])
        test += members[: max(1, round(held_out * len(members)))].tolist()
    test = np.array(sorted(test), dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), test), test


def balanced_accuracy(predicted_positive: np.ndarray, positive: np.ndarray) -> float:
    """The mean of the recall of each class present."""
    recalls = [float(np.mean(predicted_positive[positive == c] == c)) for c in (True, False) if (positive == c).any()]
    return float(np.mean(recalls))


@dataclass
class PreSelectScorer:
    """A trained PreSelect classifier plus its sidecar (`<model>.json`: training report, the ids of the
    documents fastText was trained on, thresholds on the training sample)."""

    path: str
    info: dict

    @classmethod
    def load(cls, path: str) -> "PreSelectScorer":
        sidecar = f"{path}.json"
        if not os.path.isfile(path) or not os.path.isfile(sidecar):
            raise FileNotFoundError(f"PreSelect model needs {path} and {sidecar} (made by `gristmill preselect train`)")
        with open(sidecar) as fh:
            info = json.load(fh)
        return cls(path, info)

    def score(self, texts: list[str]) -> np.ndarray:
        return fasttext_model.load(self.path).probabilities(texts, POSITIVE)
