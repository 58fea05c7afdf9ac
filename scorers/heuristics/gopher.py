"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Defaults are the paper's thresholds, read as datatrove's GopherQualityFilter and
GopherRepetitionFilter (which made FineWeb) read them: words are spaCy tokens (`words: spacy`, see
text_utils), of which the non-punctuation ones count as the document's words; bullet and ellipsis
lines are `str.splitlines` lines; repetition lines are the pieces between runs of newlines
(whitespace-only lines included), paragraphs those between runs of two or more; n-gram fractions are
shares of the document's characters. `check_*` returns the name of the first failing rule, or None.
"""

from typing import Literal

import numpy as np
from pydantic import Field

from scorers.heuristics.text_utils import duplicated, has_alpha, is_symbol, paragraphs, words
from scorers.rule import Rule, RuleConfig

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = ("•", "-")  # datatrove's; the `gopher` recipe uses PAPER_BULLETS
PAPER_BULLETS = ("•", "‣", "⁃", "◦", "●", "-", "*", "–", "—", "·")
_WORDS = Field("spacy", description="word splitting: spaCy's tokens for the document's language (datatrove's), "
                                    "or whitespace tokens with surrounding punctuation stripped")


class GopherQualityConfig(RuleConfig):
    """Gopher's quality rules (Rae et al. 2021); reasons are the field names (`max_symbol_word_ratio` as
    `hash_word_ratio` or `ellipsis_word_ratio`)."""

    min_doc_words: int = Field(50, description="fewer words (non-punctuation tokens): rejected")
    max_doc_words: int = Field(100_000, description="more words: rejected")
    min_avg_word_length: float = Field(3.0, description="shorter mean word length: rejected")
    max_avg_word_length: float = Field(10.0, description="longer mean word length: rejected")
    max_symbol_word_ratio: float = Field(0.1, description="`#` per token, or `...` and `…` per token, above this: "
                                                          "rejected")
    max_bullet_lines_ratio: float = Field(0.9, description="share of lines starting with one of `bullets` above "
                                                           "this: rejected")
    max_ellipsis_lines_ratio: float = Field(0.3, description="share of lines ending with an ellipsis above this: "
                                                             "rejected")
    min_alpha_words_ratio: float = Field(0.8, description="share of tokens (punctuation tokens included) with a "
                                                          "letter below this: rejected")
    min_stop_words: int = Field(2, description="fewer distinct `stop_words` among the tokens: rejected")
    stop_words: tuple[str, ...] = Field(STOP_WORDS, description="Gopher's stop words")
    stop_words_ignore_case: bool = Field(False, description="match stop words in any case (datatrove matches them "
                                                            "as written; the `gopher` recipe ignores case)")
    bullets: tuple[str, ...] = Field(BULLETS, description="line starts that make a bullet line (datatrove's; the "
                                                          "`gopher` recipe adds ‣ ⁃ ◦ ● * – — ·)")
    words: Literal["spacy", "whitespace"] = _WORDS


class GopherRepetitionConfig(RuleConfig):
    """Gopher's repetition rules: duplicate paragraphs and lines, repeated n-grams. Reasons:
    `dup_para_frac`, `dup_para_char_frac`, `dup_line_frac`, `dup_line_char_frac`, `top_<n>_gram_char_frac`,
    `dup_<n>_gram_char_frac`."""

    max_dup_line_frac: float = Field(0.3, description="share of lines that repeat an earlier line")
    max_dup_para_frac: float = Field(0.3, description="share of paragraphs that repeat an earlier one")
    max_dup_line_char_frac: float = Field(0.2, description="share of characters in repeated lines")
    max_dup_para_char_frac: float = Field(0.2, description="share of characters in repeated paragraphs")
    max_top_ngram_char_frac: dict[int, float] = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="n -> share of the characters in the most frequent n-gram (its "
                                                 "words joined by spaces, times its count)")
    max_dup_ngram_char_frac: dict[int, float] = Field(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> share of the characters in n-grams that repeat an earlier one (scanned left to right; "
                    "a repeat skips its n words)")
    words: Literal["spacy", "whitespace"] = _WORDS


def check_quality(text: str, cfg: GopherQualityConfig, language: str | None = None) -> str | None:
    tokens = words(text, cfg.words, language)
    n_tokens = max(len(tokens), 1)
    doc_words = [w for w in tokens if not is_symbol(w)]
    n = len(doc_words)
    if n < cfg.min_doc_words:
        return "min_doc_words"
    if n > cfg.max_doc_words:
        return "max_doc_words"
    avg = sum(map(len, doc_words)) / n if n else 0.0
    if n and avg < cfg.min_avg_word_length:
        return "min_avg_word_length"
    if n and avg > cfg.max_avg_word_length:
        return "max_avg_word_length"
    if text.count("#") / n_tokens > cfg.max_symbol_word_ratio:
        return "hash_word_ratio"
    if (text.count("...") + text.count("…")) / n_tokens > cfg.max_symbol_word_ratio:
        return "ellipsis_word_ratio"
    lines = text.splitlines() or [""]
    if sum(line.lstrip().startswith(cfg.bullets) for line in lines) / len(lines) > cfg.max_bullet_lines_ratio:
        return "max_bullet_lines_ratio"
    if sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_lines_ratio:
        return "max_ellipsis_lines_ratio"
    if sum(map(has_alpha, tokens)) / n_tokens < cfg.min_alpha_words_ratio:
        return "min_alpha_words_ratio"
    present = {t.lower() for t in tokens} if cfg.stop_words_ignore_case else set(tokens)
    if len(present.intersection(cfg.stop_words)) < cfg.min_stop_words:
        return "min_stop_words"
    return None


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every word n-gram (numpy wraps uint64 arithmetic mod 2^64)."""
    count = len(ids) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        h = h * np.uint64(1_000_003) + ids[k : k + count]
    return h


def _top_ngram_chars(ids: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters of the most frequent n-gram (words joined by spaces) times its count; of equally
    frequent ones, the first to occur (datatrove's Counter.most_common)."""
    _, first, counts = np.unique(_ngram_hashes(ids, n), return_index=True, return_counts=True)
    top = int(counts.max())
    start = int(first[counts == top].min())
    return (int(lengths[start : start + n].sum()) + n - 1) * top


class _Concatenations:
    """Hashes of the concatenation of any run of words (datatrove compares n-grams as `"".join(words)`):
    a polynomial hash mod 2^64 over the code points, from prefix sums."""

    BASE = 1_000_003

    def __init__(self, tokens: tuple[str, ...]):
        codes = np.frombuffer("".join(tokens).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        inverse = np.uint64(pow(self.BASE, -1, 2**64))
        with np.errstate(over="ignore"):
            self.powers = np.concatenate([[np.uint64(1)], np.cumprod(np.full(len(codes), self.BASE, dtype=np.uint64))])
            inv_powers = np.cumprod(np.full(len(codes), inverse, dtype=np.uint64))
            sums = np.concatenate([[np.uint64(0)], np.cumsum(codes * inv_powers, dtype=np.uint64)])
            self.prefix = sums * self.powers  # prefix[i] = hash of the first i code points
        self.offsets = np.concatenate([[0], np.cumsum([len(t) for t in tokens])])

    def ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(hash, characters) of each n-gram's concatenation."""
        a, b = self.offsets[:-n], self.offsets[n:]
        with np.errstate(over="ignore"):
            return self.prefix[b] - self.prefix[a] * self.powers[b - a], b - a


def _dup_ngram_chars(concat: _Concatenations, n: int) -> int:
    """datatrove's find_all_duplicate: left to right, an n-gram seen before adds its characters and
    skips its n words. Only n-grams that occur twice or more can repeat, so only those are visited."""
    keys, chars = concat.ngrams(n)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    seen, repeated, next_free = set(), 0, 0
    for p, key, size in zip(candidates.tolist(), keys[candidates].tolist(), chars[candidates].tolist()):
        if p < next_free:
            continue
        if key in seen:
            repeated += size
            next_free = p + n
        else:
            seen.add(key)
            next_free = p + 1
    return repeated


def check_repetition(text: str, cfg: GopherRepetitionConfig, language: str | None = None) -> str | None:
    total = len(text) or 1
    paras = paragraphs(text)
    count, chars = duplicated(paras)
    if count / len(paras) > cfg.max_dup_para_frac:
        return "dup_para_frac"
    if chars / total > cfg.max_dup_para_char_frac:
        return "dup_para_char_frac"
    lines = text.split("\n")
    lines = [line for k, line in enumerate(lines) if line or k in (0, len(lines) - 1)]  # re.split("\n+")
    count, chars = duplicated(lines)
    if count / len(lines) > cfg.max_dup_line_frac:
        return "dup_line_frac"
    if chars / total > cfg.max_dup_line_char_frac:
        return "dup_line_char_frac"
    tokens = words(text, cfg.words, language)
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in tokens), dtype=np.uint64, count=len(tokens))
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    for n, limit in sorted(cfg.max_top_ngram_char_frac.items()):
        if len(tokens) >= n and _top_ngram_chars(ids, lengths, n) / total > limit:
            return f"top_{n}_gram_char_frac"
    concat = _Concatenations(tokens)
    for n, limit in sorted(cfg.max_dup_ngram_char_frac.items()):
        if len(tokens) >= n and _dup_ngram_chars(concat, n) / total > limit:
            return f"dup_{n}_gram_char_frac"
    return None


REPETITION = Rule("gopher_repetition", GopherRepetitionConfig,
                  lambda doc, cfg: check_repetition(doc["text"], cfg, doc.get("language")))
QUALITY = Rule("gopher_quality", GopherQualityConfig,
               lambda doc, cfg: check_quality(doc["text"], cfg, doc.get("language")))
