"""FineWeb's own quality rules (Penedo et al. 2024): punctuation, short lines, duplicate lines, lists.

Defaults are the published FineWeb thresholds.
"""

from pydantic import Field

from scorers.heuristics.text_utils import END_PUNCTUATION, duplicated, non_empty_lines, words
from scorers.rule import Rule, RuleConfig


class FineWebConfig(RuleConfig):
    """FineWeb's own rules: `line_punct_ratio`, `short_line_ratio`, `char_dup_ratio`, `list_ratio`, `empty`."""

    min_line_punct_ratio: float = Field(0.12, description="share of lines ending in punctuation below this: "
                                                          "rejected")
    line_punct_exclude_zero: bool = Field(False, description="keep documents where no line ends in punctuation")
    max_short_line_ratio: float = Field(0.67, description="share of short lines at or above this: rejected")
    short_line_length: int = Field(30, description="a line of at most this many characters is short")
    max_char_dup_ratio: float = Field(0.01, description="share of characters in duplicate lines at or above this: "
                                                        "rejected")
    max_newline_word_ratio: float = Field(0.3, description="newlines per word above this: rejected (`list_ratio`)")


def check(text: str, cfg: FineWebConfig) -> str | None:
    lines = non_empty_lines(text)
    if not lines:
        return "empty"
    ratio = sum(line.endswith(END_PUNCTUATION) for line in lines) / len(lines)
    if ratio < cfg.min_line_punct_ratio and not (ratio == 0 and cfg.line_punct_exclude_zero):
        return "line_punct_ratio"
    if sum(len(line) <= cfg.short_line_length for line in lines) / len(lines) >= cfg.max_short_line_ratio:
        return "short_line_ratio"
    chars = len(text.replace("\n", "")) or 1
    if duplicated(lines)[1] / chars >= cfg.max_char_dup_ratio:
        return "char_dup_ratio"
    n_words = len(words(text)) or 1
    if text.count("\n") / n_words > cfg.max_newline_word_ratio:
        return "list_ratio"
    return None


RULE = Rule("fineweb", FineWebConfig, lambda doc, cfg: check(doc["text"], cfg))
