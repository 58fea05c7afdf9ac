"""score: put model scores on documents (PreSelect's `preselect_score`, DataMan students' ratings and
domain). It never removes a document: the `select` stage that follows applies thresholds, so changing
one reruns `select` and what follows, never the models.
"""

from collections.abc import Iterable

import pyarrow as pa
from pydantic import Field, field_validator

from pipelines.errors import ConfigError
from pipelines.report_parts import columns, grouped_bars, table, top_series, views
from pipelines.stage import CheckContext, Stage, StageResult
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
    `hist.preselect_score.0.x` (tenths), `hist.dataman_<criterion>.<1-5>`, `hist.domain.<name>`."""

    preselect: PreSelectStageConfig | None = Field(None, description="PreSelect scorer")
    dataman: DatamanStageConfig | None = Field(None, description="DataMan students")
    flag_languages: bool = Field(True, description="flag documents in languages the models did not see in "
                                                   "training; uses the filter's `language`, else identifies the "
                                                   "first 200 characters (about 12 % of the stage's time)")

    select: None = Field(None, exclude=True, description="moved: the rules are `stages.select` now")

    @field_validator("select", mode="before")
    @classmethod
    def _select_moved(cls, rules):
        raise ValueError("the rules moved to `stages.select` (a stage of its own, after score; same list): "
                         "scoring never removes a document")


def run(docs: Iterable[dict], cfg: ScoreConfig) -> StageResult:
    batch = [dict(d) for d in docs]
    scorer = PreSelectScorer.load(cfg.preselect.model) if cfg.preselect else None
    students = Students(cfg.dataman.models) if cfg.dataman else None
    if scorer is not None and batch:
        for doc, score in zip(batch, scorer.score([d["text"] or "" for d in batch])):
            doc["preselect_score"] = round(float(score), SCORE_DECIMALS)  # stable across platforms
    if students is not None and batch:
        for doc, ratings in zip(batch, students.rate([d["text"] or "" for d in batch])):
            doc.update(ratings)
    trained = [scorer.info.get("languages") if scorer else None, students.languages if students else None]
    if cfg.flag_languages:
        _flag_unseen_languages(batch, [langs for langs in trained if langs])
    return StageResult(docs=batch, metrics=_histograms(batch))


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


def _histograms(docs: list[dict]) -> dict[str, float]:
    """Counts for the stats table (per shard, so per source): preselect_score in tenths, each DataMan
    rating value and each domain, over every scored document (kept or not)."""
    counts: dict[str, float] = {}
    for doc in docs:
        keys = []
        if doc.get("preselect_score") is not None:
            keys.append(f"hist.preselect_score.{min(int(doc['preselect_score'] * 10), 9) / 10:.1f}")
        keys += [f"hist.{c}.{doc[c]}" for c in DATAMAN_COLUMNS + ("domain",) if doc.get(c) is not None]
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return counts


def report(con, output: str) -> list[str]:
    """The histograms of the stats table (`hist.<column>.<bucket>`), one chart per column with a series per
    source (the MAX_SERIES largest, the rest as "other"), their counts in a table; with DataMan's `domain`, the
    scores per domain too (a GROUP BY over the scored documents)."""
    families: dict[str, list[tuple[str, str, float]]] = {}
    for source, metric, value in con.execute(
            "SELECT coalesce(source, '(none)'), metric, sum(value) FROM stats WHERE stage = ? AND metric LIKE 'hist.%' "
            "GROUP BY ALL ORDER BY 2, 1", [NAME]).fetchall():
        name = metric[len("hist."):]
        family, bucket = ("preselect_score", name[len("preselect_score."):]) if name.startswith("preselect_score.") \
            else name.rsplit(".", 1)  # a preselect_score bucket has a dot of its own (0.3)
        families.setdefault(family, []).append((source, bucket, value))
    if not families:
        return []
    parts = ["<h2>Score histograms</h2>"]
    rows = []
    for family, got in sorted(families.items()):
        buckets = {b for _, b, _ in got}
        if family == "preselect_score":  # every tenth, the empty ones too
            buckets |= {f"{i / 10:.1f}" for i in range(10)}
        buckets = sorted(buckets, key=_bucket_key)
        labels, series = top_series(got, buckets)
        parts.append(grouped_bars(labels, series, family, xlabel=family, ylabel="documents"))
        rows += [(family, b, src, int(v)) for src, b, v in sorted(got, key=lambda r: (_bucket_key(r[1]), r[0]))]
    parts.append("<details><summary>the counts</summary>"
                 + table(["score", "bucket", "source", "documents"], rows, "score_hist") + "</details>")
    parts += _per_domain(con)
    return parts


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


def produces(cfg: ScoreConfig) -> list[str]:
    return (["preselect_score"] if cfg.preselect else []) + (list(DATAMAN_COLUMNS) + ["domain"] if cfg.dataman else [])


STAGE = Stage(
    name=NAME, config=ScoreConfig, check=check, run=run, produces=produces, report=report,
    columns=(pa.field("preselect_score", pa.float64()), *(pa.field(c, pa.int8()) for c in DATAMAN_COLUMNS),
             pa.field("domain", pa.string()), pa.field("score_flag", pa.string())),
)
