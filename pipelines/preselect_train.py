"""`gristmill preselect train SPEC`: build a PreSelect scorer from a sample of documents.

1. Read the sample (any source format; WARC records go through the extract stage) and split it by
   a hash of the document id into a reference part (trains the n-gram model family) and a seed part.
2. Loss (bits per character) of every seed document under every model of the family.
3. Predictive strength S against the models' benchmark scores (given in the spec); positives S = 1,
   negatives from S = 0 upward (PreSelect's recipe).
4. fastText with the paper's settings on 80 % of the labelled documents; accuracy on the other 20 %.
5. Score the seed part and record the score thresholds that keep each `fractions` share of characters.
Writes the model and `<model>.json` (family, counts, held-out accuracy, thresholds).
"""

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipelines.config import load_yaml
from pipelines.readers import SourceConfig
from pipelines.sample import sample_texts
from scorers import fasttext_model, langid, preselect
from scorers._config import StrictModel
from scorers.ngram_lm import ByteNgramLM


class LMSpec(StrictModel):
    kind: Literal["ngram", "hf"]
    benchmark: float  # the model's benchmark score: only the order matters
    order: int | None = Field(None, ge=1)  # ngram
    train_share: float = Field(1.0, gt=0, le=1)  # ngram: share of the reference text it is trained on
    path: str | None = None  # hf: a local model folder


class FastTextSpec(StrictModel):
    lr: float = 0.1
    dim: int = 100
    epoch: int = 5
    word_ngrams: int = 2
    bucket: int = 2_000_000  # fastText's default; a small sample needs far fewer
    seed: int = 0


class TrainSpec(StrictModel):
    sample: SourceConfig
    reference_share: float = Field(0.5, gt=0, lt=1)  # of the sample, used to train the n-gram models
    max_docs: int = Field(20_000, ge=10)
    models: list[LMSpec] = Field(min_length=2)
    fasttext: FastTextSpec = FastTextSpec()
    fractions: list[float] = [0.1, 0.3, 0.5]
    output: str


def load_spec(path: str) -> TrainSpec:
    return load_yaml(path, TrainSpec)


def _losses(models: list[LMSpec], reference: list[str], texts: list[str]) -> np.ndarray:
    columns = []
    for spec in models:
        if spec.kind == "ngram":
            lm = ByteNgramLM.train(reference[: max(1, int(len(reference) * spec.train_share))], spec.order or 3)
            columns.append([lm.bits_per_char(t) for t in texts])
        else:
            from scorers.hf_lm import HFCausalLM

            columns.append(HFCausalLM(spec.path).bits_per_char(texts))
    return np.array(columns).T


def train(spec: TrainSpec) -> dict:
    docs = sample_texts(spec.sample, spec.max_docs)
    split = int(len(docs) * spec.reference_share)
    reference, seed = [t for _, t in docs[:split]], docs[split:]
    texts = [t for _, t in seed]
    strength = preselect.predictive_strength(_losses(spec.models, reference, texts), [m.benchmark for m in spec.models])
    positives, negatives = preselect.seed_labels(strength)
    if len(positives) < 5:
        raise ValueError(f"only {len(positives)} documents with S = 1 among {len(texts)}: use a larger sample")
    labelled = [(i, preselect.POSITIVE) for i in positives] + [(i, preselect.NEGATIVE) for i in negatives]
    labelled.sort(key=lambda x: hashlib.sha1(seed[x[0]][0].encode()).hexdigest())
    cut = int(len(labelled) * 0.8)
    f = spec.fasttext
    model = fasttext_model.train_supervised([texts[i] for i, _ in labelled[:cut]], [y for _, y in labelled[:cut]],
                                            spec.output, lr=f.lr, dim=f.dim, epoch=f.epoch,
                                            word_ngrams=f.word_ngrams, bucket=f.bucket, seed=f.seed)
    held_out = labelled[cut:]
    predicted = model.probabilities([texts[i] for i, _ in held_out], preselect.POSITIVE) >= 0.5
    accuracy = float(np.mean([p == (y == preselect.POSITIVE) for p, (_, y) in zip(predicted, held_out)]))
    scores = model.probabilities(texts, preselect.POSITIVE)
    chars = np.array([len(t) for t in texts])
    info = {
        "models": [m.model_dump(mode="json") for m in spec.models],
        "documents": {"reference": len(reference), "seed": len(texts), "positives": len(positives),
                      "negatives": len(negatives), "held_out": len(held_out)},
        "strength_histogram": {f"{s:.3f}": int(n) for s, n in zip(*np.unique(strength.round(3), return_counts=True))},
        "held_out_accuracy": round(accuracy, 4),
        "thresholds": {f"{fr:g}": preselect.threshold_for_fraction(scores, chars, fr) for fr in spec.fractions},
        "fasttext": f.model_dump(mode="json"),
        "languages": langid.language_counts(texts),  # documents in other languages get flagged when scored
    }
    Path(f"{spec.output}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info
