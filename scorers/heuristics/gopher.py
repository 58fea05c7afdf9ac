"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Defaults are the paper's thresholds. `check_*` returns the name of the first failing rule, or None.
"""

from collections import Counter

from scorers._config import StrictModel
from scorers.heuristics.text_utils import duplicated, non_empty_lines, paragraphs, raw_tokens, words

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
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
    if sum(any(c.isalpha() for c in t) for t in tokens) / max(len(tokens), 1) < cfg.min_alpha_words_ratio:
        return "min_alpha_words_ratio"
    stop = set(cfg.stop_words)
    if sum(w.lower() in stop for w in doc_words) < cfg.min_stop_words:
        return "min_stop_words"
    return None


def _top_ngram_char_frac(doc_words: list[str], n: int, total_chars: int) -> float:
    grams = Counter(tuple(doc_words[i : i + n]) for i in range(len(doc_words) - n + 1))
    if not grams:
        return 0.0
    gram, count = grams.most_common(1)[0]
    if count <= 1:
        return 0.0
    return sum(len(w) for w in gram) * count / total_chars


def _dup_ngram_char_frac(doc_words: list[str], n: int, total_chars: int) -> float:
    first_seen: dict[tuple[str, ...], int] = {}
    covered = bytearray(len(doc_words))
    for i in range(len(doc_words) - n + 1):
        gram = tuple(doc_words[i : i + n])
        j = first_seen.setdefault(gram, i)
        if j != i:  # a repeat (its first occurrence is not counted, as in FineWeb's implementation)
            covered[i : i + n] = b"\x01" * n
    return sum(len(w) for w, c in zip(doc_words, covered) if c) / total_chars


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
    word_chars = sum(len(w) for w in doc_words) or 1
    for n, limit in sorted(cfg.max_top_ngram_char_frac.items()):
        if _top_ngram_char_frac(doc_words, n, word_chars) > limit:
            return f"top_{n}_gram_char_frac"
    for n, limit in sorted(cfg.max_dup_ngram_char_frac.items()):
        if _dup_ngram_char_frac(doc_words, n, word_chars) > limit:
            return f"dup_{n}_gram_char_frac"
    return None
