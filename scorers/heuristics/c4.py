"""C4 cleaning rules (Raffel et al. 2020, section 2.2), as used by FineWeb.

Line rules drop lines; document rules reject the document. `clean` returns the cleaned text and
None, or None and the name of the rule that rejected the document.
"""

import re

from pydantic import Field

from scorers.heuristics.text_utils import END_PUNCTUATION
from scorers.rule import Rule, RuleConfig

POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


class C4Config(RuleConfig):
    """C4's cleaning (Raffel et al. 2020): drops lines, then rejects `lorem_ipsum`, `curly_bracket`,
    `no_lines_left`, `min_num_sentences`."""

    filter_no_terminal_punct: bool = Field(True, description="drop lines without terminal punctuation (C4; "
                                                             "FineWeb runs C4 with false)")
    min_words_per_line: int = Field(3, description="drop lines with fewer words")
    max_word_length: int = Field(1000, description="drop lines with a longer word")
    min_num_sentences: int = Field(5, description="fewer sentences left: rejected")
    filter_lorem_ipsum: bool = Field(True, description="reject documents containing \"lorem ipsum\"")
    filter_javascript: bool = Field(True, description="drop lines mentioning javascript")
    filter_curly_bracket: bool = Field(True, description="reject documents with a `{`")
    filter_policy: bool = Field(True, description="drop cookie / terms-of-use / privacy-policy lines")
    remove_citations: bool = Field(True, description="remove Wikipedia-style citation marks ([1], [edit])")


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


def _check(doc: dict, cfg: C4Config) -> str | None:
    cleaned, reason = clean(doc["text"], cfg)
    if reason is None:
        doc["text"] = cleaned
    return reason


RULE = Rule("c4", C4Config, _check)
