"""score: put model scores on documents (PreSelect's `preselect_score`, DataMan students' ratings and
domain) and select by them.

Selection rules are typed (column, min, max, top_fraction), never evaluated Python; a document
outside a rule is a reject with reason `select.<column>` and its value as detail.
"""

from collections.abc import Iterable

import pyarrow as pa

from pipelines.config import DATAMAN_COLUMNS
from pipelines.documents import reject
from pipelines.stages.base import StageResult
from scorers import langid
from scorers.dataman.students import Students
from scorers.preselect import PreSelectScorer

NAME = "score"
ADDED_COLUMNS = ([pa.field("preselect_score", pa.float64())] + [pa.field(c, pa.int8()) for c in DATAMAN_COLUMNS]
                 + [pa.field("domain", pa.string()), pa.field("score_flag", pa.string())])


def applies_to(source_format: str) -> bool:
    return True


def outside(rule, value, low: float | None = None) -> bool:
    """Whether `value` fails a typed select rule; `low` replaces the rule's min (a top_fraction threshold)."""
    if rule.values is not None:
        return value not in rule.values
    low = rule.min if low is None else low
    return value is None or (low is not None and value < low) or (rule.max is not None and value > rule.max)


def run(docs: Iterable[dict], cfg) -> StageResult:
    result = StageResult()
    batch = [dict(d) for d in docs]
    scorer = PreSelectScorer.load(cfg.preselect.model) if cfg.preselect else None
    students = Students(cfg.dataman.models) if cfg.dataman else None
    if scorer is not None and batch:
        for doc, score in zip(batch, scorer.score([d["text"] or "" for d in batch])):
            doc["preselect_score"] = round(float(score), 6)  # rounded: stable across platforms' float printing
    if students is not None and batch:
        for doc, ratings in zip(batch, students.rate([d["text"] or "" for d in batch])):
            doc.update(ratings)
    trained = [scorer.info.get("languages") if scorer else None, students.languages if students else None]
    if cfg.flag_languages:
        _flag_unseen_languages(batch, [langs for langs in trained if langs])
    for doc in batch:
        for rule in cfg.select:
            value = doc.get(rule.column)
            if outside(rule, value, scorer.threshold(rule.top_fraction) if rule.top_fraction is not None else None):
                result.rejects.append(reject(doc, NAME, f"select.{rule.column}", f"{value}"))
                break
        else:
            result.docs.append(doc)
    result.metrics = _histograms(batch)
    return result


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
