"""Quality classifiers as users bring them: each adds one numeric column to the score stage's documents.

fasttext  a local .bin/.ftz: the column is P(label) (DCLM's filter: `label: hq`; models made by
          `gristmill classifier train`: `positive`, the default). Texts are prepared as at training
          time (`fasttext_model.preprocess`: one line).
hf        a local folder that AutoModelForSequenceClassification and AutoTokenizer load (never a
          download): `head: regression` takes the single logit (FineWeb-Edu's educational value),
          `head: label` P(label) from the softmax. Texts are cut to `max_tokens` tokens; a batch
          window (the stage's batch) is sorted by length so that padding is short.

Scores are rounded to SCORE_DECIMALS, as preselect_score is, so that the same texts give the same bytes
whatever the batch shapes, the worker count or the runner.
"""

import functools
import hashlib
import json
import logging
import os
import re
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from scorers import fasttext_model
from scorers._config import StrictModel
from scorers.preselect import SCORE_DECIMALS

log = logging.getLogger(__name__)
COLUMN_NAME = r"^[a-z][a-z0-9_]*$"  # a DuckDB column and a stats key (hist.<name>.<bucket>) without quoting
POSITIVE = "positive"  # the label `gristmill classifier train` gives the target class


class ClassifierConfig(StrictModel):
    """One classifier: its score becomes the column `name`."""

    name: str = Field(pattern=COLUMN_NAME, description="the column it adds (lower case, digits, _), e.g. dclm")
    kind: Literal["fasttext", "hf"] = Field(description="fasttext (a .bin/.ftz) | hf (a local Hugging Face "
                                                        "sequence-classification folder)")
    path: str = Field(description="the model file (fasttext) or folder (hf); read locally, never downloaded")
    label: str | None = Field(None, description="fasttext: the class whose probability is the column (default "
                                                "`positive`, as `gristmill classifier train` names it); hf with "
                                                "head: label: a name in the model's id2label")
    head: Literal["regression", "label"] | None = Field(
        None, description="hf: regression (the one logit, e.g. FineWeb-Edu's 0-5 score) | label (P(label))")
    max_tokens: int = Field(512, ge=1, description="hf: texts are cut to this many tokens (and to the model's "
                                                   "positions)")
    batch_size: int = Field(32, ge=1, description="hf: documents per forward pass")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="hf: auto takes a GPU when there is one")
    digest: str | None = Field(None, description="set when the release starts (leave it out): the sizes and "
                                                 "modification times of the model's files, so that a model "
                                                 "replaced in place reruns score")

    @model_validator(mode="after")
    def _kind_settings(self) -> "ClassifierConfig":
        hf_only = sorted({"head", "max_tokens", "batch_size", "device"} & self.model_fields_set)
        if self.kind == "fasttext" and hf_only:
            raise ValueError(f"{hf_only[0]}: only for kind: hf")
        if self.kind == "hf" and self.head is None:
            raise ValueError("head: kind hf needs head: regression | label")
        if self.kind == "hf" and self.head == "label" and self.label is None:
            raise ValueError("label: head: label needs the label whose probability is the column")
        if self.kind == "hf" and self.head == "regression" and self.label is not None:
            raise ValueError("label: not with head: regression (the column is the model's one output)")
        return self

    @property
    def probability(self) -> bool:
        """Whether the column is a probability in [0, 1] (its histogram is in tenths)."""
        return self.kind == "fasttext" or self.head == "label"


def digest(path: str) -> str | None:
    """Of the model's files (one file, or a folder's files): their names, sizes and modification times."""
    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    else:
        return None  # the check names the missing model
    stats = [(os.path.relpath(f, path), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def sidecar(path: str) -> dict:
    """`<model>.json` beside a model made by `gristmill classifier train` ({} for a model from elsewhere), read
    once per process (it lists every document trained on: megabytes at scale). Callers must not change it."""
    try:
        with open(f"{path}.json") as fh:
            return json.load(fh)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def trained_ids(model: str) -> set[str]:
    """The ids of the documents a model (PreSelect's, or one made by `gristmill classifier train`) was trained
    on, from its sidecar: a top_fraction threshold or a bucket's cut points are measured without them."""
    info = sidecar(model)
    if "trained_ids" not in info:
        log.warning("%s records no trained_ids (an older model): its training documents stay in the sample", model)
    return set(info.get("trained_ids", ()))


class FastTextClassifier:
    def __init__(self, cfg: ClassifierConfig):
        self.model = fasttext_model.load(cfg.path)
        self.label = cfg.label or POSITIVE
        if self.label not in self.model.labels:
            raise ValueError(f"no label {self.label!r} in {cfg.path}: its labels are {self.model.labels}")

    def score(self, texts: list[str]) -> np.ndarray:
        return np.clip(self.model.probabilities(texts, self.label), 0.0, 1.0)  # fastText adds 1e-5 to each


class HFClassifier:
    def __init__(self, cfg: ClassifierConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per worker and model load, on every run's stderr
        if not os.path.isdir(cfg.path):
            raise FileNotFoundError(f"{cfg.path}: no such folder (a Hugging Face model saved locally)")
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda: torch sees no GPU here (use device: auto to fall back to the CPU)")
        if not any(os.path.exists(os.path.join(cfg.path, f)) for f in TOKENIZER_FILES):
            raise ValueError(f"{cfg.path}: no tokenizer in the folder (none of {', '.join(TOKENIZER_FILES)}): copy "
                             "the model's tokenizer files beside it")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(cfg.path, local_files_only=True).eval()
        except Exception as exc:  # noqa: BLE001 - any broken file: a config error naming it, not a traceback
            raise ValueError(f"{cfg.path}: not a local Hugging Face sequence-classification folder: "
                             f"{type(exc).__name__}: {exc}") from None
        if self.tokenizer.pad_token is None:
            raise ValueError(f"{cfg.path}: the tokenizer has no padding token (set pad_token in its "
                             "tokenizer_config.json, and pad_token_id in config.json)")
        config = self.model.config
        if cfg.head == "regression" and config.num_labels != 1:
            raise ValueError(f"{cfg.path}: head regression needs a model with one output, this one has "
                             f"{config.num_labels} labels {sorted(config.label2id)}: use head: label")
        self.index = None
        if cfg.head == "label" and config.num_labels < 2:
            raise ValueError(f"{cfg.path}: head label needs a model with two labels or more, this one has one "
                             "output: use head: regression")
        self.sigmoid = config.problem_type == "multi_label_classification"  # independent labels, not a softmax
        if cfg.head == "label":
            if cfg.label not in config.label2id:
                raise ValueError(f"no label {cfg.label!r} in {cfg.path}: its labels are {sorted(config.label2id)}")
            self.index = config.label2id[cfg.label]
        self.max_tokens = min(cfg.max_tokens, _positions(config, self.tokenizer))
        self.batch_size = cfg.batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.model.to(self.device)

    def score(self, texts: list[str]) -> np.ndarray:
        """Texts tokenized once, cut to max_tokens, run in batches of similar length, put back in order."""
        import torch

        ids = self._ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty(len(ids))
        with torch.inference_mode():
            for at in range(0, len(order), self.batch_size):
                chunk = order[at:at + self.batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
                if self.index is None:
                    values = logits[:, 0]
                else:
                    values = (torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1))[:, self.index]
                out[chunk] = values.cpu().numpy()
        return out

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text cut to max_tokens, as tokenizing the whole text gives them, from a head
        of the text when that is enough: a page of megabytes is cut to PREFIX_CHARS per token first, and
        tokenized whole only when its kept tokens reach into the head's last word (which the cut may split;
        no token spans whitespace)."""
        cut = PREFIX_CHARS * self.max_tokens
        if not self.tokenizer.is_fast:  # no offsets: tokenize whole texts
            return self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]
        heads = [t[:cut] for t in texts]
        enc = self.tokenizer(heads, truncation=True, max_length=self.max_tokens, return_offsets_mapping=True)
        ids = enc["input_ids"]
        again = [i for i, (text, head) in enumerate(zip(texts, heads)) if len(text) > cut and
                 max((end for _, end in enc["offset_mapping"][i]), default=0) > _last_word(head)]
        if again:
            whole = self.tokenizer([texts[i] for i in again], truncation=True, max_length=self.max_tokens)
            for i, row in zip(again, whole["input_ids"]):
                ids[i] = row
        return ids


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
PREFIX_CHARS = 16  # characters per token kept before tokenizing a long text (a token averages about 4)


def _last_word(text: str) -> int:
    """Where the last whitespace-delimited word of `text` starts (0 when it has no whitespace)."""
    match = re.search(r"\s\S*$", text)
    return match.start() + 1 if match else 0


def _positions(config, tokenizer) -> int:
    """How many tokens the model takes: its position table, less the offset RoBERTa-style models start
    positions at (pad id + 1), and no more than the tokenizer's own maximum when it has one."""
    positions = getattr(config, "max_position_embeddings", None) or 1 << 30
    if "roberta" in config.model_type or config.model_type in ("camembert", "longformer", "data2vec-text"):
        positions -= (config.pad_token_id or 0) + 1
    limit = getattr(tokenizer, "model_max_length", None) or 1 << 30
    return min(positions, limit if limit < 1 << 30 else positions)


@functools.lru_cache(maxsize=8)
def load(cfg: ClassifierConfig) -> FastTextClassifier | HFClassifier:
    """A classifier, loaded once per process. Raises FileNotFoundError or ValueError, naming the file."""
    if cfg.kind == "fasttext":
        if not os.path.isfile(cfg.path):
            raise FileNotFoundError(f"{cfg.path}: no such file (a fastText .bin or .ftz)")
        try:
            return FastTextClassifier(cfg)
        except ValueError as exc:
            if "no label" in str(exc):
                raise
            raise ValueError(f"{cfg.path}: not a fastText model: {exc}") from None
    return HFClassifier(cfg)


def score(cfg: ClassifierConfig, texts: list[str]) -> np.ndarray:
    """The column's values for `texts`, rounded to SCORE_DECIMALS."""
    if not texts:
        return np.empty(0)
    return load(cfg).score(texts).round(SCORE_DECIMALS)


def histogram_bucket(cfg: ClassifierConfig, value: float) -> str:
    """The stats histogram's bucket of a value: tenths for a probability, whole numbers for a regression."""
    if cfg.probability:
        return f"{min(int(value * 10), 9) / 10:.1f}"
    return f"{int(np.floor(value))}"
