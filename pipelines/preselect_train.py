"""`gristmill preselect train SPEC`: build a PreSelect scorer from a sample of documents.

1. Read the sample (any source format; WARC records go through the extract stage) and split it, in
   an order seeded by content, into a reference part (trains the n-gram model family) and a seed part.
2. The family: each model is trained on a slice of the reference (a share of it, one of its sources,
   or one cluster of a seeded k-means over it), at most `train_chars` characters each so that models
   differ in what they saw rather than how much; its benchmark is given, or `measured` as its bits
   per character on the `target` source (lower is better).
3. Loss (bits per character) of every seed document under every model; predictive strength S
   against the benchmarks; positives S = 1, negatives from S = 0 upward (PreSelect's recipe).
4. fastText with the paper's settings on a stratified, seeded 80 % of the labelled documents; accuracy
   and balanced accuracy on the other 20 % (both classes in it), with the class counts and the
   majority baseline, and stratified 5-fold cross-validation.
5. Score thresholds that keep each `fractions` share of characters, on the seed documents the
   classifier was not trained on, rounded as the scores are: for information (a release's `select`
   measures its `top_fraction` threshold on the pool it selects from, leaving out `trained_ids`).
Writes the model and `<model>.json` (family, counts, accuracies, thresholds, the ids of the documents
fastText was trained on).
"""

import json
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from pipelines.config import load_yaml
from pipelines.readers import SourceConfig
from pipelines.sample import sample_texts
from scorers import fasttext_model, langid, preselect
from scorers._config import StrictModel
from scorers.ngram_lm import ByteNgramLM


class Slice(StrictModel):
    """What part of the reference a model is trained on: a `share` of it (from its start), the
    documents of one of `reference_sources` (`source`), or `cluster` K `of` N (seeded k-means)."""

    share: float | None = Field(None, gt=0, le=1)
    source: str | None = None
    cluster: int | None = Field(None, ge=0)
    of: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _one_kind(self) -> "Slice":
        kinds = [self.share is not None, self.source is not None, self.cluster is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of share, source, cluster (with of)")
        if (self.cluster is None) != (self.of is None) or (self.cluster is not None and self.cluster >= self.of):
            raise ValueError("cluster K needs of N, with K < N")
        return self


class LMSpec(StrictModel):
    kind: Literal["ngram", "hf"]
    benchmark: float | Literal["measured"]  # a score where higher is better (only the order matters)
    order: int | None = Field(None, ge=1)  # ngram
    train_share: float | None = Field(None, gt=0, le=1)  # ngram: shorthand for train: {share: x}
    train: Slice | None = None  # ngram: its slice of the reference (default: all of it)
    path: str | None = None  # hf: a local model folder


class FastTextSpec(StrictModel):
    lr: float = Field(0.1, gt=0)
    dim: int = Field(100, ge=1)
    epoch: int = Field(5, ge=1)
    word_ngrams: int = Field(2, ge=1)
    bucket: int = Field(2_000_000, ge=1)  # fastText's default; a small sample needs far fewer
    seed: int = 0


class TrainSpec(StrictModel):
    sample: SourceConfig
    reference_share: float = Field(0.5, gt=0, lt=1)  # of the sample, used to train the n-gram models
    reference_sources: list[SourceConfig] = []  # more reference text, for slices by `source`
    target: SourceConfig | None = None  # where `measured` benchmarks are measured
    train_chars: int | None = Field(None, ge=1000)  # characters each n-gram model is trained on, at most
    max_docs: int = Field(20_000, ge=10)
    models: list[LMSpec] = Field(min_length=2)
    fasttext: FastTextSpec = FastTextSpec()
    fractions: list[float] = [0.1, 0.3, 0.5]
    seed: int = 0  # of the held-out split, the folds and the k-means
    output: str

    @model_validator(mode="after")
    def _measured_needs_target(self) -> "TrainSpec":
        names = {s.name for s in self.reference_sources}
        for i, m in enumerate(self.models):
            if m.benchmark == "measured" and self.target is None:
                raise ValueError(f"models[{i}].benchmark: measured needs a `target` source")
            if m.train is not None and m.train.source is not None and m.train.source not in names:
                raise ValueError(f"models[{i}].train.source: {m.train.source!r} is not one of reference_sources "
                                 f"{sorted(names)}")
        return self


def load_spec(path: str) -> TrainSpec:
    return load_yaml(path, TrainSpec)


def _slices(spec: TrainSpec, reference: list[tuple[str, str]]) -> list[list[str]]:
    """The training texts of each model, each cut to `train_chars`."""
    texts = [t for _, t in reference]
    by_source = {s.name: [t for _, t in sample_texts(s, spec.max_docs)] for s in spec.reference_sources}
    clusters = {}
    out = []
    for i, m in enumerate(spec.models):
        part = m.train or Slice(share=m.train_share or 1.0)
        if part.share is not None:
            chosen = texts[: max(1, int(len(texts) * part.share))]
        elif part.source is not None:
            chosen = by_source[part.source]
        else:
            if part.of not in clusters:
                clusters[part.of] = _kmeans(texts, part.of, spec.seed)
            chosen = [t for t, c in zip(texts, clusters[part.of]) if c == part.cluster]
        if spec.train_chars:
            kept, total = [], 0
            for t in chosen:
                if total >= spec.train_chars:
                    break
                kept.append(t[: spec.train_chars - total])
                total += len(kept[-1])
            chosen = kept
        if not chosen:
            raise ValueError(f"models[{i}].train: the slice {part.model_dump(exclude_none=True)} has no documents")
        out.append(chosen)
    return out


def _kmeans(texts: list[str], k: int, seed: int) -> np.ndarray:
    from pipelines.mixture.climb import kmeans
    from pipelines.mixture.config import ClimbConfig
    from scorers.embed import embed

    cfg = ClimbConfig(clusters=k, seed=seed)
    return kmeans(embed(texts, cfg.embed), k, cfg)[0]


def _family(spec: TrainSpec, reference: list[tuple[str, str]]) -> tuple[list, list[float]]:
    """(loss functions text -> bits per character, benchmark per model)."""
    losses, benchmarks = [], []
    slices = _slices(spec, reference) if any(m.kind == "ngram" for m in spec.models) else []
    target = None
    if spec.target is not None:
        target = [t for _, t in sample_texts(spec.target, spec.max_docs)]
        if not target:
            raise ValueError(f"target: no documents with text in {spec.target.paths}")
    for i, m in enumerate(spec.models):
        if m.kind == "ngram":
            lm = ByteNgramLM.train(slices[i], m.order or 3)
            losses.append(lambda texts, lm=lm: [lm.bits_per_char(t) for t in texts])
        else:
            from scorers.hf_lm import HFCausalLM

            losses.append(HFCausalLM(m.path).bits_per_char)
        if m.benchmark == "measured":  # lower bits per character on the target = a better model
            benchmarks.append(-float(np.mean(losses[-1](target))))
        else:
            benchmarks.append(float(m.benchmark))
    return losses, benchmarks


def _train_fasttext(spec: TrainSpec, texts: list[str], labels: list[str], path: str):
    f = spec.fasttext
    return fasttext_model.train_supervised(texts, labels, path, lr=f.lr, dim=f.dim, epoch=f.epoch,
                                           word_ngrams=f.word_ngrams, bucket=f.bucket, seed=f.seed)


def _evaluate(model, texts: list[str], labels: list[str]) -> dict:
    predicted = model.probabilities(texts, preselect.POSITIVE) >= 0.5
    truth = np.array([y == preselect.POSITIVE for y in labels])
    return {"accuracy": round(float(np.mean(predicted == truth)), 4),
            "balanced_accuracy": round(preselect.balanced_accuracy(predicted, truth), 4),
            "positives": int(truth.sum()), "negatives": int((~truth).sum()),
            "majority_baseline": round(float(max(truth.mean(), 1 - truth.mean())), 4)}


def train(spec: TrainSpec) -> dict:
    docs = sample_texts(spec.sample, spec.max_docs)
    split = int(len(docs) * spec.reference_share)
    reference, seed = docs[:split], docs[split:]
    texts = [t for _, t in seed]
    losses, benchmarks = _family(spec, reference)
    strength = preselect.predictive_strength(np.array([loss(texts) for loss in losses]).T, benchmarks)
    positives, negatives = preselect.seed_labels(strength)
    if len(positives) < 5:
        raise ValueError(f"only {len(positives)} documents with S = 1 among {len(texts)}: use a larger sample")
    index = np.concatenate([positives, negatives])
    labels = [preselect.POSITIVE] * len(positives) + [preselect.NEGATIVE] * len(negatives)
    fit, held = preselect.stratified_split(labels, 0.2, spec.seed)
    model = _train_fasttext(spec, [texts[index[i]] for i in fit], [labels[i] for i in fit], spec.output)
    held_out = _evaluate(model, [texts[index[i]] for i in held], [labels[i] for i in held])
    folds = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, test in enumerate(preselect.stratified_folds(labels, 5, spec.seed)):
            rest = np.setdiff1d(np.arange(len(labels)), test)
            m = _train_fasttext(spec, [texts[index[i]] for i in rest], [labels[i] for i in rest], f"{tmp}/fold{k}.bin")
            folds.append(_evaluate(m, [texts[index[i]] for i in test], [labels[i] for i in test])["balanced_accuracy"])
    unseen = np.setdiff1d(np.arange(len(texts)), index[fit])  # not trained on: the held-out and unlabelled
    scores = model.probabilities([texts[i] for i in unseen], preselect.POSITIVE).round(preselect.SCORE_DECIMALS)
    chars = np.array([len(texts[i]) for i in unseen])
    info = {
        "models": [m.model_dump(mode="json", exclude_none=True) for m in spec.models],
        "benchmarks": [round(b, 6) for b in benchmarks],
        "documents": {"reference": len(reference), "seed": len(texts), "positives": len(positives),
                      "negatives": len(negatives), "train": len(fit), "held_out": len(held),
                      "threshold_sample": len(unseen)},
        "strength_histogram": {f"{s:.3f}": int(n) for s, n in zip(*np.unique(strength.round(3), return_counts=True))},
        "held_out": held_out,
        "held_out_accuracy": held_out["balanced_accuracy"],
        "cross_validation": {"folds": 5, "balanced_accuracy": folds,
                             "mean": round(float(np.mean(folds)), 4)},
        "thresholds": {f"{fr:g}": preselect.threshold_for_fraction(scores, chars, fr) for fr in spec.fractions},
        "trained_ids": sorted(seed[index[i]][0] for i in fit),  # left out of a release's threshold sample
        "fasttext": spec.fasttext.model_dump(mode="json"),
        "languages": langid.language_counts(texts),  # documents in other languages get flagged when scored
    }
    Path(f"{spec.output}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info
