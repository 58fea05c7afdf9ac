"""FineWeb's own quality rules (Penedo et al. 2024): punctuation, short lines, duplicate lines, lists.

Defaults are the published FineWeb thresholds.
"""

from scorers._config import StrictModel
from scorers.heuristics.text_utils import END_PUNCTUATION, duplicated, non_empty_lines, words


class FineWebConfig(StrictModel):
    enabled: bool = True
    min_line_punct_ratio: float = 0.12
    line_punct_exclude_zero: bool = False
    max_short_line_ratio: float = 0.67
    short_line_length: int = 30
    max_char_dup_ratio: float = 0.01
    max_newline_word_ratio: float = 0.3


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
