"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Defaults are the paper's thresholds. `check_*` returns the name of the first failing rule, or None.
"""

import re

import numpy as np
from pydantic import Field

from scorers.heuristics.text_utils import duplicated, non_empty_lines, paragraphs, raw_tokens, words
from scorers.rule import Rule, RuleConfig

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_ALPHA = re.compile(r"[^\W\d_]")  # a letter in any script
BULLETS = ("•", "‣", "⁃", "◦", "●", "-", "*", "–", "—", "·")


class GopherQualityConfig(RuleConfig):
    """Gopher's quality rules (Rae et al. 2021); reasons are the field names."""

    min_doc_words: int = Field(50, description="fewer words: rejected")
    max_doc_words: int = Field(100_000, description="more words: rejected")
    min_avg_word_length: float = Field(3.0, description="shorter mean word length: rejected")
    max_avg_word_length: float = Field(10.0, description="longer mean word length: rejected")
    max_symbol_word_ratio: float = Field(0.1, description="`#`, `...` and `…` per word above this: rejected")
    max_bullet_lines_ratio: float = Field(0.9, description="share of lines starting with a bullet above this: "
                                                           "rejected")
    max_ellipsis_lines_ratio: float = Field(0.3, description="share of lines ending with an ellipsis above this: "
                                                             "rejected")
    min_alpha_words_ratio: float = Field(0.8, description="share of whitespace tokens with a letter below this: "
                                                          "rejected")
    min_stop_words: int = Field(2, description="fewer occurrences of `stop_words`: rejected")
    stop_words: tuple[str, ...] = Field(STOP_WORDS, description="Gopher's stop words")


class GopherRepetitionConfig(RuleConfig):
    """Gopher's repetition rules: duplicate lines and paragraphs, repeated n-grams. Reasons:
    `dup_line_frac`, `dup_para_frac`, `dup_line_char_frac`, `dup_para_char_frac`, `top_<n>_gram_char_frac`,
    `dup_<n>_gram_char_frac`."""

    max_dup_line_frac: float = Field(0.3, description="share of lines that repeat an earlier line")
    max_dup_para_frac: float = Field(0.3, description="share of paragraphs that repeat an earlier one")
    max_dup_line_char_frac: float = Field(0.2, description="share of characters in repeated lines")
    max_dup_para_char_frac: float = Field(0.2, description="share of characters in repeated paragraphs")
    max_top_ngram_char_frac: dict[int, float] = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="n -> share of word characters in the most frequent n-gram")
    max_dup_ngram_char_frac: dict[int, float] = Field(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> share of word characters in n-grams that occur more than once")


def check_quality(text: str, cfg: GopherQualityConfig) -> str | None:
    tokens = raw_tokens(text)
    doc_words = words(text)
    n = len(doc_words)
    if n < cfg.min_doc_words:
        return "min_doc_words"
    if n > cfg.max_doc_words:
        return "max_doc_words"
    avg = sum(len(w) for w in doc_words) / n
    if avg < cfg.min_avg_word_length:
        return "min_avg_word_length"
    if avg > cfg.max_avg_word_length:
        return "max_avg_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > cfg.max_symbol_word_ratio:
        return "max_symbol_word_ratio"
    lines = non_empty_lines(text)
    if lines:
        if sum(line.startswith(BULLETS) for line in lines) / len(lines) > cfg.max_bullet_lines_ratio:
            return "max_bullet_lines_ratio"
        if sum(line.endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_lines_ratio:
            return "max_ellipsis_lines_ratio"
    if sum(_ALPHA.search(t) is not None for t in tokens) / max(len(tokens), 1) < cfg.min_alpha_words_ratio:
        return "min_alpha_words_ratio"
    stop = set(cfg.stop_words)
    if sum(w.lower() in stop for w in doc_words) < cfg.min_stop_words:
        return "min_stop_words"
    return None


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every word n-gram (numpy wraps uint64 arithmetic mod 2^64)."""
    count = len(ids) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        h = h * np.uint64(1_000_003) + ids[k : k + count]
    return h


def _top_ngram_char_frac(ids: np.ndarray, lengths: np.ndarray, n: int, total_chars: int) -> float:
    if len(ids) < n:
        return 0.0
    hashes = _ngram_hashes(ids, n)
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] <= 1:
        return 0.0
    start = int(first[top])
    return int(lengths[start : start + n].sum()) * int(counts[top]) / total_chars


def _dup_ngram_char_frac(ids: np.ndarray, lengths: np.ndarray, n: int, total_chars: int) -> float:
    """Share of word characters covered by n-grams that repeat an earlier n-gram (first occurrences
    are not counted, as in FineWeb's implementation)."""
    if len(ids) < n:
        return 0.0
    hashes = _ngram_hashes(ids, n)
    repeat = np.ones(len(hashes), dtype=bool)
    repeat[np.unique(hashes, return_index=True)[1]] = False
    starts = np.flatnonzero(repeat)
    if not len(starts):
        return 0.0
    cover = np.zeros(len(ids) + 1, dtype=np.int32)  # +1 at each repeat's start, -1 after its end
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return int(lengths[covered].sum()) / total_chars


def check_repetition(text: str, cfg: GopherRepetitionConfig) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    paras = paragraphs(text)
    total = len(text) or 1
    if lines:
        count, chars = duplicated(lines)
        if count / len(lines) > cfg.max_dup_line_frac:
            return "dup_line_frac"
        if chars / total > cfg.max_dup_line_char_frac:
            return "dup_line_char_frac"
    if paras:
        count, chars = duplicated(paras)
        if count / len(paras) > cfg.max_dup_para_frac:
            return "dup_para_frac"
        if chars / total > cfg.max_dup_para_char_frac:
            return "dup_para_char_frac"
    doc_words = words(text)
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in doc_words), dtype=np.uint64, count=len(doc_words))
    lengths = np.fromiter((len(w) for w in doc_words), dtype=np.int64, count=len(doc_words))
    word_chars = int(lengths.sum()) or 1
    for n, limit in sorted(cfg.max_top_ngram_char_frac.items()):
        if _top_ngram_char_frac(ids, lengths, n, word_chars) > limit:
            return f"top_{n}_gram_char_frac"
    for n, limit in sorted(cfg.max_dup_ngram_char_frac.items()):
        if _dup_ngram_char_frac(ids, lengths, n, word_chars) > limit:
            return f"dup_{n}_gram_char_frac"
    return None


REPETITION = Rule("gopher_repetition", GopherRepetitionConfig, lambda doc, cfg: check_repetition(doc["text"], cfg))
QUALITY = Rule("gopher_quality", GopherQualityConfig, lambda doc, cfg: check_quality(doc["text"], cfg))
