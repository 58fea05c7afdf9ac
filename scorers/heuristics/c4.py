"""C4 cleaning rules (Raffel et al. 2020, section 2.2), as used by FineWeb.

Line rules drop lines; document rules reject the document. `clean` returns the cleaned text and
None, or None and the name of the rule that rejected the document.
"""

import re

from scorers._config import StrictModel
from scorers.heuristics.text_utils import END_PUNCTUATION

POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


class C4Config(StrictModel):
    enabled: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_num_sentences: int = 5
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    remove_citations: bool = True


def clean(text: str, cfg: C4Config) -> tuple[str | None, str | None]:
    lowered = text.lower()
    if cfg.filter_lorem_ipsum and "lorem ipsum" in lowered:
        return None, "lorem_ipsum"
    if cfg.filter_curly_bracket and "{" in text:
        return None, "curly_bracket"
    kept = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if cfg.remove_citations:
            line = _CITATION.sub("", line)
        if cfg.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
            continue
        tokens = line.split()
        if len(tokens) < cfg.min_words_per_line:
            continue
        if any(len(t) > cfg.max_word_length for t in tokens):
            continue
        low = line.lower()
        if cfg.filter_javascript and "javascript" in low:
            continue
        if cfg.filter_policy and any(p in low for p in POLICY_SUBSTRINGS):
            continue
        kept.append(line)
    cleaned = "\n".join(kept)
    if not cleaned:
        return None, "no_lines_left"
    if len(_SENTENCE_END.findall(cleaned)) < cfg.min_num_sentences:
        return None, "min_num_sentences"
    return cleaned, None
