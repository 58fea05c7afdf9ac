"""C4 cleaning rules (Raffel et al. 2020, section 2.2), read as datatrove's C4QualityFilter (which
follows C4's reference code, tensorflow_datasets' c4_utils) reads them; FineWeb runs it with
`filter_no_terminal_punct: false`.

Each line (`str.splitlines`, stripped) is dropped or kept in turn; a kept line with "lorem ipsum" or a
`{` rejects the document. Sentences are counted on each kept line (at least one per line) with spaCy's
rule-based sentencizer, as datatrove does (C4's reference code used NLTK's Punkt). C4's bad-words
list is not applied. `clean` returns the cleaned text and None, or None and the reason.
"""

import re

from pydantic import Field

from scorers.heuristics.text_utils import sentence_count
from scorers.rule import Rule, RuleConfig

POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
END_PUNCTUATION = (".", "?", "!", '"', "'")  # C4's terminal punctuation
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")


class C4Config(RuleConfig):
    """C4's cleaning (Raffel et al. 2020): drops lines, then rejects `lorem_ipsum`, `curly_bracket`,
    `min_num_sentences` (sentences of the kept lines, each line at least one)."""

    filter_no_terminal_punct: bool = Field(False, description="drop lines that do not end in . ? ! \" ' (or end "
                                                              "in ...): C4's setting (recipe c4); FineWeb's is false")
    min_words_per_line: int = Field(3, description="drop lines with fewer whitespace-separated words")
    max_word_length: int = Field(1000, description="drop lines with a longer word")
    min_num_sentences: int = Field(5, description="fewer sentences in the kept lines: rejected")
    filter_lorem_ipsum: bool = Field(True, description="reject documents with a kept line containing \"lorem "
                                                       "ipsum\"")
    filter_javascript: bool = Field(True, description="drop lines mentioning javascript")
    filter_curly_bracket: bool = Field(True, description="reject documents with a kept line containing `{`")
    filter_policy: bool = Field(True, description="drop cookie / terms-of-use / privacy-policy lines")
    remove_citations: bool = Field(True, description="remove Wikipedia-style citation marks ([1], [edit])")


def clean(text: str, cfg: C4Config, language: str | None = None) -> tuple[str | None, str | None]:
    kept, sentences = [], 0
    for line in text.splitlines():
        line = line.strip()
        line_words = line.split()
        if any(len(w) > cfg.max_word_length for w in line_words):
            continue
        if cfg.remove_citations:
            line = _CITATION.sub("", line)
        if cfg.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
            continue
        if len(line_words) < cfg.min_words_per_line:
            continue
        low = line.lower()
        if cfg.filter_lorem_ipsum and "lorem ipsum" in low:
            return None, "lorem_ipsum"
        if cfg.filter_javascript and "javascript" in low:
            continue
        if cfg.filter_curly_bracket and "{" in line:
            return None, "curly_bracket"
        if cfg.filter_policy and any(p in low for p in POLICY_SUBSTRINGS):
            continue
        if cfg.min_num_sentences > 0:
            sentences += sentence_count(line, language)
        kept.append(line)
    if sentences < cfg.min_num_sentences:
        return None, "min_num_sentences"
    return "\n".join(kept).strip(), None


def _check(doc: dict, cfg: C4Config) -> str | None:
    cleaned, reason = clean(doc["text"], cfg, doc.get("language"))
    if reason is None:
        doc["text"] = cleaned
    return reason


RULE = Rule("c4", C4Config, _check)
