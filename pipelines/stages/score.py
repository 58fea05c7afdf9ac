"""score: put model scores on documents (PreSelect's `preselect_score`, DataMan students' ratings and
domain, a column per classifier a user brings: fastText or Hugging Face, and Nemotron-CC's ensemble
`quality_bucket`). It never removes a document: the `select` stage that follows applies thresholds, so
changing one reruns `select` and what follows, never the models.
"""

from collections.abc import Iterable

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from pipelines import io
from pipelines.documents import DOC_FIELDS
from pipelines.errors import ConfigError
from pipelines.phase import READ_LATER
from pipelines.report_parts import columns, grouped_bars, table, top_series, views
from pipelines.stage import CheckContext, Stage, StageResult
from pipelines.stages import buckets as buckets_
from scorers import classifiers as classifiers_
from scorers import langid
from scorers._config import StrictModel
from scorers.dataman.students import DATAMAN_COLUMNS, Students
from scorers.fasttext_model import load as load_fasttext
from scorers.preselect import SCORE_DECIMALS, PreSelectScorer

NAME = "score"


class PreSelectStageConfig(StrictModel):
    model: str = Field(description="a model made by `gristmill preselect train` (its <model>.json sidecar "
                                   "beside it): adds `preselect_score`, P(positive)")


class DatamanStageConfig(StrictModel):
    models: str = Field(description="a folder made by `gristmill dataman build`: adds `dataman_<criterion>` "
                                    "(13 criteria, 1-5), `dataman_overall` and `domain` (15 domains)")


class ScoreConfig(StrictModel):
    """Model scores as columns. Documents in a language the models were not trained on are scored all the
    same and flagged: `score_flag = unseen_language.<lang>`. The stats have histograms per shard:
    `hist.preselect_score.0.x` (tenths), `hist.dataman_<criterion>.<1-5>`, `hist.domain.<name>`,
    `hist.<classifier>.<bucket>` (tenths for a probability, whole numbers for a regression head); select
    counts `hist.quality_bucket.<k>`."""

    preselect: PreSelectStageConfig | None = Field(None, description="PreSelect scorer")
    dataman: DatamanStageConfig | None = Field(None, description="DataMan students")
    classifiers: list[classifiers_.ClassifierConfig] = Field(
        default_factory=list, description="classifiers users bring, each adding the column `name`: "
                                          "{name, kind: fasttext, path, label} or {name, kind: hf, path, head, ...}")
    buckets: buckets_.BucketsConfig | None = Field(None, json_schema_extra=READ_LATER,
                                                   description="Nemotron-CC's ensemble buckets: adds quality_bucket "
                                                               "(0 ... n-1), put on documents by select once every "
                                                               "part is scored (changing it reruns select, not score)")
    flag_languages: bool = Field(True, description="flag documents in languages the models did not see in "
                                                   "training; uses the filter's `language`, else identifies the "
                                                   "first 200 characters (about 12 % of the stage's time)")

    select: None = Field(None, exclude=True, description="moved: the rules are `stages.select` now")

    @model_validator(mode="after")
    def _names(self) -> "ScoreConfig":
        names = [c.name for c in self.classifiers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"classifiers[{i}].name: {name!r} is given twice")
        for i, name in enumerate(self.buckets.classifiers if self.buckets else []):
            if name in self.buckets.classifiers[:i]:
                raise ValueError(f"buckets.classifiers[{i}]: {name!r} is given twice")
            if name not in names:
                raise ValueError(f"buckets.classifiers[{i}]: {name!r} is not the name of one of `classifiers` "
                                 f"{names}")
        return self

    def trained_models(self) -> tuple[tuple[str, str], ...]:
        """(column, model) of the models that record the documents they were trained on (a top_fraction
        threshold is measured without them): PreSelect's, and classifiers made by `gristmill classifier train`."""
        models = [("preselect_score", self.preselect.model)] if self.preselect else []
        models += [(c.name, c.path) for c in self.classifiers
                   if c.kind == "fasttext" and "trained_ids" in classifiers_.sidecar(c.path)]
        return tuple(models)

    @field_validator("select", mode="before")
    @classmethod
    def _select_moved(cls, rules):
        raise ValueError("the rules moved to `stages.select` (a stage of its own, after score; same list): "
                         "scoring never removes a document")


def run(docs: Iterable[dict], cfg: ScoreConfig) -> StageResult:
    batch = [dict(d) for d in docs]
    texts = [d["text"] or "" for d in batch]  # what every model scores
    scorer = PreSelectScorer.load(cfg.preselect.model) if cfg.preselect else None
    students = Students(cfg.dataman.models) if cfg.dataman else None
    if scorer is not None and batch:
        for doc, score in zip(batch, scorer.score(texts)):
            doc["preselect_score"] = round(float(score), SCORE_DECIMALS)  # stable across platforms
    if students is not None and batch:
        for doc, ratings in zip(batch, students.rate(texts)):
            doc.update(ratings)
    for classifier in cfg.classifiers:
        for doc, value in zip(batch, classifiers_.score(classifier, texts).tolist()):
            doc[classifier.name] = value
    trained = [scorer.info.get("languages") if scorer else None, students.languages if students else None]
    trained += [classifiers_.sidecar(c.path).get("languages") for c in cfg.classifiers]
    if cfg.flag_languages:
        _flag_unseen_languages(batch, [langs for langs in trained if langs])
    return StageResult(docs=batch, metrics=_histograms(batch, cfg))


# the language of a document the filter did not identify, from its head: enough to flag, and cheap
FLAG_LANGID = langid.LanguageConfig(languages=None, max_chars=200)


def _flag_unseen_languages(docs: list[dict], trained: list[dict]) -> None:
    """Documents in a language no scorer saw in training are still scored, but flagged: their scores
    are extrapolations. Uses the filter's `language` when present, else identifies it here."""
    if not trained or not docs:
        return
    missing = [d for d in docs if not d.get("language")]
    detected = dict(zip(map(id, missing), (lang for lang, _ in langid.identify(
        [d["text"] or "" for d in missing], FLAG_LANGID)))) if missing else {}
    for doc in docs:
        language = doc.get("language") or detected[id(doc)]
        unseen = any(language not in langs for langs in trained)
        doc["score_flag"] = f"unseen_language.{language}" if unseen else None


def _histograms(docs: list[dict], cfg: ScoreConfig) -> dict[str, float]:
    """Counts for the stats table (per shard, so per source): preselect_score in tenths, each DataMan
    rating value and each domain, each classifier's column, over every scored document (kept or not;
    select counts quality_bucket)."""
    counts: dict[str, float] = {}
    for doc in docs:
        keys = []
        if doc.get("preselect_score") is not None:
            keys.append(f"hist.preselect_score.{min(int(doc['preselect_score'] * 10), 9) / 10:.1f}")
        keys += [f"hist.{c}.{doc[c]}" for c in DATAMAN_COLUMNS + ("domain",) if doc.get(c) is not None]
        keys += [f"hist.{c.name}.{classifiers_.histogram_bucket(c, doc[c.name])}" for c in cfg.classifiers]
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return counts


def report(con, output: str) -> list[str]:
    """The histograms of the stats table (`hist.<column>.<bucket>`), one chart per column with a series per
    source (the MAX_SERIES largest, the rest as "other"), their counts in a table; with DataMan's `domain`, the
    scores per domain too (a GROUP BY over the scored documents)."""
    families: dict[str, list[tuple[str, str, float]]] = {}
    for source, metric, value in con.execute(
            "SELECT coalesce(source, '(none)'), metric, sum(value) FROM stats WHERE stage IN (?, 'select') "
            "AND metric LIKE 'hist.%' GROUP BY ALL ORDER BY 2, 1", [NAME]).fetchall():  # select: quality_bucket
        family, bucket = metric[len("hist."):].split(".", 1)  # a column has no dot; a bucket may (0.3)
        families.setdefault(family, []).append((source, bucket, value))
    if not families:
        return []
    parts = ["<h2>Score histograms</h2>"]
    rows = []
    cuts = _cuts_used(output)
    for family, got in sorted(families.items()):
        buckets = {b for _, b, _ in got}
        if any("." in b for b in buckets):  # a probability, in tenths (a regression's buckets are whole)
            buckets |= {f"{i / 10:.1f}" for i in range(10)}
        if family == buckets_.COLUMN and cuts:  # every quality bucket, the empty ones too
            buckets |= {str(k) for k in range(cuts["n"])}
        buckets = sorted(buckets, key=_bucket_key)
        labels, series = top_series(got, buckets)
        parts.append(grouped_bars(labels, series, family, xlabel=family, ylabel="documents"))
        rows += [(family, b, src, int(v)) for src, b, v in sorted(got, key=lambda r: (_bucket_key(r[1]), r[0]))]
    parts.append("<details><summary>the counts</summary>"
                 + table(["score", "bucket", "source", "documents"], rows, "score_hist") + "</details>")
    parts += _per_domain(con)
    return parts + _cut_points(cuts)


def _cuts_used(output: str) -> dict | None:
    """The quality buckets' cut points (from the manifest: they match its config)."""
    manifest = io.join(output, "manifest.json")
    return io.read_json(manifest).get("score_buckets") if io.exists(manifest) else None


def _cut_points(cuts: dict | None) -> list[str]:
    if not cuts:
        return []
    rows = [(name, ", ".join(f"{c:g}" for c in points)) for name, points in cuts["cuts"].items()]
    return [f"<h3>Quality buckets: {cuts['n']} per classifier, combined by {cuts['combine']}, weighted by "
            f"{cuts['weight']}, cut points measured on {cuts['sampled']} documents</h3>",
            table(["classifier", "cut points (bucket k starts at the k-th)"], rows, "score_buckets")]


def _bucket_key(bucket: str):
    try:
        return (0, float(bucket), bucket)
    except ValueError:
        return (1, 0.0, bucket)


def _per_domain(con) -> list[str]:
    """preselect_score and dataman_overall histograms per DataMan domain, when the documents have one."""
    if "docs_score" not in views(con):
        return []
    have = columns(con, "docs_score")
    if "domain" not in have or not con.execute("SELECT count(domain) FROM docs_score").fetchone()[0]:
        return []
    parts = []
    for column, bucket in (("preselect_score", "least(floor(preselect_score * 10), 9) / 10"),
                           ("dataman_overall", "dataman_overall")):
        if column not in have:
            continue
        got = con.execute(f"SELECT coalesce(domain, '(none)'), {bucket} AS b, count(*) FROM docs_score "
                          f"WHERE {column} IS NOT NULL GROUP BY ALL ORDER BY 2, 1").fetchall()
        if got:
            labels, series = top_series([(d, f"{b:g}", n) for d, b, n in got])
            parts.append(grouped_bars(labels, series, f"{column} per domain", xlabel=column, ylabel="documents"))
    return (["<h3>Scores per domain</h3>"] + parts) if parts else []


def check(cfg: ScoreConfig, ctx: CheckContext) -> None:
    """The models load (a missing or corrupt one fails here, not in a worker)."""
    if cfg.preselect is not None:
        try:
            PreSelectScorer.load(cfg.preselect.model)
            load_fasttext(cfg.preselect.model)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise ConfigError(f"preselect.model: {exc}") from None
    if cfg.dataman is not None:
        try:
            Students(cfg.dataman.models)
        except FileNotFoundError as exc:
            raise ConfigError(f"dataman.models: {exc}") from None
    if cfg.buckets is not None and ctx.release.stages.select is None:
        raise ConfigError("buckets: the select stage puts documents in their quality buckets once every part is "
                          "scored: add one (`select: []` keeps every document)")
    taken = _taken_columns()
    for i, classifier in enumerate(cfg.classifiers):
        if classifier.name in taken:
            raise ConfigError(f"classifiers[{i}].name: {classifier.name!r} is already a column "
                              f"({taken[classifier.name]})")
        remote_gpu = classifier.device == "cuda" and ctx.release.runner.kind != "local"  # the workers may have one
        try:
            classifiers_.load(classifier.model_copy(update={"device": "cpu"}) if remote_gpu else classifier)
        except ImportError as exc:
            raise ConfigError(f"classifiers[{i}]: kind {classifier.kind} needs {exc.name}: pip install -e "
                              f"\".[lm]\"") from None
        except (FileNotFoundError, ValueError, OSError) as exc:
            key = "label" if "no label" in str(exc) else "device" if "device cuda" in str(exc) else "path"
            raise ConfigError(f"classifiers[{i}].{key}: {exc}") from None


def _taken_columns() -> dict[str, str]:
    """Column names a classifier cannot take, with whose they are."""
    from pipelines.registry import STAGES  # here: the registry imports this module

    taken = {f.name: "documents" for f in DOC_FIELDS}
    taken.update({f.name: f"stage {stage.name}" for stage in STAGES if not callable(stage.columns)
                  for f in stage.columns})
    taken.update({f.name: "score" for f in FIXED_COLUMNS} | {buckets_.COLUMN: "score buckets"})
    taken["cluster"] = "stage mixture (CLIMB's clusters)"  # added by a global stage, not in a Stage's columns
    return taken


def resolve(cfg: ScoreConfig, ctx: CheckContext) -> ScoreConfig:
    """Each classifier with the digest of its model's files: a model replaced in place reruns score."""
    if not cfg.classifiers:
        return cfg
    return cfg.model_copy(update={"classifiers": [c.model_copy(update={"digest": classifiers_.digest(c.path)})
                                                  for c in cfg.classifiers]})


def produces(cfg: ScoreConfig) -> list[str]:
    return ((["preselect_score"] if cfg.preselect else []) + (list(DATAMAN_COLUMNS) + ["domain"] if cfg.dataman else [])
            + [c.name for c in cfg.classifiers] + ([buckets_.COLUMN] if cfg.buckets else []))


FIXED_COLUMNS = (pa.field("preselect_score", pa.float64()), *(pa.field(c, pa.int8()) for c in DATAMAN_COLUMNS),
                 pa.field("domain", pa.string()), pa.field("score_flag", pa.string()))


def fields(cfg: ScoreConfig) -> tuple[pa.Field, ...]:
    """The fixed columns (null where not produced), then a float64 per classifier (select adds quality_bucket)."""
    return FIXED_COLUMNS + tuple(pa.field(c.name, pa.float64()) for c in cfg.classifiers)


STAGE = Stage(name=NAME, config=ScoreConfig, check=check, resolve=resolve, run=run, produces=produces,
              report=report, columns=fields)
