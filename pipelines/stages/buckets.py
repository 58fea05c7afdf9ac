"""Ensemble quality buckets, as Nemotron-CC builds them: each classifier's score becomes its percentile
bucket over the pool (0 ... n-1, each holding 1/n of the pool's tokens), and the buckets of the
classifiers are combined (`max`, Nemotron-CC's choice, or the `mean` rounded down) into `quality_bucket`.

The cut points are measured at run time, as select's top_fraction thresholds are: once the documents
entering score are written (or straight from the input files when score comes first), one task
(`score buckets`) takes a seeded sample of them (the smallest seeded hash of their id, so the sample
depends on neither the workers nor the parts), scores it with
the classifiers, weighs each document by its tokens (the release's tokenizer) or as one, and writes
OUT/score/_buckets.json (the manifest shows it). The documents phase then puts each document in the
bucket of its score: the number of cut points at or below it (a tie spanning buckets takes the middle one).
"""

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from pipelines import io
from pipelines.shard_task import Documents, ShardTask
from pipelines.stage import Upstream
from scorers import classifiers
from scorers._config import StrictModel

if TYPE_CHECKING:
    from pipelines.stages.score import ScoreConfig

COLUMN = "quality_bucket"
FILE = "_buckets.json"  # under OUT/score/
SCORE_BATCH = 256  # sampled documents scored at once


class BucketsConfig(StrictModel):
    """`quality_bucket` (0 ... n-1) from the percentiles of `classifiers`' scores over the pool; select
    the best with `select: [{column: quality_bucket, min: 15}]`."""

    classifiers: list[str] = Field(min_length=1, description="names of `classifiers` entries")
    n: int = Field(20, ge=2, le=1000, description="buckets per classifier (Nemotron-CC: 20)")
    combine: Literal["max", "mean"] = Field("max", description="max: the best of the classifiers' buckets "
                                                               "(Nemotron-CC) | mean: their mean, rounded down")
    weight: Literal["tokens", "documents"] = Field("tokens", description="tokens (the release's tokenizer): each "
                                                                         "bucket holds 1/n of the tokens | "
                                                                         "documents: 1/n of the documents")
    sample: int = Field(100_000, ge=1, description="documents the cut points are measured on (those with the "
                                                   "smallest seeded hash of their id)")
    seed: int = Field(0, description="the seed of that hash")


def cut_points(scores: np.ndarray, weights: np.ndarray, n: int) -> list[float]:
    """n-1 ascending scores: cut k is the score of the first document (by score) with at least k/n of
    the weight below it, so bucket k holds 1/n of the weight, give or take one document."""
    order = np.argsort(scores, kind="stable")
    scores, weights = np.asarray(scores)[order], np.asarray(weights, dtype=np.int64)[order]
    below = np.concatenate([[0], np.cumsum(weights)[:-1]]) * n  # integer: weight before each document, times n
    total = int(weights.sum())
    cuts = []
    for k in range(1, n):
        first = int(np.searchsorted(below, k * total, side="left"))
        if first < len(scores):
            cuts.append(float(scores[first]))
        else:  # the best document alone outweighs the buckets above: they stay empty
            cuts.append(float(np.nextafter(scores[-1], np.inf)) if len(scores) else 0.0)
    return cuts


def assign(values: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Each value's bucket: how many cut points are at or below it; a value equal to several cut points (a
    tie of documents that spans buckets) takes the middle one of those buckets, not the top one."""
    cuts = np.asarray(cuts)
    above = np.searchsorted(cuts, values, side="right")
    below = np.searchsorted(cuts, values, side="left")
    return np.where(above - below > 1, (above + below) // 2, above)


def combine(per_classifier: list[np.ndarray], how: str) -> np.ndarray:
    stacked = np.vstack(per_classifier)
    return stacked.max(axis=0) if how == "max" else np.floor(stacked.mean(axis=0)).astype(np.int64)


@functools.lru_cache(maxsize=8)
def measured(path: str, fingerprint: str) -> dict:
    """The cut points file, read once per worker: the task with this fingerprint always writes the same one."""
    return io.read_json(path)


@dataclass(frozen=True)
class BucketTask:
    """The one step over the pool entering score: every bucketed classifier's cut points."""

    output: str
    cfg: "ScoreConfig"
    inputs: tuple[tuple[ShardTask, Upstream], ...]  # every part, with where its documents are
    tokenizer: str  # the release's: weight: tokens counts its tokens
    part: str = "score-buckets"
    input_file: str = ""

    @property
    def path(self) -> str:
        return io.join(self.output, "score", FILE)

    @property
    def marker(self) -> str:
        return io.join(self.output, "score", "_SUCCESS.buckets")

    def fingerprint(self) -> str:
        buckets = self.cfg.buckets
        used = [c.model_dump(mode="json") for c in self.cfg.bucketed()]
        return io.sha256_json({"buckets": buckets.model_dump(mode="json"), "classifiers": used,
                               "tokenizer": self.tokenizer if buckets.weight == "tokens" else None,
                               "upstream": [[shard.part, up.fingerprint] for shard, up in self.inputs]})

    def run(self) -> dict:
        buckets = self.cfg.buckets
        chosen = self._sample()
        scores: dict[str, list[np.ndarray]] = {c.name: [] for c in self.cfg.bucketed()}
        weights = []
        tok = None
        if buckets.weight == "tokens":
            from tokenize_stage.tokenizers import load_tokenizer

            tok = load_tokenizer(self.tokenizer)
        for texts in self._texts(chosen):
            for c in self.cfg.bucketed():
                scores[c.name].append(classifiers.score(c, texts))
            weights.append(np.array([len(ids) for ids in tok.encode_batch(texts)] if tok else [1] * len(texts)))
        weight = np.concatenate(weights) if weights else np.empty(0, np.int64)
        result = {"n": buckets.n, "combine": buckets.combine, "weight": buckets.weight, "sample": buckets.sample,
                  "seed": buckets.seed, "sampled": int(len(weight)), "weight_total": int(weight.sum()),
                  "cuts": {name: cut_points(np.concatenate(got) if got else np.empty(0), weight, buckets.n)
                           for name, got in scores.items()}}
        io.write_json_atomic(self.path, result)
        return {}

    def _sample(self) -> dict[int, set[int]]:
        """Rows (per input index) of the `sample` documents with the smallest seeded hash of their id,
        in bounded memory: (hash, input, row) triples trimmed whenever they pass twice the sample."""
        from pipelines.mixture.sampling import seeded_keys  # here: the mixture package imports the stages

        size = self.cfg.buckets.sample
        kept = np.empty((0, 3), dtype=np.uint64)
        for i, (shard, upstream) in enumerate(self.inputs):
            row = 0
            for ids in _ids(shard, upstream):
                rows = np.arange(row, row + len(ids), dtype=np.uint64)
                kept = np.vstack([kept, np.column_stack([seeded_keys(ids, self.cfg.buckets.seed),
                                                         np.full(len(ids), i, np.uint64), rows])])
                row += len(ids)
                if len(kept) > 2 * size:
                    kept = kept[np.lexsort(kept.T[::-1])][:size]
        kept = kept[np.lexsort(kept.T[::-1])][:size]
        return {int(i): set(kept[kept[:, 1] == i, 2].tolist()) for i in np.unique(kept[:, 1])}

    def _texts(self, chosen: dict[int, set[int]]):
        """The chosen documents' texts, SCORE_BATCH at a time, in input and row order."""
        pending: list[str] = []
        for i, rows in sorted(chosen.items()):
            shard, upstream = self.inputs[i]
            for row, doc in enumerate(Documents(shard, upstream.stage)):
                if row in rows:
                    pending.append(doc.get("text") or "")
                if len(pending) == SCORE_BATCH:
                    yield pending
                    pending = []
        if pending:
            yield pending


def _ids(shard: ShardTask, upstream: Upstream):
    """A part's ids, a batch at a time: the id column of a stage's output, or the input file's records."""
    if upstream.stage is None:
        yield from ([d["id"] for d in batch] for batch in Documents(shard, None).batches())
    else:
        yield from (batch.column("id").to_pylist() for batch in io.iter_batches(shard.path(upstream.stage), ["id"]))


def used(cfg: "ScoreConfig | None", output: str) -> dict | None:
    """The measured cut points of a release whose score has buckets (for the manifest)."""
    if cfg is None or cfg.buckets is None:
        return None
    path = io.join(output, "score", FILE)
    return io.read_json(path) if io.exists(path) else None
