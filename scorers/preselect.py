"""PreSelect ("Predictive Data Selection", Shum et al. 2025): label documents by how well their
losses under a family of models predict the models' benchmark ranking, then train fastText on them.

- predictive_strength: with models sorted by benchmark score ascending, the share of model pairs
  (i < j, different benchmark scores) whose bits-per-character losses are strictly ordered the same
  way, C_i > C_j (the better model has the lower loss). S in [0, 1].
- seed_labels: positives are the documents with S = 1, negatives are taken from S = 0 upward
  until there are as many (when a small sample has fewer, positives are cut to the same count).
- threshold_for_fraction: the score that keeps the top `fraction` of the pool measured in
  characters (the paper keeps 10 %), estimated on a sample and stored with the model.
"""

import json
import os
from dataclasses import dataclass

import numpy as np

from scorers import fasttext_model

POSITIVE, NEGATIVE = "1", "0"


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
    """Lowest score kept when documents are taken best-first until `fraction` of all characters."""
    order = np.lexsort((-np.asarray(chars), -np.asarray(scores)))  # by score, then longer first
    cumulative = np.cumsum(np.asarray(chars)[order])
    cut = int(np.searchsorted(cumulative, fraction * cumulative[-1]))
    return float(np.asarray(scores)[order][min(cut, len(order) - 1)])


@dataclass
class PreSelectScorer:
    """A trained PreSelect classifier plus its sidecar (`<model>.json`: thresholds, training report)."""

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

    def threshold(self, fraction: float) -> float:
        table = self.info.get("thresholds", {})
        key = f"{fraction:g}"
        if key not in table:
            raise KeyError(f"{self.path}: no threshold recorded for top_fraction {key}; recorded: {sorted(table)}")
        return table[key]
