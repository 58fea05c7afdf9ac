"""Ensemble quality buckets, as Nemotron-CC builds them: each classifier's score becomes its percentile
bucket over the pool (0 ... n-1, each holding 1/n of the pool's tokens), and the buckets of the
classifiers are combined (`max`, Nemotron-CC's choice, or the `mean` rounded down) into `quality_bucket`.

`stages.score.buckets` asks for them; the cut points are measured at run time, as select's
top_fraction thresholds are: once every part is scored, one task (`score buckets`) takes a seeded
sample of the scored documents (the smallest seeded hash of their id, so the sample depends on
neither the workers nor the parts; without the documents a classifier was trained on), reads their
stored scores (the models never run twice), weighs each document by its tokens (the release's
tokenizer) or as one, and writes OUT/score/_buckets.json (the manifest shows it). The `select` stage,
which reads every part's scored documents, then puts each document in the bucket of its score (the
number of cut points at or below it; a tie spanning buckets takes the middle one) before its rules,
so changing `buckets` reruns select, not score.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipelines import io
from pipelines.shard_task import ShardTask
from pipelines.stage import Upstream
from scorers import classifiers
from scorers._config import StrictModel

if TYPE_CHECKING:
    from pipelines.stages.score import ScoreConfig

COLUMN = "quality_bucket"
FIELD = pa.field(COLUMN, pa.int16())
FILE = "_buckets.json"  # under OUT/score/


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
    if not len(scores):
        return [0.0] * (n - 1)
    first = np.searchsorted(below, np.arange(1, n) * int(weights.sum()), side="left")
    # past the end: the best document alone outweighs the buckets above, which stay empty
    return np.append(scores, np.nextafter(scores[-1], np.inf))[first].astype(float).tolist()


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


@dataclass(frozen=True)
class BucketTask:
    """The one step over the scored pool: the cut points of every classifier `buckets` names."""

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
        buckets = self.cfg.buckets  # the scores come with the upstream fingerprints (score's config is in them)
        return io.sha256_json({"buckets": buckets.model_dump(mode="json"),
                               "tokenizer": self.tokenizer if buckets.weight == "tokens" else None,
                               "upstream": [[shard.part, up.fingerprint] for shard, up in self.inputs]})

    def run(self) -> dict:
        buckets = self.cfg.buckets
        names = buckets.classifiers
        tok = None
        if buckets.weight == "tokens":
            from tokenize_stage.tokenizers import load_tokenizer

            tok = load_tokenizer(self.tokenizer)
        scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
        weights = []
        for batch in self._chosen(self._sample(), names + (["text"] if tok else [])):
            for name in names:
                scores[name].append(batch.column(name).to_numpy(zero_copy_only=False))
            weights.append(np.array([len(ids) for ids in tok.encode_batch(
                [t or "" for t in batch.column("text").to_pylist()])]) if tok else np.ones(batch.num_rows, np.int64))
        weight = np.concatenate(weights) if weights else np.empty(0, np.int64)
        result = {"classifiers": names, "n": buckets.n, "combine": buckets.combine, "weight": buckets.weight,
                  "sample": buckets.sample, "seed": buckets.seed, "sampled": int(len(weight)),
                  "weight_total": int(weight.sum()),
                  "cuts": {name: cut_points(np.concatenate(got) if got else np.empty(0), weight, buckets.n)
                           for name, got in scores.items()}}
        io.write_json_atomic(self.path, result)
        return {}

    def _sample(self) -> dict[int, np.ndarray]:
        """Rows (per input index) of the `sample` documents with the smallest seeded hash of their id,
        in bounded memory: (hash, input, row) triples trimmed whenever they pass twice the sample."""
        from pipelines.mixture.sampling import seeded_keys  # here: the mixture package imports the stages

        size = self.cfg.buckets.sample
        trained = self._trained_ids()
        kept = np.empty((0, 3), dtype=np.uint64)
        for i, (shard, upstream) in enumerate(self.inputs):
            row = 0
            for batch in io.iter_batches(shard.path(upstream.stage), ["id"]):
                ids = batch.column("id").to_pylist()
                rows = np.arange(row, row + len(ids), dtype=np.uint64)
                use = np.array([d not in trained for d in ids], dtype=bool)
                kept = np.vstack([kept, np.column_stack([seeded_keys([d for d, u in zip(ids, use) if u],
                                                                     self.cfg.buckets.seed),
                                                         np.full(int(use.sum()), i, np.uint64), rows[use]])])
                row += len(ids)
                if len(kept) > 2 * size:
                    kept = kept[np.lexsort(kept.T[::-1])][:size]
        kept = kept[np.lexsort(kept.T[::-1])][:size]
        return {int(i): np.sort(kept[kept[:, 1] == i, 2]).astype(np.int64) for i in np.unique(kept[:, 1])}

    def _trained_ids(self) -> set[str]:
        """The documents a bucketed classifier was trained on (its sidecar's trained_ids): left out of the
        sample, as select's top_fraction leaves them out, since their scores are not the pool's."""
        models = dict(self.cfg.trained_models())
        return set().union(*(classifiers.trained_ids(models[n]) for n in self.cfg.buckets.classifiers if n in models))

    def _chosen(self, chosen: dict[int, np.ndarray], columns: list[str]):
        """The chosen documents' `columns`, a row group at a time, in input and row order."""
        for i, rows in sorted(chosen.items()):
            shard, upstream = self.inputs[i]
            row = 0
            for batch in io.iter_batches(shard.path(upstream.stage), columns):
                local = rows[(rows >= row) & (rows < row + batch.num_rows)] - row
                row += batch.num_rows
                if len(local):
                    yield batch.take(pa.array(local))


def put_in_buckets(docs: list[dict], measured: dict) -> dict[str, float]:
    """Sets each document's quality_bucket from the measured cut points; returns the histogram counts for
    the stats table (`hist.quality_bucket.<k>`)."""
    per_classifier = [assign(np.array([d.get(name) for d in docs], dtype=float), measured["cuts"][name])
                      for name in measured["classifiers"]]
    counts: dict[str, float] = {}
    for doc, bucket in zip(docs, combine(per_classifier, measured["combine"]).tolist() if docs else []):
        doc[COLUMN] = bucket
        counts[f"hist.{COLUMN}.{bucket}"] = counts.get(f"hist.{COLUMN}.{bucket}", 0) + 1
    return counts


def used(cfg: "ScoreConfig | None", output: str) -> dict | None:
    """The measured cut points of a release whose score has buckets (for the manifest)."""
    if cfg is None or cfg.buckets is None:
        return None
    path = io.join(output, "score", FILE)
    return io.read_json(path) if io.exists(path) else None
