"""select: keep the documents inside every rule over score columns (after `score`, as dolma's mixer
applies thresholds to its taggers' attributes). Rules are typed, never evaluated Python; a document
outside a rule is a reject with reason `select.<column>` and its value as detail. Changing a rule
reruns this stage and what follows, never the models.

A `top_fraction` rule's threshold is measured on the pool it selects from, as PreSelect does: once
every part is scored, one task (`select thresholds`) reads the rule's column and the text length of
a seeded sample of the documents entering select (those with the smallest seeded hash of their id,
so the sample does not depend on the workers or the parts; for preselect_score, without the
documents the classifier was trained on) and takes the value at which the best-scored documents
reach `top_fraction` of the characters, at the scores' rounding. It writes OUT/select/_thresholds.json
(the manifest shows it); the documents phase keeps values >= the threshold.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, RootModel

from pipelines import io
from pipelines.documents import reject
from pipelines.errors import ConfigError
from pipelines.phase import fingerprint_data, task_output
from pipelines.report_parts import table
from pipelines.shard_task import ShardTask
from pipelines.stage import CheckContext, Phase, PhaseContext, Stage, StageResult, Upstream
from pipelines.stages import buckets
from scorers._config import StrictModel
from scorers.classifiers import COLUMN_NAME, trained_ids
from scorers.preselect import threshold_for_fraction

NAME = "select"
ScoreColumn = Annotated[str, Field(pattern=COLUMN_NAME)]  # a column some stage before fills (checked)
THRESHOLDS = "_thresholds.json"  # under OUT/select/


class SelectRule(StrictModel):
    """Keep documents whose `column` lies in [min, max] (or, for `domain`, is one of `values`)."""

    column: ScoreColumn = Field(description="language_score (filter), preselect_score, dataman_<criterion>, "
                                            "dataman_overall, domain, a classifier's name, quality_bucket "
                                            "(score)")
    min: float | None = Field(None, description="lowest value kept")
    max: float | None = Field(None, description="highest value kept")
    top_fraction: float | None = Field(None, gt=0, le=1,
                                       description="keep the best-scored share of characters of the documents "
                                                   "entering select (a numeric column, not with min): the "
                                                   "threshold is measured on a seeded sample of them at run "
                                                   "time (OUT/select/_thresholds.json; the manifest shows it)")
    values: list[str] | None = Field(None, description="for `domain`: the values kept")


class SelectStageRule(SelectRule):
    """Keep documents whose `column` lies in [min, max] (or, for `domain`, is one of `values`); with
    `top_fraction`, at or above the threshold measured on a sample of the documents entering select."""

    sample: int = Field(1_000_000, ge=1, description="top_fraction: the documents its threshold is measured on "
                                                     "(those with the smallest seeded hash of their id)")
    seed: int = Field(0, description="top_fraction: the seed of that hash")


class SelectConfig(RootModel[list[SelectStageRule]]):
    """A list of rules; a document must pass every one, e.g. `[{column: preselect_score, top_fraction: 0.5}]`."""

    model_config = {"frozen": True}
    _thresholds: tuple[str, str] | None = PrivateAttr(None)  # the thresholds file and its task's fingerprint
    _buckets: tuple[str, str] | None = PrivateAttr(None)  # score's quality bucket cut points, likewise

    @property
    def measures_thresholds(self) -> bool:
        """Whether a rule has `top_fraction` (its threshold is measured by the release)."""
        return any(rule.top_fraction is not None for rule in self.root)

    def measured(self, thresholds: tuple[str, str] | None, buckets: tuple[str, str] | None) -> "SelectConfig":
        """A copy that reads its top_fraction thresholds and score's quality bucket cut points from the files
        (path, fingerprint of the task that writes it) given (not in dumps or fingerprints: they follow from
        the upstream data and the configs, which are)."""
        copy = SelectConfig(self.root)  # a new instance: model_copy would share the private attributes
        copy._thresholds, copy._buckets = thresholds, buckets
        return copy


def outside(rule: SelectRule, value) -> bool:
    """Whether `value` fails a typed select rule."""
    if rule.values is not None:
        return value not in rule.values
    return value is None or (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max)


def run(docs: Iterable[dict], cfg: SelectConfig) -> StageResult:
    rules = _with_thresholds(cfg)
    result = StageResult()
    if cfg._buckets is not None:
        docs = [dict(d) for d in docs]  # a run must not change its input dicts
        result.metrics = buckets.put_in_buckets(docs, task_output(*cfg._buckets))
    for doc in docs:
        failed = next((rule for rule in rules if outside(rule, doc.get(rule.column))), None)
        if failed is None:
            result.docs.append(doc)
        else:
            result.rejects.append(reject(doc, NAME, f"select.{failed.column}", f"{doc.get(failed.column)}"))
    return result


def _with_thresholds(cfg: SelectConfig) -> list[SelectRule]:
    """The rules with each top_fraction threshold as `min`."""
    if not cfg.measures_thresholds:
        return cfg.root
    if cfg._thresholds is None:
        raise ValueError("select: top_fraction rules need the thresholds measured by the release (prepare)")
    measured = task_output(*cfg._thresholds)["rules"]
    return [rule if rule.top_fraction is None else rule.model_copy(update={"min": measured[str(i)]["threshold"]})
            for i, rule in enumerate(cfg.root)]


def check(cfg: SelectConfig, ctx: CheckContext) -> None:
    produced = ctx.produced()
    for i, rule in enumerate(cfg.root):
        if rule.column not in produced:
            raise ConfigError(f"[{i}].column: {rule.column} is not produced by the stages configured before select")
        if rule.top_fraction is None:
            continue
        if rule.column in ("domain", buckets.COLUMN):
            raise ConfigError(f"[{i}].top_fraction: needs a numeric score column, not {rule.column} (use min)")
        for key in ("min", "values"):
            if getattr(rule, key) is not None:
                raise ConfigError(f"[{i}].{key}: not with top_fraction (its threshold is the lowest value kept)")


def prepare(cfg: SelectConfig, ctx: PhaseContext) -> tuple[SelectConfig, list[Phase]]:
    """With a top_fraction rule, the thresholds task, and with score's `buckets`, the cut points task, over
    every part's scored documents, before the documents phase; every part's upstream fingerprint then
    includes theirs, so new thresholds or cut points rerun select (never the models)."""
    score = ctx.release.stages.score
    inputs = tuple((s, ctx.upstream[s.part]) for s in ctx.shards)
    phases, files = [], {}
    if cfg.measures_thresholds:
        task = ThresholdTask(ctx.release.output, cfg, inputs, score.trained_models() if score is not None else ())
        phases.append(Phase("select thresholds", (NAME,), [task]))
        files["thresholds"] = (task.path, task.fingerprint())
    if score is not None and score.buckets is not None:
        from tokenize_stage import release_tokenizer

        task = buckets.BucketTask(ctx.release.output, score, inputs, release_tokenizer(ctx.release))
        phases.append(Phase("score buckets", (NAME,), [task]))
        files["buckets"] = (task.path, task.fingerprint())
    if not phases:
        return cfg, []
    for part, upstream in ctx.upstream.items():
        ctx.upstream[part] = Upstream(upstream.stage, io.sha256_json({"upstream": upstream.fingerprint,
                                                                      **{k: fp for k, (_, fp) in files.items()}}))
    return cfg.measured(files.get("thresholds"), files.get("buckets")), phases


@dataclass(frozen=True)
class ThresholdTask:
    """The one step over the whole pool: the threshold of every top_fraction rule."""

    output: str
    cfg: SelectConfig
    inputs: tuple[tuple[ShardTask, Upstream], ...]  # every part, with where its documents are
    models: tuple[tuple[str, str], ...]  # (column, model): a rule on it leaves out the documents it was trained on
    part: str = "select-thresholds"
    input_file: str = ""

    @property
    def path(self) -> str:
        return io.join(self.output, NAME, THRESHOLDS)

    @property
    def marker(self) -> str:
        return io.join(self.output, NAME, "_SUCCESS.thresholds")

    def fingerprint(self) -> str:
        return io.sha256_json({"select": fingerprint_data(self.cfg), "models": self.models,
                               "upstream": [[shard.part, up.fingerprint] for shard, up in self.inputs]})

    def run(self) -> dict:
        rules = {i: rule for i, rule in enumerate(self.cfg.root) if rule.top_fraction is not None}
        models = dict(self.models)
        samples = {i: _Sample(rule, trained_ids(models[rule.column]) if rule.column in models else set())
                   for i, rule in rules.items()}
        columns = sorted({rule.column for rule in rules.values()})
        for shard, upstream in self.inputs:
            for batch in io.iter_batches(shard.path(upstream.stage), ["id", "text", *columns]):
                for sample in samples.values():
                    sample.add(batch)
        io.write_json_atomic(self.path, {"rules": {str(i): s.result(i) for i, s in samples.items()}})
        return {}


class _Sample:
    """One rule's sample, in bounded memory: the `sample` documents with a value (and not trained on)
    with the smallest seeded hash of their id, as (hash, value, characters)."""

    def __init__(self, rule: SelectStageRule, trained: set[str]):
        self.rule, self.trained = rule, trained
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = self.documents = self.excluded = 0

    def add(self, batch: pa.RecordBatch) -> None:
        from pipelines.mixture.sampling import seeded_keys  # here: the mixture package imports this module

        values = pc.cast(batch.column(self.rule.column), pa.float64())
        use = pc.is_valid(values).to_numpy(zero_copy_only=False)
        ids = batch.column("id").to_pylist()
        if self.trained:
            trained = np.array([i in self.trained for i in ids], dtype=bool)
            self.excluded += int((use & trained).sum())
            use &= ~trained
        chars = pc.fill_null(pc.utf8_length(batch.column("text")), 0).to_numpy(zero_copy_only=False)
        self.chunks.append((seeded_keys([i for i, u in zip(ids, use) if u], self.rule.seed),
                            values.fill_null(0).to_numpy(zero_copy_only=False)[use], chars[use].astype(np.int64)))
        self.size += int(use.sum())
        self.documents += int(use.sum())
        if self.size > 2 * self.rule.sample:  # trimmed every `sample` documents: n log(sample) in all
            self._trim()

    def _trim(self) -> tuple[np.ndarray, np.ndarray]:
        hashes, values, chars = (np.concatenate(a) for a in zip(*self.chunks)) if self.chunks else \
            (np.empty(0, np.uint64), np.empty(0), np.empty(0, np.int64))
        keep = np.lexsort((chars, values, hashes))[: self.rule.sample]  # equal hashes: reading order never matters
        self.chunks = [(hashes[keep], values[keep], chars[keep])]
        self.size = len(keep)
        return values[keep], chars[keep]

    def result(self, i: int) -> dict:
        values, chars = self._trim()
        if not len(values) and self.excluded:
            raise ValueError(f"select[{i}]: every document with a {self.rule.column} is one the classifier was "
                             f"trained on ({self.excluded}): no document to measure the threshold on")
        threshold = threshold_for_fraction(values, chars, self.rule.top_fraction) if len(values) else None
        return {"column": self.rule.column, "top_fraction": self.rule.top_fraction, "threshold": threshold,
                "sample": self.rule.sample, "seed": self.rule.seed, "documents": self.documents,
                "sampled": len(values), "excluded_trained": self.excluded}


def thresholds_used(cfg: SelectConfig | None, output: str) -> dict | None:
    """The measured thresholds of a release whose select has top_fraction rules (for the manifest)."""
    if cfg is None or not cfg.measures_thresholds:
        return None
    path = io.join(output, NAME, THRESHOLDS)
    return io.read_json(path)["rules"] if io.exists(path) else None


def report(con, output: str) -> list[str]:
    """The thresholds the release's top_fraction rules used (from the manifest: they match its config)."""
    manifest = io.join(output, "manifest.json")
    rules = io.read_json(manifest).get("select_thresholds") if io.exists(manifest) else None
    if not rules:
        return []
    rows = [(f"[{i}]", r["column"], r["top_fraction"], r["threshold"], r["sampled"], r["excluded_trained"])
            for i, r in sorted(rules.items(), key=lambda item: int(item[0]))]
    return ["<h2>Select thresholds</h2>",
            table(["rule", "column", "top fraction", "threshold", "documents sampled", "left out: trained on"],
                  rows, "select_thresholds")]


def fields(cfg: SelectConfig) -> tuple[pa.Field, ...]:
    """quality_bucket, when score has buckets (select puts documents in them: every part must be scored first)."""
    return (buckets.FIELD,) if cfg._buckets is not None else ()


def produces(cfg: SelectConfig) -> list[str]:
    return []  # quality_bucket counts as score's, whose config asks for it


STAGE = Stage(name=NAME, config=SelectConfig, check=check, run=run, prepare=prepare, report=report, columns=fields,
              produces=produces)
