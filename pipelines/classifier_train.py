"""`gristmill classifier train SPEC`: a fastText classifier of "text like my target set" against "text
from my pool", DCLM's recipe (word bigrams, lr 0.1, dim 100, 5 epochs; seeded, one thread).

1. Positives: every document with text of the `positives` sources (at most `max_positives`, those with
   the smallest seeded hash of source/id). Negatives: `negatives_per_positive` times as many from the
   `negatives` sources, drawn the same way in bounded memory; a text that is also a positive is skipped.
2. A stratified, seeded held-out split (`held_out` of each class); fastText trains on the rest, with
   the texts prepared as the score stage prepares them (`fasttext_model.preprocess`).
3. On the held-out documents: precision, recall and balanced accuracy at P(positive) >= 0.5, and ROC AUC.
Writes the model (labels `positive`, `negative`) and `<model>.json` beside it: the spec, the counts, the
held-out metrics, the languages seen and the ids trained on (a release's top_fraction threshold on this
classifier's column is measured without them).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import Field

from pipelines.config import load_yaml
from pipelines.preselect_train import FastTextSpec
from pipelines.readers import SourceConfig
from pipelines.sample import iter_texts
from scorers import fasttext_model, langid, preselect
from scorers._config import StrictModel
from scorers.classifiers import POSITIVE, sidecar

NEGATIVE = "negative"


class RecipeSpec(FastTextSpec):
    """fastText's settings; the defaults are DCLM's (its model keeps fastText's end-of-line feature)."""

    zero_eos: bool = False  # True removes the feature every document has (a length bias), as PreSelect does


class ClassifierSpec(StrictModel):
    positives: list[SourceConfig] = Field(min_length=1)  # the target set: any source format
    negatives: list[SourceConfig] = Field(min_length=1)  # the pool, sampled
    negatives_per_positive: float = Field(1.0, gt=0)  # 1: balanced
    max_positives: int = Field(200_000, ge=2)
    held_out: float = Field(0.2, gt=0, lt=1)
    fasttext: RecipeSpec = RecipeSpec()
    seed: int = 0  # of the draws and the held-out split
    output: str


def _paths(sources: list[SourceConfig]) -> list[str]:
    return [p for s in sources for p in s.paths]


def load_spec(path: str) -> ClassifierSpec:
    return load_yaml(path, ClassifierSpec)


def _key(source: str, doc_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{source}/{doc_id}".encode(), digest_size=8).digest(), "big")


def draw(sources: list[SourceConfig], n: int, seed: int, skip: set[bytes] = frozenset()) -> list[tuple[str, str]]:
    """(id, text) of the `n` documents with the smallest seeded key, in that order; one file's records and
    at most 2n drawn documents in memory. Texts whose digest is in `skip` are left out."""
    kept: list[tuple[int, str, str]] = []
    for source in sources:
        for doc_id, text in iter_texts(source):
            if skip and hashlib.sha1(text.encode()).digest() in skip:
                continue
            kept.append((_key(source.name, doc_id, seed), doc_id, text))
            if len(kept) >= 2 * n:
                kept = sorted(kept)[:n]
    return [(doc_id, text) for _, doc_id, text in sorted(kept)[:n]]


def metrics(probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """Held-out precision, recall and balanced accuracy at 0.5, and ROC AUC (both classes are present)."""
    from sklearn.metrics import roc_auc_score

    predicted = probabilities >= 0.5
    true_positives = int((predicted & truth).sum())
    return {"positives": int(truth.sum()), "negatives": int((~truth).sum()),
            "precision": round(true_positives / max(int(predicted.sum()), 1), 4),
            "recall": round(true_positives / max(int(truth.sum()), 1), 4),
            "balanced_accuracy": round(preselect.balanced_accuracy(predicted, truth), 4),
            "roc_auc": round(float(roc_auc_score(truth, probabilities)), 4)}


def train(spec: ClassifierSpec) -> dict:
    positives = draw(spec.positives, spec.max_positives, spec.seed)
    if len(positives) < 2:
        raise ValueError(f"positives: {len(positives)} documents with text in {_paths(spec.positives)}; at least "
                         "2 are needed")
    wanted = max(2, round(len(positives) * spec.negatives_per_positive))
    negatives = draw(spec.negatives, wanted, spec.seed, {hashlib.sha1(t.encode()).digest() for _, t in positives})
    if len(negatives) < 2:
        raise ValueError(f"negatives: {len(negatives)} documents with text (other than the positives) in "
                         f"{_paths(spec.negatives)}; at least 2 are needed")
    docs = positives + negatives
    labels = [POSITIVE] * len(positives) + [NEGATIVE] * len(negatives)
    fit, held = preselect.stratified_split(labels, spec.held_out, spec.seed)
    for label in (POSITIVE, NEGATIVE):
        if not any(labels[i] == label for i in fit):
            raise ValueError(f"held_out: {spec.held_out} of the {labels.count(label)} {label} documents leaves none "
                             "to train on")
    fit = np.random.default_rng(spec.seed).permutation(fit)  # classes interleaved: fastText learns in file order
    f = spec.fasttext
    model = fasttext_model.train_supervised(
        [docs[i][1] for i in fit], [labels[i] for i in fit], spec.output, lr=f.lr, dim=f.dim, epoch=f.epoch,
        word_ngrams=f.word_ngrams, bucket=f.bucket, seed=f.seed, zero_eos=f.zero_eos)
    held_out = metrics(model.probabilities([docs[i][1] for i in held], POSITIVE),
                       np.array([labels[i] == POSITIVE for i in held]))
    info = {
        "spec": spec.model_dump(mode="json"),
        "labels": [POSITIVE, NEGATIVE],
        "documents": {"positives": len(positives), "negatives": len(negatives), "train": len(fit),
                      "held_out": len(held)},
        "held_out": held_out,
        "languages": langid.language_counts([docs[i][1] for i in fit]),
        "trained_ids": sorted(docs[i][0] for i in fit),
    }
    Path(f"{spec.output}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    sidecar.cache_clear()
    return info
