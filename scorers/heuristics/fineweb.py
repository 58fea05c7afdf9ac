"""FineWeb's own quality rules (Penedo et al. 2024): punctuation, short lines, duplicate lines, lists.

Defaults are the published FineWeb thresholds, read as datatrove's FineWebQualityFilter (which made
FineWeb) reads them: lines are the non-blank lines of `text.split("\\n")`, every ratio is rejected when
strictly above (below) its threshold, and `list_ratio` divides newlines by `words` tokens.
"""

from typing import Literal

from pydantic import Field

from scorers.heuristics.text_utils import TERMINAL_PUNCTUATION, duplicated, words
from scorers.rule import Rule, RuleConfig


class FineWebConfig(RuleConfig):
    """FineWeb's own rules: `line_punct_ratio`, `short_line_ratio`, `char_dup_ratio`, `list_ratio`, `empty`."""

    min_line_punct_ratio: float = Field(0.12, description="share of lines ending in `stop_chars` below this: "
                                                          "rejected")
    line_punct_exclude_zero: bool = Field(False, description="keep documents where no line ends in punctuation")
    stop_chars: tuple[str, ...] | None = Field(None, description="line-end punctuation; null: Unicode's sentence "
                                               "terminals (. ! ? and the CJK, Arabic, Indic... marks), as FineWeb")
    max_short_line_ratio: float = Field(0.67, description="share of short lines above this: rejected")
    short_line_length: int = Field(30, description="a line of at most this many characters is short")
    max_char_dup_ratio: float = Field(0.01, description="share of characters in duplicate lines above this: "
                                                        "rejected")
    max_newline_word_ratio: float = Field(0.3, description="newlines per word above this: rejected (`list_ratio`)")
    words: Literal["spacy", "whitespace"] = Field("spacy", description="word splitting for `list_ratio`: spaCy's "
                                                  "tokens for the document's language (datatrove's), or whitespace")


def check(text: str, cfg: FineWebConfig, language: str | None = None) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "empty"
    ratio = sum(line.endswith(cfg.stop_chars or TERMINAL_PUNCTUATION) for line in lines) / len(lines)
    if ratio < cfg.min_line_punct_ratio and not (ratio == 0 and cfg.line_punct_exclude_zero):
        return "line_punct_ratio"
    if sum(len(line) <= cfg.short_line_length for line in lines) / len(lines) > cfg.max_short_line_ratio:
        return "short_line_ratio"
    if duplicated(lines)[1] / len(text.replace("\n", "")) > cfg.max_char_dup_ratio:
        return "char_dup_ratio"
    if text.count("\n") / max(len(words(text, cfg.words, language)), 1) > cfg.max_newline_word_ratio:
        return "list_ratio"
    return None


RULE = Rule("fineweb", FineWebConfig, lambda doc, cfg: check(doc["text"], cfg, doc.get("language")))
