"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Defaults are the paper's thresholds. `check_*` returns the name of the first failing rule, or None.
"""

import re

import numpy as np

from scorers._config import StrictModel
from scorers.heuristics.text_utils import duplicated, non_empty_lines, paragraphs, raw_tokens, words

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_ALPHA = re.compile(r"[^\W\d_]")  # a letter in any script
BULLETS = ("•", "‣", "⁃", "◦", "●", "-", "*", "–", "—", "·")


class GopherQualityConfig(StrictModel):
    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3.0
    max_avg_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple[str, ...] = STOP_WORDS


class GopherRepetitionConfig(StrictModel):
    enabled: bool = True
    max_dup_line_frac: float = 0.3
    max_dup_para_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    max_dup_para_char_frac: float = 0.2
    # fraction of characters in the most frequent n-gram, for n = 2, 3, 4
    max_top_ngram_char_frac: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    # fraction of characters in n-grams that occur more than once, for n = 5 .. 10
    max_dup_ngram_char_frac: dict[int, float] = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


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
